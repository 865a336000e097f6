package pluginyaegi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestStatusPathUnderYaegi(t *testing.T) {
	p := loadPlugin(t)
	emu := newEmulator(t)
	h := newHandler(t, p, proxyTo(emu, nil), config(emu, map[string]any{"statusPath": "/faceid/status"}), "status@file")
	srv := httptest.NewServer(h)
	defer srv.Close()
	send(t, srv.URL, http.MethodPost, `{"orderNo":"`+order+`"}`)
	send(t, srv.URL, http.MethodPost, `{"orderNo":"x-1"}`)
	resp, err := http.Get(srv.URL + "/faceid/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var r struct {
		Ticket   struct{ Valid bool }
		Counters struct {
			Signed   int
			Rejected map[string]int
		}
	}
	if err := json.Unmarshal(body, &r); err != nil || !r.Ticket.Valid || r.Counters.Signed != 1 || r.Counters.Rejected["FACEIDSIGNER_BAD_FIELD"] != 1 {
		t.Fatalf("status %s (%v)", body, err)
	}
	resp, err = http.Get(srv.URL + "/faceid/status/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(text), `faceidsigner_signed_total{middleware="status@file",app_id="IDAXXXXX"} 1`) {
		t.Fatalf("metrics:\n%s", text)
	}
	assertNoLeak(t, emu, "status", string(body)+string(text))
}
