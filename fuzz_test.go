package faceidsigner

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kycgate/faceidsigner/faceidtest"
	"github.com/kycgate/faceidsigner/signer"
	"github.com/kycgate/faceidsigner/ticketcache"
)

// FuzzServeHTTP sends arbitrary bodies through the middleware. Whatever the
// input, it must not panic, must answer, and must forward only a correctly
// signed request that keeps every field of the app it does not own.
func FuzzServeHTTP(f *testing.F) {
	seeds := []string{
		`{"orderNo":"orderNo596551"}`, `{"orderNo":"a","getFile":"1"}`, `{"orderNo":"a","sign":"x","appId":1}`,
		`{"orderNo":"a","nonce":null,"version":{}}`, ` {"orderNo" : "abc" , "x":[1,2,{"y":"z"}]} `,
		`{"orderNo":"a","orderNo":"b"}`, `{"orderNo":"a\u0062"}`, `{"order\u004eo":"abc"}`, `{}`, `[]`, `null`,
		`"orderNo"`, `{"orderNo":"` + strings.Repeat("9", 33) + `"}`, `{"orderNo":"订单"}`, "{\"orderNo\":\"a\"}\n", ``,
		`{"orderNo":"a","":"empty key"}`, `{"ORDERNO":"abc"}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	emu := faceidtest.NewServer()
	defer emu.Close()
	emu.AddApp(testAppID, testSecret)
	var forwarded []byte
	var forwardedQuery string
	next := http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		forwarded, _ = io.ReadAll(req.Body)
		forwardedQuery = req.RequestURI
		_, _ = io.WriteString(rw, `{"code":"0"}`)
	})
	cfg := CreateConfig()
	cfg.AppID = testAppID
	cfg.Secret = testSecret
	cfg.Endpoint = emu.URL
	cfg.LogLevel = "error"
	h, err := New(context.Background(), next, cfg, "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	h.(*Signer).log.stderr = io.Discard
	ticket, err := h.(*Signer).tickets.Value(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		forwarded = nil
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
		if forwarded == nil {
			if rec.Code < 400 || !strings.Contains(rec.Body.String(), `"code":"FACEIDSIGNER_`) {
				t.Fatalf("not forwarded and no JSON error: %d %s", rec.Code, rec.Body.String())
			}
			return
		}
		var in, out map[string]any
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("forwarded a body that is not JSON: %q", body)
		}
		if err := json.Unmarshal(forwarded, &out); err != nil {
			t.Fatalf("forwarded invalid JSON %q for %q", forwarded, body)
		}
		orderNo, _ := out["orderNo"].(string)
		nonce, _ := out["nonce"].(string)
		if !signer.IsAlphanumeric(orderNo, 32) || !signer.IsAlphanumeric(nonce, 32) || len(nonce) != 32 {
			t.Fatalf("forwarded orderNo %q nonce %q", orderNo, nonce)
		}
		if out["sign"] != signer.Sign(testAppID, orderNo, "1.0.0", ticket, nonce) || out["appId"] != testAppID || out["version"] != "1.0.0" {
			t.Fatalf("forwarded a badly signed body %s", forwarded)
		}
		if forwardedQuery != "/api/v2/base/queryfacerecord?orderNo="+orderNo {
			t.Fatalf("forwarded to %q", forwardedQuery)
		}
		for k, v := range in {
			if k == "appId" || k == "version" || k == "nonce" || k == "sign" {
				continue
			}
			a, _ := json.Marshal(v)
			b, _ := json.Marshal(out[k])
			if !bytes.Equal(a, b) {
				t.Fatalf("field %q changed from %s to %s", k, a, b)
			}
		}
	})
}

// TestFastAndGeneralPathsAgree: a body the fast path signs and the same body
// with a field the gateway owns (which sends it down the general path) are
// forwarded alike, both correctly signed.
func TestFastAndGeneralPathsAgree(t *testing.T) {
	g := newGateway(t, nil)
	fast := `{"orderNo":"` + testOrder + `", "getFile":"0"}`
	general := `{"orderNo":"` + testOrder + `","getFile":"0","sign":"junk","appId":"OTHER"}`
	if re := fastBodyPattern("orderNo", "getFile"); !re.MatchString(fast) || re.MatchString(general) {
		t.Fatal("the bodies do not take the paths this test is about")
	}
	if a := g.do(t, http.MethodPost, queryBody, nil); a.body["code"] != "0" { // fetches the ticket
		t.Fatalf("first request: %s", a.raw)
	}
	for _, body := range []string{fast, general} {
		if ticketcache.Hot(g.signer.tickets) == "" {
			t.Fatal("no ticket ready: the request would not take the fast path")
		}
		if a := g.do(t, http.MethodPost, body, nil); a.body["code"] != "0" {
			t.Fatalf("%s: %s", body, a.raw)
		}
	}
	reqs := g.emu.Requests()[1:]
	var forwarded []map[string]any
	for _, r := range reqs {
		var m map[string]any
		if err := json.Unmarshal(r.Body, &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "nonce")
		delete(m, "sign")
		forwarded = append(forwarded, m)
	}
	a, _ := json.Marshal(forwarded[0])
	b, _ := json.Marshal(forwarded[1])
	if len(reqs) != 2 || !bytes.Equal(a, b) || reqs[0].RawQuery != reqs[1].RawQuery {
		t.Fatalf("fast path sent %s, general path %s", a, b)
	}
}
