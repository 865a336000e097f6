// Package pluginyaegi runs the faceidsigner plugin through yaegi v0.16.1
// exactly as Traefik v3.6 loads it (e2e/yaegihost) against the FaceID
// emulator. These tests drive interpreted code: run them without -race.
package pluginyaegi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kycgate/faceidsigner/e2e/yaegihost"
	"github.com/kycgate/faceidsigner/faceidtest"
)

const (
	appID  = "IDAXXXXX"
	secret = "yaegi-test-secret-0a1b2c3d4e5f"
	order  = "orderNo596551"
)

// repoRoot is the plugin's directory (the repository root).
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// loadPlugin loads the plugin in a fresh interpreter: one interpreter is
// one Traefik process worth of package state.
func loadPlugin(t testing.TB) *yaegihost.Plugin {
	t.Helper()
	p, err := yaegihost.Load(repoRoot(t), yaegihost.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// newEmulator starts the emulator with the test app and one result.
func newEmulator(t testing.TB) *faceidtest.Server {
	t.Helper()
	emu := faceidtest.NewServer()
	t.Cleanup(emu.Close)
	emu.AddApp(appID, secret)
	emu.AddResult(appID, order, faceidtest.Result{Photo: []byte("PHOTO"), Video: []byte("VIDEO")})
	return emu
}

// config is the dynamic configuration as the file provider delivers it:
// every scalar a string.
func config(emu *faceidtest.Server, extra map[string]any) map[string]any {
	c := map[string]any{"appId": appID, "secret": secret, "endpoint": emu.URL, "logLevel": "debug"}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// proxyTo is the next handler: a reverse proxy to the emulator, counting
// what it forwards.
func proxyTo(emu *faceidtest.Server, forwarded *atomic.Int64) http.Handler {
	target, _ := url.Parse(emu.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if forwarded != nil {
			forwarded.Add(1)
		}
		proxy.ServeHTTP(rw, req)
	})
}

// newHandler builds one router's instance of the interpreted middleware.
func newHandler(t testing.TB, p *yaegihost.Plugin, next http.Handler, cfg map[string]any, name string) http.Handler {
	t.Helper()
	h, err := p.New(context.Background(), next, cfg, name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

type answer struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

// serve sends one request through h on a loopback server.
func serve(t testing.TB, h http.Handler, method, body string) answer {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	return send(t, srv.URL, method, body)
}

func send(t testing.TB, url, method, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url+"/faceid/queryfacerecord", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
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

// assertNoLeak fails if text holds the secret or any token or ticket the
// emulator issued.
func assertNoLeak(t testing.TB, emu *faceidtest.Server, where, text string) {
	t.Helper()
	for _, s := range append([]string{secret}, emu.Secrets()...) {
		if s != "" && strings.Contains(text, s) {
			t.Fatalf("%s leaks a credential", where)
		}
	}
}
