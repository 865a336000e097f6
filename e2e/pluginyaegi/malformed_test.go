package pluginyaegi

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kycgate/faceidsigner/faceidtest"
)

// TestMalformedVendorAnswersUnderYaegi: each malformed token or ticket
// answer gives the documented JSON error, never an unsigned forward, and
// lenient ones (expire_in as a number, huge, or missing) still work.
func TestMalformedVendorAnswersUnderYaegi(t *testing.T) {
	p := loadPlugin(t)
	cases := []struct {
		name   string
		setup  func(emu *faceidtest.Server)
		status int
	}{
		{"empty 200", func(emu *faceidtest.Server) {
			emu.SetFault(faceidtest.TokenEndpoint, faceidtest.Fault{RawBody: true})
		}, 502},
		{"html", func(emu *faceidtest.Server) {
			emu.SetFault(faceidtest.TicketEndpoint, faceidtest.Fault{Body: "<html><body>gateway error</body></html>"})
		}, 502},
		{"tickets empty", func(emu *faceidtest.Server) {
			emu.SetTicketResponseHook(func(m map[string]any) { m["tickets"] = []any{} })
		}, 502},
		{"tickets missing", func(emu *faceidtest.Server) {
			emu.SetTicketResponseHook(func(m map[string]any) { delete(m, "tickets") })
		}, 502},
		{"expire_in zero", func(emu *faceidtest.Server) {
			emu.SetTokenResponseHook(func(m map[string]any) { m["expire_in"] = "0" })
		}, 502},
		{"expire_in negative", func(emu *faceidtest.Server) {
			emu.SetTicketResponseHook(func(m map[string]any) {
				m["tickets"] = []any{map[string]any{"value": "T", "expire_in": -60}}
			})
		}, 502},
		{"expire_in missing", func(emu *faceidtest.Server) {
			emu.SetTokenResponseHook(func(m map[string]any) { delete(m, "expire_in") })
		}, 200},
		{"expire_in huge", func(emu *faceidtest.Server) {
			emu.SetTokenResponseHook(func(m map[string]any) { m["expire_in"] = 1e18 })
		}, 200},
		{"expire_in number", func(emu *faceidtest.Server) { emu.SetExpireInAsNumber(true) }, 200},
		{"code as number", func(emu *faceidtest.Server) {
			emu.SetTokenResponseHook(func(m map[string]any) { m["code"] = 0 })
		}, 200},
	}
	for _, c := range cases {
		emu := newEmulator(t)
		c.setup(emu)
		var forwarded = 0
		next := proxyTo(emu, nil)
		h := newHandler(t, p, http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
			forwarded++
			next.ServeHTTP(rw, req)
		}), config(emu, nil), "malformed")
		srv := httptest.NewServer(h)
		a := send(t, srv.URL, http.MethodPost, `{"orderNo":"`+order+`"}`)
		srv.Close()
		if a.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, a.status, a.raw, c.status)
			continue
		}
		if c.status != 200 && (forwarded != 0 || a.body["code"] != "FACEIDSIGNER_VENDOR_UNREACHABLE") {
			t.Errorf("%s: forwarded %d, answer %s", c.name, forwarded, a.raw)
		}
		if c.status == 200 && a.body["code"] != "0" {
			t.Errorf("%s: %s", c.name, a.raw)
		}
		assertNoLeak(t, emu, c.name, a.raw+p.Output().String())
	}
}

// TestTicketFailureAfterTokenUnderYaegi: the token call succeeds, the ticket
// call fails; the next attempt (after the backoff) reuses that token.
func TestTicketFailureAfterTokenUnderYaegi(t *testing.T) {
	p := loadPlugin(t)
	emu := newEmulator(t)
	emu.SetFault(faceidtest.TicketEndpoint, faceidtest.Fault{Status: 502, Times: 1})
	h := newHandler(t, p, proxyTo(emu, nil), config(emu, nil), "token-kept")
	srv := httptest.NewServer(h)
	defer srv.Close()
	if a := send(t, srv.URL, http.MethodPost, `{"orderNo":"`+order+`"}`); a.status != 502 {
		t.Fatalf("first: %d %s", a.status, a.raw)
	}
	time.Sleep(1100 * time.Millisecond) // the first backoff is at most 1 s
	if a := send(t, srv.URL, http.MethodPost, `{"orderNo":"`+order+`"}`); a.body["code"] != "0" {
		t.Fatalf("after the backoff: %s", a.raw)
	}
	if emu.TokenCalls() != 1 || emu.TicketCalls() != 2 {
		t.Fatalf("token calls %d ticket calls %d; want 1 and 2", emu.TokenCalls(), emu.TicketCalls())
	}
}
