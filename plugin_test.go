package faceidsigner

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kycgate/faceidsigner/faceidtest"
	"github.com/kycgate/faceidsigner/signer"
)

const (
	testAppID  = "IDAXXXXX"
	testSecret = "plugin-test-secret-9f8e7d6c5b4a"
	testOrder  = "orderNo596551"
)

// gateway is the plugin in front of a reverse proxy to the emulator, served
// on loopback: what Traefik does, compiled natively.
type gateway struct {
	emu       *faceidtest.Server
	srv       *httptest.Server
	forwarded atomic.Int64
	logs      *syncBuffer
	name      string
	signer    *Signer
}

var gatewaySeq atomic.Int64

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newGateway(t *testing.T, configure func(*Config)) *gateway {
	t.Helper()
	g := &gateway{emu: faceidtest.NewServer(), logs: &syncBuffer{}}
	t.Cleanup(g.emu.Close)
	g.emu.AddApp(testAppID, testSecret)
	g.emu.AddResult(testAppID, testOrder, faceidtest.Result{Photo: []byte("PHOTO-BYTES"), Video: []byte("VIDEO-BYTES")})
	target, _ := url.Parse(g.emu.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	next := http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		g.forwarded.Add(1)
		proxy.ServeHTTP(rw, req)
	})
	cfg := CreateConfig()
	cfg.AppID = testAppID
	cfg.Secret = testSecret
	cfg.Endpoint = g.emu.URL
	cfg.LogLevel = "debug"
	if configure != nil {
		configure(cfg)
	}
	g.name = t.Name() + "#" + strconv.FormatInt(gatewaySeq.Add(1), 10) // counters are per name, process-wide
	h, err := New(context.Background(), next, cfg, g.name)
	if err != nil {
		t.Fatal(err)
	}
	g.signer = h.(*Signer)
	h.(*Signer).log.stdout = g.logs
	h.(*Signer).log.stderr = g.logs
	g.srv = httptest.NewServer(h)
	t.Cleanup(g.srv.Close)
	return g
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (g *gateway) do(t *testing.T, method, body string, header map[string]string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, g.srv.URL+"/faceid/query", strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return g.send(t, req)
}

