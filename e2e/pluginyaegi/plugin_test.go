package pluginyaegi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kycgate/faceidsigner/e2e/yaegihost"
	"github.com/kycgate/faceidsigner/faceidtest"
	"github.com/kycgate/faceidsigner/signer"
)

func TestCatalogAcceptsPlugin(t *testing.T) {
	if err := yaegihost.CheckCatalog(repoRoot(t)); err != nil {
		t.Fatal(err)
	}
}

func TestSignsUnderYaegi(t *testing.T) {
	p := loadPlugin(t)
	emu := newEmulator(t)
	h := newHandler(t, p, proxyTo(emu, nil), config(emu, map[string]any{
		"maxBodyBytes": "65536", "retryCodes": "400101,400999", "mediaRetries": "3", "refreshInterval": "20m",
	}), "faceid@file")
	a := serve(t, h, http.MethodPost, `{"orderNo":"`+order+`","getFile":"1","nonce":"client","keep":{"a":[1,"x"]}}`)
	if a.status != 200 || a.body["code"] != "0" {
		t.Fatalf("answer %d %s", a.status, a.raw)
	}
	reqs := emu.Requests()
	if len(reqs) != 1 || reqs[0].RawQuery != "orderNo="+order || reqs[0].Path != "/api/v2/base/queryfacerecord" {
		t.Fatalf("emulator saw %+v", reqs)
	}
	var sent map[string]any
	if err := json.Unmarshal(reqs[0].Body, &sent); err != nil {
		t.Fatal(err)
	}
	tickets := emu.IssuedTickets()
	nonce, _ := sent["nonce"].(string)
	if want := signer.Sign(appID, order, "1.0.0", tickets[0], nonce); sent["sign"] != want {
		t.Fatalf("sign %v, want %s", sent["sign"], want)
	}
	if len(nonce) != 32 || nonce == "client" {
		t.Fatalf("nonce %q not replaced by a fresh one", nonce)
	}
	if keep, _ := json.Marshal(sent["keep"]); string(keep) != `{"a":[1,"x"]}` {
		t.Fatalf("pass-through field changed: %s", keep)
	}
	assertNoLeak(t, emu, "response", a.raw)
	assertNoLeak(t, emu, "plugin output", p.Output().String())
	if !p.Output().Contains(`"msg":"ticket fetched"`) {
		t.Fatalf("no ticket fetched event in the output:\n%s", p.Output())
	}
}

func TestBadInputUnderYaegi(t *testing.T) {
	p := loadPlugin(t)
	emu := newEmulator(t)
	var forwarded atomic.Int64
	h := newHandler(t, p, proxyTo(emu, &forwarded), config(emu, map[string]any{"maxBodyBytes": "100"}), "bad@file")
	srv := httptest.NewServer(h)
	defer srv.Close()
	cases := []struct {
		method, body string
		status       int
		code         string
	}{
		{http.MethodGet, "", 405, "FACEIDSIGNER_METHOD_NOT_ALLOWED"},
		{http.MethodOptions, "", 405, "FACEIDSIGNER_METHOD_NOT_ALLOWED"},
		{http.MethodPost, "", 400, "FACEIDSIGNER_BAD_JSON"},
		{http.MethodPost, "{", 400, "FACEIDSIGNER_BAD_JSON"},
		{http.MethodPost, `[1]`, 400, "FACEIDSIGNER_BAD_JSON"},
		{http.MethodPost, `null`, 400, "FACEIDSIGNER_BAD_JSON"},
		{http.MethodPost, `{}`, 400, "FACEIDSIGNER_BAD_FIELD"},
		{http.MethodPost, `{"orderNo":7}`, 400, "FACEIDSIGNER_BAD_FIELD"},
		{http.MethodPost, `{"orderNo":"a b"}`, 400, "FACEIDSIGNER_BAD_FIELD"},
		{http.MethodPost, `{"orderNo":"` + strings.Repeat("9", 33) + `"}`, 400, "FACEIDSIGNER_BAD_FIELD"},
		{http.MethodPost, `{"orderNo":"a","pad":"` + strings.Repeat("x", 100) + `"}`, 413, "FACEIDSIGNER_BODY_TOO_LARGE"},
	}
	for _, c := range cases {
		a := send(t, srv.URL, c.method, c.body)
		if a.status != c.status || a.body["code"] != c.code || a.body["msg"] == "" {
			t.Errorf("%s %q: %d %s, want %d %s", c.method, c.body, a.status, a.raw, c.status, c.code)
		}
		if c.status == 405 && a.header.Get("Allow") != "POST" {
			t.Errorf("405 without Allow: POST")
		}
	}
	if forwarded.Load() != 0 || emu.TokenCalls() != 0 {
		t.Fatalf("bad input forwarded %d requests, fetched %d tokens", forwarded.Load(), emu.TokenCalls())
	}
	assertNoLeak(t, emu, "plugin output", p.Output().String())
}

