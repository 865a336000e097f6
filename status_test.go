package faceidsigner

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kycgate/faceidsigner/faceidtest"
)

func getStatus(t *testing.T, g *gateway, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(g.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestStatusPath(t *testing.T) {
	g := newGateway(t, func(c *Config) { c.StatusPath = "/faceid/status" })
	g.do(t, http.MethodPost, queryBody, nil)
	g.do(t, http.MethodPost, `{"orderNo":"unknown1"}`, nil)
	g.do(t, http.MethodPost, `{"orderNo":"bad-1"}`, nil)
	g.emu.RevokeTokens(testAppID)
	g.do(t, http.MethodPost, queryBody, nil) // stale ticket, retried

	status, body := getStatus(t, g, "/faceid/status")
	if status != 200 {
		t.Fatalf("status %d %s", status, body)
	}
	var r statusReport
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	c := r.Counters
	if !r.Ticket.Valid || r.Ticket.ExpiresInSeconds < 3000 || !r.Ticket.LastRefreshOK || r.AppID != testAppID {
		t.Errorf("ticket report %+v", r.Ticket)
	}
	if c.Signed != 3 || c.Rejected[codeBadField] != 1 || c.VendorErrors["66660011"] != 1 || c.Retries["stale ticket"] != 1 ||
		c.Refreshes != 2 || c.ForcedRefreshes != 1 {
		t.Errorf("counters %+v", c)
	}
	assertNoLeak(t, g.emu, "status", body)

	status, text := getStatus(t, g, "/faceid/status/metrics")
	label := `{middleware="` + g.name + `",app_id="IDAXXXXX"`
	for _, want := range []string{
		"# TYPE faceidsigner_signed_total counter",
		"faceidsigner_signed_total" + label + "} 3",
		"faceidsigner_rejected_total" + label + `,code="FACEIDSIGNER_BAD_FIELD"} 1`,
		"faceidsigner_vendor_errors_total" + label + `,code="66660011"} 1`,
		"faceidsigner_retries_total" + label + `,reason="stale ticket"} 1`,
		"faceidsigner_ticket_valid" + label + "} 1",
	} {
		if status != 200 || !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
	assertNoLeak(t, g.emu, "metrics", text)
	if g.forwarded.Load() != 4 {
		t.Fatalf("status requests were forwarded: %d", g.forwarded.Load())
	}
	// A body the fast path would sign, with a ticket ready: still the
	// status path's 405, never forwarded.
	for _, path := range []string{"/faceid/status", "/faceid/status/metrics"} {
		for _, body := range []string{"{}", queryBody} {
			resp, err := http.Post(g.srv.URL+path, "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 405 || g.forwarded.Load() != 4 {
				t.Fatalf("POST %s to %s: %d, forwarded %d", body, path, resp.StatusCode, g.forwarded.Load())
			}
		}
	}
}

func TestStatusPathOffByDefault(t *testing.T) {
	g := newGateway(t, nil)
	if status, _ := getStatus(t, g, "/faceid/status"); status != 405 {
		t.Fatalf("without statusPath, GET is an ordinary (rejected) request: %d", status)
	}
	_ = faceidtest.CodeOK
}

func TestCounterKeysAreBounded(t *testing.T) {
	c := countersFor("TestCounterKeysAreBounded")
	for i := 0; i < 200; i++ {
		c.add(c.vendorErrors, "code"+strings.Repeat("x", i%100)+string(rune('a'+i%26)))
	}
	_, _, vendorErrors, _ := c.snapshot()
	if len(vendorErrors) > maxCounterKeys+1 || vendorErrors["other"] == 0 {
		t.Fatalf("%d keys, other=%d", len(vendorErrors), vendorErrors["other"])
	}
}