func (g *gateway) send(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// assertNoLeak fails when the text holds the secret or any token or ticket
// the emulator issued.
func assertNoLeak(t *testing.T, emu *faceidtest.Server, where, text string) {
	t.Helper()
	for _, s := range append([]string{testSecret}, emu.Secrets()...) {
		if s != "" && strings.Contains(text, s) {
			t.Fatalf("%s leaks a credential", where)
		}
	}
}

func TestSignsUnsignedRequest(t *testing.T) {
	g := newGateway(t, nil)
	a := g.do(t, http.MethodPost, `{"orderNo":"`+testOrder+`","getFile":"1","extra":{"keep":[1,2]},"sign":"CLIENT","appId":"EVIL0000"}`, nil)
	if a.status != 200 || a.body["code"] != "0" {
		t.Fatalf("answer %d %s", a.status, a.raw)
	}
	result, _ := a.body["result"].(map[string]any)
	if result["photo"] == nil || result["video"] == nil {
		t.Fatalf("getFile 1 should return photo and video: %s", a.raw)
	}
	reqs := g.emu.Requests()
	if len(reqs) != 1 {
		t.Fatalf("emulator saw %d signed requests", len(reqs))
	}
	r := reqs[0]
	if r.Path != "/api/v2/base/queryfacerecord" || r.RawQuery != "orderNo="+testOrder {
		t.Errorf("forwarded to %s?%s", r.Path, r.RawQuery)
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Errorf("content type %q", r.Header.Get("Content-Type"))
	}
	var sent map[string]any
	if err := json.Unmarshal(r.Body, &sent); err != nil {
		t.Fatal(err)
	}
	nonce, _ := sent["nonce"].(string)
	tickets := g.emu.IssuedTickets()
	want := signer.Sign(testAppID, testOrder, "1.0.0", tickets[len(tickets)-1], nonce)
	if sent["sign"] != want || sent["appId"] != testAppID || sent["version"] != "1.0.0" || sent["getFile"] != "1" {
		t.Errorf("sent body %s", r.Body)
	}
	if len(nonce) != 32 || !signer.IsAlphanumeric(nonce, 32) {
		t.Errorf("nonce %q", nonce)
	}
	if extra, _ := json.Marshal(sent["extra"]); string(extra) != `{"keep":[1,2]}` {
		t.Errorf("extra field changed: %s", extra)
	}
	assertNoLeak(t, g.emu, "response", a.raw)
	assertNoLeak(t, g.emu, "logs", g.logs.String())
}

func TestNonceIsFreshPerRequest(t *testing.T) {
	g := newGateway(t, nil)
	for i := 0; i < 20; i++ {
		if a := g.do(t, http.MethodPost, `{"orderNo":"`+testOrder+`"}`, nil); a.body["code"] != "0" {
			t.Fatalf("answer %s", a.raw)
		}
	}
	seen := map[string]bool{}
	for _, r := range g.emu.Requests() {
		var sent map[string]string
		_ = json.Unmarshal(r.Body, &sent)
		if seen[sent["nonce"]] {
			t.Fatalf("nonce reused")
		}
		seen[sent["nonce"]] = true
	}
	if g.emu.TokenCalls() != 1 || g.emu.TicketCalls() != 1 {
		t.Fatalf("token calls %d, ticket calls %d; want 1 and 1", g.emu.TokenCalls(), g.emu.TicketCalls())
	}
}

func TestUnknownOrderPassesThrough(t *testing.T) {
	g := newGateway(t, nil)
	a := g.do(t, http.MethodPost, `{"orderNo":"unknown42"}`, nil)
	if a.status != 200 || a.body["code"] != faceidtest.CodeNoResult {
		t.Fatalf("answer %d %s", a.status, a.raw)
	}
}

func TestBadInputIsRejectedAndNotForwarded(t *testing.T) {
	g := newGateway(t, func(c *Config) { c.MaxBodyBytes = 200 })
	long := `{"orderNo":"` + testOrder + `","pad":"` + strings.Repeat("x", 200) + `"}`
	cases := []struct {
		name   string
		method string
		body   string
		status int
		code   string
	}{
		{"GET", http.MethodGet, "", 405, codeMethodNotAllowed},
		{"HEAD", http.MethodHead, "", 405, codeMethodNotAllowed},
		{"OPTIONS", http.MethodOptions, "", 405, codeMethodNotAllowed},
		{"PUT", http.MethodPut, `{"orderNo":"a"}`, 405, codeMethodNotAllowed},
		{"empty", http.MethodPost, "", 400, codeBadJSON},
		{"not json", http.MethodPost, "orderNo=abc", 400, codeBadJSON},
		{"array", http.MethodPost, `[{"orderNo":"abc"}]`, 400, codeBadJSON},
		{"null", http.MethodPost, `null`, 400, codeBadJSON},
		{"string", http.MethodPost, `"abc"`, 400, codeBadJSON},
		{"trailing garbage", http.MethodPost, `{"orderNo":"abc"} x`, 400, codeBadJSON},
		{"missing orderNo", http.MethodPost, `{"getFile":"1"}`, 400, codeBadField},
		{"numeric orderNo", http.MethodPost, `{"orderNo":12345}`, 400, codeBadField},
		{"empty orderNo", http.MethodPost, `{"orderNo":""}`, 400, codeBadField},
		{"dash in orderNo", http.MethodPost, `{"orderNo":"order-1"}`, 400, codeBadField},
		{"unicode orderNo", http.MethodPost, `{"orderNo":"订单1"}`, 400, codeBadField},
		{"escaped orderNo", http.MethodPost, `{"orderNo":"a\u0026b"}`, 400, codeBadField},
		{"33 chars", http.MethodPost, `{"orderNo":"` + strings.Repeat("a", 33) + `"}`, 400, codeBadField},
		{"too large", http.MethodPost, long, 413, codeBodyTooLarge},
	}
	for _, c := range cases {
		a := g.do(t, c.method, c.body, map[string]string{"Content-Type": "application/json"})
		if a.status != c.status {
			t.Errorf("%s: status %d, want %d (%s)", c.name, a.status, c.status, a.raw)
			continue
		}
		if c.method == http.MethodHead {
			continue // no body
		}
		if a.body["code"] != c.code || a.body["msg"] == "" {
			t.Errorf("%s: body %s, want code %s", c.name, a.raw, c.code)
		}
		if c.status == 405 && a.header.Get("Allow") != "POST" {
			t.Errorf("%s: Allow %q", c.name, a.header.Get("Allow"))
		}
	}
	// Chunked, over the limit.
	req, _ := http.NewRequest(http.MethodPost, g.srv.URL, io.MultiReader(strings.NewReader(long)))
	req.ContentLength = -1
	if a := g.send(t, req); a.status != 413 {
		t.Errorf("chunked over limit: %d %s", a.status, a.raw)
	}
	if n := g.forwarded.Load(); n != 0 {
		t.Fatalf("%d bad requests were forwarded", n)
	}
	if g.emu.TokenCalls() != 0 {
		t.Fatalf("bad requests fetched a token")
	}
	assertNoLeak(t, g.emu, "logs", g.logs.String())
}

func TestChunkedBodyIsSignedWithContentLength(t *testing.T) {
	g := newGateway(t, nil)
	req, _ := http.NewRequest(http.MethodPost, g.srv.URL, io.MultiReader(strings.NewReader(`{"orderNo":"`+testOrder+`"}`)))
	req.ContentLength = -1
	if a := g.send(t, req); a.body["code"] != "0" {
		t.Fatalf("chunked request: %s", a.raw)
	}
	r := g.emu.Requests()[0]
	if r.Header.Get("Content-Length") == "" && len(r.Header.Values("Transfer-Encoding")) > 0 {
		t.Errorf("forwarded chunked instead of with a Content-Length")
	}
}

func TestVendorFailuresGiveJSONErrors(t *testing.T) {
	cases := []struct {
		name   string
		fault  faceidtest.Fault
		ep     faceidtest.Endpoint
		status int
		code   string
	}{
		{"token 503", faceidtest.Fault{Status: 503}, faceidtest.TokenEndpoint, 502, codeVendorUnreachable},
		{"ticket refused", faceidtest.Fault{Code: "400103", Msg: "denied"}, faceidtest.TicketEndpoint, 502, codeVendorUnreachable},
		{"token malformed", faceidtest.Fault{Body: "<html>oops</html>"}, faceidtest.TokenEndpoint, 502, codeVendorUnreachable},
		{"token slow", faceidtest.Fault{Delay: 3 * time.Second}, faceidtest.TokenEndpoint, 504, codeVendorTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newGateway(t, func(cfg *Config) { cfg.Timeout = "200ms" })
			g.emu.SetFault(c.ep, c.fault)
			a := g.do(t, http.MethodPost, `{"orderNo":"`+testOrder+`"}`, nil)
			if a.status != c.status || a.body["code"] != c.code || a.header.Get("Retry-After") == "" {
				t.Fatalf("answer %d %v %s", a.status, a.header, a.raw)
			}
			// While backing off: 503 at once, still nothing forwarded.
			a = g.do(t, http.MethodPost, `{"orderNo":"`+testOrder+`"}`, nil)
			if a.status != 503 || a.body["code"] != codeTicketUnavailable {
				t.Fatalf("during backoff: %d %s", a.status, a.raw)
			}
			if g.forwarded.Load() != 0 {
				t.Fatal("forwarded without a ticket")
			}
			assertNoLeak(t, g.emu, "response", a.raw)
			assertNoLeak(t, g.emu, "logs", g.logs.String())
		})
	}
}