func TestConcurrentFirstRequestsUnderYaegi(t *testing.T) {
	p := loadPlugin(t)
	emu := newEmulator(t)
	emu.SetFault(faceidtest.TokenEndpoint, faceidtest.Fault{Delay: 200 * time.Millisecond, Times: 1})
	next := proxyTo(emu, nil)
	var servers []*httptest.Server
	for i := 0; i < 5; i++ {
		srv := httptest.NewServer(newHandler(t, p, next, config(emu, nil), "router"))
		defer srv.Close()
		servers = append(servers, srv)
	}
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(url string) {
			defer wg.Done()
			if a := send(t, url, http.MethodPost, `{"orderNo":"`+order+`"}`); a.status == 200 && a.body["code"] == "0" {
				accepted.Add(1)
			}
		}(servers[i%5].URL)
	}
	wg.Wait()
	if emu.TokenCalls() != 1 || emu.TicketCalls() != 1 || accepted.Load() != 200 {
		t.Fatalf("token calls %d, ticket calls %d, accepted %d; want 1, 1, 200", emu.TokenCalls(), emu.TicketCalls(), accepted.Load())
	}
}

func TestNewLeavesGoroutinesFlat(t *testing.T) {
	p := loadPlugin(t)
	emu := newEmulator(t)
	next := proxyTo(emu, nil)
	// Warm: the first ticket and the HTTP connections exist.
	serve(t, newHandler(t, p, next, config(emu, nil), "warm"), http.MethodPost, `{"orderNo":"`+order+`"}`)
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	for i := 0; i < 100; i++ {
		h := newHandler(t, p, next, config(emu, map[string]any{"refreshInterval": "20m"}), "reload")
		if i%10 == 0 {
			serve(t, h, http.MethodPost, `{"orderNo":"`+order+`"}`)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(200 * time.Millisecond)
	after := runtime.NumGoroutine()
	if after > before+3 {
		t.Fatalf("goroutines grew from %d to %d over 100 New calls", before, after)
	}
	if emu.TokenCalls() != 1 {
		t.Fatalf("reloads refetched the token: %d calls", emu.TokenCalls())
	}
}

func TestVendorFailuresUnderYaegi(t *testing.T) {
	p := loadPlugin(t)
	cases := []struct {
		name   string
		ep     faceidtest.Endpoint
		fault  faceidtest.Fault
		status int
		code   string
	}{
		{"token 502", faceidtest.TokenEndpoint, faceidtest.Fault{Status: 502}, 502, "FACEIDSIGNER_VENDOR_UNREACHABLE"},
		{"ticket refused", faceidtest.TicketEndpoint, faceidtest.Fault{Code: "400103", Msg: "no"}, 502, "FACEIDSIGNER_VENDOR_UNREACHABLE"},
		{"token slow", faceidtest.TokenEndpoint, faceidtest.Fault{Delay: 2 * time.Second}, 504, "FACEIDSIGNER_VENDOR_TIMEOUT"},
	}
	for _, c := range cases {
		emu := newEmulator(t)
		emu.SetFault(c.ep, c.fault)
		var forwarded atomic.Int64
		h := newHandler(t, p, proxyTo(emu, &forwarded), config(emu, map[string]any{"timeout": "200ms"}), "down")
		srv := httptest.NewServer(h)
		a := send(t, srv.URL, http.MethodPost, `{"orderNo":"`+order+`"}`)
		if a.status != c.status || a.body["code"] != c.code || a.header.Get("Retry-After") == "" {
			t.Errorf("%s: %d %v %s", c.name, a.status, a.header, a.raw)
		}
		b := send(t, srv.URL, http.MethodPost, `{"orderNo":"`+order+`"}`)
		if b.status != 503 || b.body["code"] != "FACEIDSIGNER_TICKET_UNAVAILABLE" {
			t.Errorf("%s, backing off: %d %s", c.name, b.status, b.raw)
		}
		srv.Close()
		if forwarded.Load() != 0 {
			t.Errorf("%s: forwarded without a ticket", c.name)
		}
		assertNoLeak(t, emu, "response", a.raw+b.raw)
		assertNoLeak(t, emu, "plugin output", p.Output().String())
	}
}

func TestStaleTicketAndLateMediaUnderYaegi(t *testing.T) {
	p := loadPlugin(t)
	emu := newEmulator(t)
	emu.AddResult(appID, "late1", faceidtest.Result{Photo: []byte("P"), Video: []byte("V"), MediaAfter: 300 * time.Millisecond})
	h := newHandler(t, p, proxyTo(emu, nil), config(emu, map[string]any{"mediaRetryDelay": "200ms"}), "retry")
	srv := httptest.NewServer(h)
	defer srv.Close()
	if a := send(t, srv.URL, http.MethodPost, `{"orderNo":"`+order+`"}`); a.body["code"] != "0" {
		t.Fatalf("first: %s", a.raw)
	}
	emu.RevokeTokens(appID)
	// The fast path (ticket ready, plain body): the retry's answer replaces
	// the rejected one's headers in the client's header map.
	if a := send(t, srv.URL, http.MethodPost, `{"orderNo":"`+order+`"}`); a.body["code"] != "0" || len(a.header.Values("Content-Type")) != 1 || len(a.header.Values("Content-Length")) != 1 {
		t.Fatalf("after revocation: %v %s", a.header, a.raw)
	}
	if emu.TokenCalls() != 2 || emu.CodeCount("400101") != 1 {
		t.Fatalf("token calls %d, 400101 answers %d; want 2 and 1", emu.TokenCalls(), emu.CodeCount("400101"))
	}
	a := send(t, srv.URL, http.MethodPost, `{"orderNo":"late1","getFile":"1"}`)
	result, _ := a.body["result"].(map[string]any)
	if result["photo"] == nil || result["video"] == nil {
		t.Fatalf("late media not polled: %s", a.raw)
	}
	assertNoLeak(t, emu, "plugin output", p.Output().String())
}

func TestConfigUnderYaegi(t *testing.T) {
	p := loadPlugin(t)
	emu := newEmulator(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config(emu, map[string]any{"secret": "", "secretFile": secretFile})
	if a := serve(t, newHandler(t, p, proxyTo(emu, nil), cfg, "file"), http.MethodPost, `{"orderNo":"`+order+`"}`); a.body["code"] != "0" {
		t.Fatalf("secretFile: %s", a.raw)
	}
	bad := map[string]map[string]any{
		"appId":           {"appId": ""},
		"secretFile":      {"secret": "", "secretFile": "/nonexistent/secret"},
		"refreshInterval": {"refreshInterval": "20"},
		"timeout":         {"timeout": "-1s"},
		"maxBodyBytes":    {"maxBodyBytes": "-5"},
		"api":             {"api": "nope"},
		"redisAddress":    {"redisAddress": "no-port"},
	}
	for field, extra := range bad {
		_, err := p.New(t.Context(), http.NotFoundHandler(), config(emu, extra), "bad")
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v, want one naming %s", field, err, field)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error leaks the secret", field)
		}
	}
	// A string that is not a number fails in Traefik's decoder already.
	if _, err := p.New(t.Context(), http.NotFoundHandler(), config(emu, map[string]any{"maxBodyBytes": "lots"}), "bad"); err == nil {
		t.Error("maxBodyBytes \"lots\" accepted")
	}
}