func TestConcurrentFirstRequestsFetchOnce(t *testing.T) {
	emu := faceidtest.NewServer()
	defer emu.Close()
	emu.AddApp(testAppID, testSecret)
	emu.AddResult(testAppID, testOrder, faceidtest.Result{})
	emu.SetFault(faceidtest.TokenEndpoint, faceidtest.Fault{Delay: 100 * time.Millisecond, Times: 1})
	target, _ := url.Parse(emu.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var handlers []http.Handler
	for i := 0; i < 5; i++ {
		cfg := CreateConfig()
		cfg.AppID = testAppID
		cfg.Secret = testSecret
		cfg.Endpoint = emu.URL
		h, err := New(context.Background(), proxy, cfg, "router-"+string(rune('a'+i)))
		if err != nil {
			t.Fatal(err)
		}
		handlers = append(handlers, h)
	}
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(h http.Handler) {
			defer wg.Done()
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"orderNo":"`+testOrder+`"}`))
			h.ServeHTTP(rec, req)
			var body map[string]any
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			if rec.Code == 200 && body["code"] == "0" {
				ok.Add(1)
			}
		}(handlers[i%5])
	}
	wg.Wait()
	if emu.TokenCalls() != 1 || emu.TicketCalls() != 1 || ok.Load() != 200 {
		t.Fatalf("token calls %d, ticket calls %d, accepted %d; want 1, 1, 200", emu.TokenCalls(), emu.TicketCalls(), ok.Load())
	}
}

func TestNewValidatesConfig(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("  from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty")
	_ = os.WriteFile(emptyFile, []byte("\n"), 0o600)
	cases := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // substring naming the field; "" means valid
	}{
		{"defaults plus credentials", func(c *Config) {}, ""},
		{"secret file", func(c *Config) { c.Secret = ""; c.SecretFile = secretFile }, ""},
		{"missing appId", func(c *Config) { c.AppID = "" }, "appId"},
		{"bad appId", func(c *Config) { c.AppID = "ID AX" }, "appId"},
		{"no secret", func(c *Config) { c.Secret = "" }, "secret"},
		{"both secrets", func(c *Config) { c.SecretFile = secretFile }, "secret"},
		{"missing secret file", func(c *Config) { c.Secret = ""; c.SecretFile = filepath.Join(dir, "nope") }, "secretFile"},
		{"empty secret file", func(c *Config) { c.Secret = ""; c.SecretFile = emptyFile }, "secretFile"},
		{"endpoint scheme", func(c *Config) { c.Endpoint = "ftp://x" }, "endpoint"},
		{"endpoint query", func(c *Config) { c.Endpoint = "https://x/?a=b" }, "endpoint"},
		{"duration without unit", func(c *Config) { c.RefreshInterval = "20" }, "refreshInterval"},
		{"refresh too long", func(c *Config) { c.RefreshInterval = "2h" }, "refreshInterval"},
		{"bad timeout", func(c *Config) { c.Timeout = "soon" }, "timeout"},
		{"negative body", func(c *Config) { c.MaxBodyBytes = -1 }, "maxBodyBytes"},
		{"huge body", func(c *Config) { c.MaxBodyBytes = 1 << 40 }, "maxBodyBytes"},
		{"unknown api", func(c *Config) { c.API = "queryFaceRecord2" }, "api"},
		{"bad log level", func(c *Config) { c.LogLevel = "loud" }, "logLevel"},
		{"bad version", func(c *Config) { c.Version = `1.0"` }, "version"},
	}
	for _, c := range cases {
		cfg := CreateConfig()
		cfg.AppID = testAppID
		cfg.Secret = testSecret
		c.mutate(cfg)
		_, err := New(context.Background(), http.NotFoundHandler(), cfg, "t")
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: unexpected error %v", c.name, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: err = %v, want one naming %s", c.name, err, c.wantErr)
		case err != nil && strings.Contains(err.Error(), testSecret):
			t.Errorf("%s: error leaks the secret", c.name)
		}
	}
}

func TestSecretFileIsTrimmedAndUsed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "secret")
	_ = os.WriteFile(file, []byte(testSecret+"\n"), 0o600)
	g := newGateway(t, func(c *Config) { c.Secret = ""; c.SecretFile = file })
	if a := g.do(t, http.MethodPost, `{"orderNo":"`+testOrder+`"}`, nil); a.body["code"] != "0" {
		t.Fatalf("answer %s", a.raw)
	}
}

func TestSecretChangeDropsTicket(t *testing.T) {
	g := newGateway(t, nil)
	if a := g.do(t, http.MethodPost, `{"orderNo":"`+testOrder+`"}`, nil); a.body["code"] != "0" {
		t.Fatalf("answer %s", a.raw)
	}
	// The operator rotates the secret in the console and in Traefik.
	g.emu.AddApp(testAppID, "rotated-secret")
	cfg := CreateConfig()
	cfg.AppID = testAppID
	cfg.Secret = "rotated-secret"
	cfg.Endpoint = g.emu.URL
	target, _ := url.Parse(g.emu.URL)
	h, err := New(context.Background(), httputil.NewSingleHostReverseProxy(target), cfg, "reloaded")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"orderNo":"`+testOrder+`"}`)))
	if !strings.Contains(rec.Body.String(), `"code":"0"`) || g.emu.TokenCalls() != 2 {
		t.Fatalf("after secret change: %s (token calls %d)", rec.Body.String(), g.emu.TokenCalls())
	}
}

func TestRedisSettingsNeedAnAddress(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"password without address": func(c *Config) { c.RedisPassword = "p" },
		"tls without address":      func(c *Config) { c.RedisTLS = true },
		"username without password": func(c *Config) {
			c.RedisAddress = "127.0.0.1:6379"
			c.RedisUsername = "u"
		},
		"prefix with space": func(c *Config) { c.RedisAddress = "127.0.0.1:6379"; c.RedisKeyPrefix = "a b" },
	} {
		cfg := CreateConfig()
		cfg.AppID = testAppID
		cfg.Secret = testSecret
		mutate(cfg)
		if _, err := New(context.Background(), http.NotFoundHandler(), cfg, "t"); err == nil || !strings.Contains(err.Error(), "redis") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
