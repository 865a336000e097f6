// Package traefike2e runs the faceidsigner plugin inside a real Traefik
// binary (v3.6.12, built by scripts/build-traefik.sh into .bin/) in front of
// the faceidtest FaceID emulator, and checks what an internal app and the
// vendor see: signing, one ticket for every router and reload, credential
// changes, body limits, streaming of large answers, the plugin's own error
// answers, and that no secret, token or ticket ever leaves Traefik.
//
// One Traefik runs per scenario group (a top-level test); its subtests run
// in order and share it. Run with:
//
//	cd e2e && go test -count=1 -v ./traefike2e
package traefike2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/kycgate/faceidsigner/e2e/traefikharness"
	"github.com/kycgate/faceidsigner/faceidtest"
)

const (
	// pluginDir is the plugin's repository root, relative to this package.
	pluginDir = "../.."

	// The two literals every example keeps, replaced by the emulator's URL
	// and a temporary secret file.
	vendorLiteral = "https://miniprogram-kyc.tencentcloudapi.com"
	secretLiteral = "/etc/traefik/faceid-secret"

	exampleAppID = "IDAXXXXX"
	otherAppID   = "IDAYYYYY"
	downAppID    = "IDADOWN1"

	// goroutineSlack is how many more goroutines Traefik may run after 20
	// reloads than before them, both measured after the same request burst.
	goroutineSlack = 5
	// rssGrowthLimit bounds the growth of Traefik's RSS while 20 large
	// answers stream at once (20 × 6 MiB would be 120 MiB if held).
	rssGrowthLimit = 100 << 20
	// mediaBytes is the size of the photo and of the video of the large
	// answer; base64 makes the answer about 6 MiB.
	mediaBytes = 9 << 18 // 2.25 MiB
)

// answer is one response as the app received it.
type answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// vendorAnswer is the part of a vendor (or plugin error) answer the tests read.
type vendorAnswer struct {
	Code   string `json:"code"`
	Msg    string `json:"msg"`
	Result *struct {
		OrderNo string `json:"orderNo"`
		AppID   string `json:"appId"`
		Photo   string `json:"photo"`
		Video   string `json:"video"`
	} `json:"result"`
}

func (a answer) decode(t *testing.T) vendorAnswer {
	t.Helper()
	var v vendorAnswer
	if err := json.Unmarshal(a.Body, &v); err != nil {
		t.Fatalf("answer (status %d) is not JSON: %v: %.300q", a.Status, err, a.Body)
	}
	return v
}

// wantOK fails unless the answer is HTTP 200 with vendor code "0".
func (a answer) wantOK(t *testing.T) vendorAnswer {
	t.Helper()
	v := a.decode(t)
	if a.Status != http.StatusOK || v.Code != faceidtest.CodeOK {
		t.Fatalf("want 200 with code 0, got %d code %q msg %q", a.Status, v.Code, v.Msg)
	}
	return v
}

// wantPluginError fails unless the answer is the plugin's own JSON error
// with one of the statuses and codes given (status i goes with code i).
func (a answer) wantPluginError(t *testing.T, statuses []int, codes []string) vendorAnswer {
	t.Helper()
	v := a.decode(t)
	for i := range statuses {
		if a.Status == statuses[i] && v.Code == codes[i] {
			if ct := a.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("plugin error %s has Content-Type %q, want application/json", v.Code, ct)
			}
			return v
		}
	}
	t.Fatalf("want one of %v %v, got %d code %q msg %q", statuses, codes, a.Status, v.Code, v.Msg)
	return v
}

// exposure keeps everything that left Traefik towards apps, for the final
// search for secrets.
type exposure struct {
	mu    sync.Mutex
	parts []string
}

func (x *exposure) add(what string, header http.Header, body []byte) {
	var b strings.Builder
	fmt.Fprintf(&b, "== %s\n", what)
	_ = header.Write(&b)
	b.Write(body)
	x.mu.Lock()
	x.parts = append(x.parts, b.String())
	x.mu.Unlock()
}

func (x *exposure) String() string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return strings.Join(x.parts, "\n")
}

// env is one Traefik with the plugin, one emulator, and an app's client.
type env struct {
	tr     *traefikharness.Traefik
	emu    *faceidtest.Server
	client *http.Client
	seen   *exposure
}

func newClient() *http.Client {
	return &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
	}
}

// do sends one request to Traefik's web entry point and fails the test if
// no answer comes. With chunked, the body is sent without Content-Length.
func (e *env) do(t *testing.T, method, path string, body []byte, chunked bool) answer {
	t.Helper()
	a, err := e.send(method, path, body, chunked)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// send is do for goroutines other than the test's.
func (e *env) send(method, path string, body []byte, chunked bool) (answer, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.tr.URL+path, rd)
	if err != nil {
		return answer{}, err
	}
	if chunked {
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	e.seen.add(method+" "+path, resp.Header, data)
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

func (e *env) post(t *testing.T, path, body string) answer {
	t.Helper()
	return e.do(t, http.MethodPost, path, []byte(body), false)
}

// records returns the emulator's records of signed requests for orderNo.
func records(emu *faceidtest.Server, orderNo string) []faceidtest.Request {
	var out []faceidtest.Request
	for _, r := range emu.Requests() {
		var f struct {
			OrderNo string `json:"orderNo"`
		}
		if json.Unmarshal(r.Body, &f) == nil && f.OrderNo == orderNo {
			out = append(out, r)
		}
	}
	return out
}

// onlyRecord returns the one record for orderNo and checks the emulator
// accepted it (valid appId, nonce, ?orderNo= and sign).
func onlyRecord(t *testing.T, emu *faceidtest.Server, orderNo string) faceidtest.Request {
	t.Helper()
	recs := records(emu, orderNo)
	if len(recs) != 1 {
		t.Fatalf("emulator saw %d requests for %s, want 1", len(recs), orderNo)
	}
	r := recs[0]
	if r.Code != faceidtest.CodeOK {
		t.Fatalf("emulator rejected the signed request for %s: code %q: %s", orderNo, r.Code, r.Msg)
	}
	return r
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// assertNoLeaks searches texts for the emulator's secrets, tokens and
// tickets, and for extra (secrets the emulator no longer knows).
func assertNoLeaks(t *testing.T, emu *faceidtest.Server, extra []string, texts map[string]string) {
	t.Helper()
	secrets := append(emu.Secrets(), extra...)
	if len(secrets) < 3 {
		t.Fatalf("emulator knows only %d secrets, tokens and tickets: the search would prove little", len(secrets))
	}
	searched := 0
	for name, text := range texts {
		searched += len(text)
		for _, s := range secrets {
			if len(s) < 8 {
				t.Fatalf("secret/token/ticket %q is too short to search for", s)
			}
			if i := strings.Index(text, s); i >= 0 {
				t.Errorf("%s contains a secret, token or ticket (%.4s...) at byte %d", name, s, i)
			}
		}
	}
	t.Logf("searched %d bytes (%d texts) for %d secrets, tokens and tickets", searched, len(texts), len(secrets))
}

// ---------------------------------------------------------------------------
// The examples, as shipped.

func TestTraefikExamplesSignRequest(t *testing.T) {
	for _, format := range []string{"yaml", "toml"} {
		t.Run(format, func(t *testing.T) {
			file := map[string]string{"yaml": "dynamic.yml", "toml": "dynamic.toml"}[format]
			raw, err := os.ReadFile(filepath.Join(pluginDir, "examples", "file-provider", file))
			if err != nil {
				t.Fatalf("reading the example: %v", err)
			}
			text := string(raw)
			for _, lit := range []string{vendorLiteral, secretLiteral, exampleAppID} {
				if !strings.Contains(text, lit) {
					t.Fatalf("examples/file-provider/%s no longer contains %q, which this test replaces", file, lit)
				}
			}

			emu := faceidtest.NewServer()
			t.Cleanup(emu.Close) // after Traefik stops (cleanups run last-in first-out)
			secret := "exampleSecret" + base64.RawURLEncoding.EncodeToString(randomBytes(t, 12))
			emu.AddApp(exampleAppID, secret)
			photo := randomBytes(t, 3000)
			video := randomBytes(t, 5000)
			emu.AddResult(exampleAppID, "orderNo596551", faceidtest.Result{Photo: photo, Video: video})
			secretFile := writeFile(t, t.TempDir(), "faceid-secret", secret+"\n")
			text = strings.ReplaceAll(text, vendorLiteral, emu.URL)
			text = strings.ReplaceAll(text, secretLiteral, secretFile)

			tr := traefikharness.Start(t, traefikharness.Options{
				PluginDir:     pluginDir,
				DynamicConfig: text,
				DynamicFormat: format,
				EntryPoint:    "faceid",
				AccessLog:     true,
				WaitRouters:   []string{"faceid-queryfacerecord"},
			})
			t.Logf("Traefik with the plugin ready in %s", tr.StartupTime.Round(time.Millisecond))
			e := &env{tr: tr, emu: emu, client: newClient(), seen: &exposure{}}

			v := e.post(t, "/faceid/queryfacerecord", `{"orderNo":"orderNo596551","getFile":"1"}`).wantOK(t)
			if v.Result == nil || v.Result.OrderNo != "orderNo596551" {
				t.Fatalf("answer has no result for orderNo596551: %+v", v)
			}
			if got, _ := base64.StdEncoding.DecodeString(v.Result.Photo); !bytes.Equal(got, photo) {
				t.Errorf("photo differs from the registered one (%d bytes, want %d)", len(got), len(photo))
			}
			if got, _ := base64.StdEncoding.DecodeString(v.Result.Video); !bytes.Equal(got, video) {
				t.Errorf("video differs from the registered one (%d bytes, want %d)", len(got), len(video))
			}
			rec := onlyRecord(t, emu, "orderNo596551")
			if rec.Path != "/api/v2/base/queryfacerecord" || rec.RawQuery != "orderNo=orderNo596551" {
				t.Errorf("vendor saw %s?%s, want /api/v2/base/queryfacerecord?orderNo=orderNo596551", rec.Path, rec.RawQuery)
			}
			var signed map[string]string
			_ = json.Unmarshal(rec.Body, &signed)
			if signed["appId"] != exampleAppID || signed["version"] != "1.0.0" || len(signed["nonce"]) != 32 || len(signed["sign"]) != 40 {
				t.Errorf("vendor saw appId %q version %q nonce %q sign %q", signed["appId"], signed["version"], signed["nonce"], signed["sign"])
			}
			if emu.TokenCalls() != 1 || emu.TicketCalls() != 1 {
				t.Errorf("token calls %d, ticket calls %d, want 1 and 1", emu.TokenCalls(), emu.TicketCalls())
			}
			assertNoLeaks(t, emu, nil, map[string]string{
				"responses":            e.seen.String(),
				"Traefik's log":        tr.Log(),
				"Traefik's access log": tr.AccessLog(),
			})
		})
	}
}

// ---------------------------------------------------------------------------
// The main scenario group: three routers, reloads, credentials, bodies,
// large answers, errors.

// mainConfig is the dynamic configuration of the main group.
type mainConfig struct {
	Gen        int // changes on every reload; the marker router reports it
	AppID      string
	SecretFile string
	Endpoint   string
	// Down adds the routers of the vendor-down cases.
	Down           bool
	DownSecretFile string
	RefusedURL     string
}

var mainTemplate = template.Must(template.New("dynamic").Parse(`http:
  routers:
{{- range $i, $p := .Prefixes}}
    r{{$i}}:
      entryPoints: [web]
      rule: "PathPrefix(` + "`{{$p}}`" + `)"
      middlewares: [sign]
      service: vendor
{{- end}}
    marker:
      entryPoints: [web]
      rule: "Path(` + "`/marker`" + `)"
      middlewares: [stamp]
      service: vendor
{{- if .Down}}
    down:
      entryPoints: [web]
      rule: "PathPrefix(` + "`/down`" + `)"
      middlewares: [sign-down]
      service: vendor
    refused:
      entryPoints: [web]
      rule: "PathPrefix(` + "`/refused`" + `)"
      middlewares: [sign-refused]
      service: refused
{{- end}}
  middlewares:
    stamp:
      headers:
        customResponseHeaders:
          X-Config-Gen: "{{.Gen}}"
    sign:
      plugin:
        faceidsigner:
          appId: {{.AppID}}
          secretFile: {{.SecretFile}}
          endpoint: {{.Endpoint}}
          logLevel: debug
          maxBodyBytes: 65536
          mediaRetryDelay: "{{.MediaRetryDelay}}"
{{- if .Down}}
    sign-down:
      plugin:
        faceidsigner:
          appId: ` + downAppID + `
          secretFile: {{.DownSecretFile}}
          endpoint: {{.Endpoint}}
          logLevel: debug
    sign-refused:
      plugin:
        faceidsigner:
          appId: {{.AppID}}
          secretFile: {{.SecretFile}}
          endpoint: {{.RefusedURL}}
          timeout: 2s
          logLevel: debug
{{- end}}
  services:
    vendor:
      loadBalancer:
        passHostHeader: false
        servers:
          - url: {{.Endpoint}}
{{- if .Down}}
    refused:
      loadBalancer:
        passHostHeader: false
        servers:
          - url: {{.RefusedURL}}
{{- end}}
`))

// routerPrefixes are the path prefixes of the three routers that share the
// sign middleware.
var routerPrefixes = []string{"/one", "/two", "/three"}

func (c mainConfig) render(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	data := struct {
		mainConfig
		Prefixes        []string
		MediaRetryDelay string
	}{c, routerPrefixes, strconv.Itoa(100+c.Gen) + "ms"}
	if err := mainTemplate.Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// apply writes cfg as the dynamic configuration and waits until Traefik
// serves it: the marker router then stamps its answers with cfg.Gen.
func (e *env) apply(t *testing.T, cfg mainConfig) time.Duration {
	t.Helper()
	began := time.Now()
	e.tr.WriteDynamic(t, cfg.render(t))
	want := strconv.Itoa(cfg.Gen)
	e.tr.WaitUntil(t, "configuration generation "+want, func() error {
		resp, err := e.client.Get(e.tr.URL + "/marker")
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("X-Config-Gen"); got != want {
			return fmt.Errorf("marker router serves generation %q", got)
		}
		return nil
	})
	return time.Since(began)
}

// body returns a JSON object of exactly size bytes (size >= 40): orderNo
// and a pad string field.
func body(t *testing.T, orderNo string, size int) (string, string) {
	t.Helper()
	prefix := `{"orderNo":"` + orderNo + `","pad":"`
	suffix := `"}`
	n := size - len(prefix) - len(suffix)
	if n < 0 {
		t.Fatalf("cannot make a %d-byte body", size)
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~"
	pad := make([]byte, n)
	for i := range pad {
		pad[i] = alphabet[(i*7+i/len(alphabet))%len(alphabet)]
	}
	return prefix + string(pad) + suffix, string(pad)
}

func TestTraefikPlugin(t *testing.T) {
	emu := faceidtest.NewServer()
	t.Cleanup(emu.Close) // after Traefik stops (cleanups run last-in first-out)
	dir := t.TempDir()
	secretA := "secretA" + base64.RawURLEncoding.EncodeToString(randomBytes(t, 12))
	secretB := "secretB" + base64.RawURLEncoding.EncodeToString(randomBytes(t, 12))
	secretC := "secretC" + base64.RawURLEncoding.EncodeToString(randomBytes(t, 12))
	secretDown := "secretD" + base64.RawURLEncoding.EncodeToString(randomBytes(t, 12))
	emu.AddApp(exampleAppID, secretA)
	emu.AddApp(otherAppID, secretB)
	emu.AddApp(downAppID, secretDown)

	cfg := mainConfig{Gen: 1, AppID: exampleAppID, SecretFile: writeFile(t, dir, "secret-a", secretA), Endpoint: emu.URL}
	tr := traefikharness.Start(t, traefikharness.Options{
		PluginDir:         pluginDir,
		DynamicConfig:     cfg.render(t),
		AccessLog:         true,
		ProvidersThrottle: 100 * time.Millisecond,
		WaitRouters:       []string{"r0", "r1", "r2", "marker"},
	})
	t.Logf("Traefik with the plugin (3 routers) ready in %s", tr.StartupTime.Round(time.Millisecond))
	e := &env{tr: tr, emu: emu, client: newClient(), seen: &exposure{}}
	rssStart, _ := tr.RSS()
	t.Logf("Traefik RSS after start: %.1f MiB", float64(rssStart)/(1<<20))

	emu.AddResult(exampleAppID, "ORDER3R", faceidtest.Result{})

	// 1. Concurrent first requests through the three routers: one token
	// call, one ticket call.
	t.Run("ThreeRoutersOneTicket", func(t *testing.T) {
		const perRouter = 5
		var wg sync.WaitGroup
		start := make(chan struct{})
		answers := make(chan answer, perRouter*len(routerPrefixes))
		for _, p := range routerPrefixes {
			for i := 0; i < perRouter; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					a, err := e.send(http.MethodPost, p+"/queryfacerecord", []byte(`{"orderNo":"ORDER3R"}`), false)
					if err != nil {
						a = answer{Body: []byte(err.Error())}
					}
					answers <- a
				}()
			}
		}
		close(start)
		wg.Wait()
		close(answers)
		for a := range answers {
			a.wantOK(t)
		}
		if got := len(records(emu, "ORDER3R")); got != perRouter*len(routerPrefixes) {
			t.Errorf("emulator saw %d signed requests, want %d", got, perRouter*len(routerPrefixes))
		}
		if emu.TokenCalls() != 1 || emu.TicketCalls() != 1 {
			t.Fatalf("3 routers × %d concurrent first requests made %d token and %d ticket calls, want 1 and 1",
				perRouter, emu.TokenCalls(), emu.TicketCalls())
		}
	})

	// 2. Traefik's proxy builds the upstream URL from RequestURI: the
	// vendor must see the recipe's path and only ?orderNo=.
	t.Run("OrderNoQueryReachesVendor", func(t *testing.T) {
		emu.AddResult(exampleAppID, "ORDQUERY", faceidtest.Result{})
		e.post(t, "/two/some/deeper/path?orderNo=WRONG1&x=1", `{"orderNo":"ORDQUERY"}`).wantOK(t)
		rec := onlyRecord(t, emu, "ORDQUERY")
		if rec.Path != "/api/v2/base/queryfacerecord" {
			t.Errorf("vendor saw path %q, want /api/v2/base/queryfacerecord", rec.Path)
		}
		if rec.RawQuery != "orderNo=ORDQUERY" {
			t.Errorf("vendor saw query %q, want orderNo=ORDQUERY", rec.RawQuery)
		}
		if rec.Method != http.MethodPost {
			t.Errorf("vendor saw method %s", rec.Method)
		}
	})

	// 3. Request bodies around buffer sizes and the limit, with and
	// without Content-Length.
	t.Run("Bodies", func(t *testing.T) {
		cases := []struct {
			size    int
			chunked bool
			status  int
			code    string
		}{
			{0, false, 400, "FACEIDSIGNER_BAD_JSON"},
			{1, false, 400, "FACEIDSIGNER_BAD_JSON"},
			{4095, false, 200, "0"},
			{4096, false, 200, "0"},
			{4097, false, 200, "0"},
			{65536, false, 200, "0"},
			{65537, false, 413, "FACEIDSIGNER_BODY_TOO_LARGE"},
			{0, true, 400, "FACEIDSIGNER_BAD_JSON"},
			{4097, true, 200, "0"},
			{65536, true, 200, "0"},
			{65537, true, 413, "FACEIDSIGNER_BODY_TOO_LARGE"},
			{1 << 20, true, 413, "FACEIDSIGNER_BODY_TOO_LARGE"},
		}
		for _, c := range cases {
			name := fmt.Sprintf("%d", c.size)
			if c.chunked {
				name += "-chunked"
			}
			t.Run(name, func(t *testing.T) {
				order := fmt.Sprintf("BODY%d", c.size)
				if c.chunked {
					order += "C"
				}
				var payload, pad string
				switch {
				case c.size == 0:
				case c.size == 1:
					payload = "{"
				default:
					payload, pad = body(t, order, c.size)
					emu.AddResult(exampleAppID, order, faceidtest.Result{})
				}
				if len(payload) != c.size {
					t.Fatalf("made a %d-byte body, want %d", len(payload), c.size)
				}
				before := emu.QueryCalls()
				a := e.do(t, http.MethodPost, "/one/queryfacerecord", []byte(payload), c.chunked)
				if c.status != 200 {
					a.wantPluginError(t, []int{c.status}, []string{c.code})
					if got := emu.QueryCalls() - before; got != 0 {
						t.Errorf("a rejected request reached the vendor (%d calls)", got)
					}
					return
				}
				a.wantOK(t)
				rec := onlyRecord(t, emu, order)
				var fields map[string]string
				if err := json.Unmarshal(rec.Body, &fields); err != nil {
					t.Fatalf("vendor saw a body that is not a JSON object of strings: %v", err)
				}
				if fields["pad"] != pad {
					t.Errorf("pad field reached the vendor changed (%d bytes, want %d)", len(fields["pad"]), len(pad))
				}
				if fields["orderNo"] != order || fields["appId"] != exampleAppID || len(fields["sign"]) != 40 {
					t.Errorf("vendor saw orderNo %q appId %q sign %q", fields["orderNo"], fields["appId"], fields["sign"])
				}
				if cl := rec.Header.Get("Content-Length"); cl != strconv.Itoa(len(rec.Body)) {
					t.Errorf("vendor saw Content-Length %q for a %d-byte body", cl, len(rec.Body))
				}
			})
		}
	})

	// 4. Methods other than POST: 405 with Allow, never forwarded.
	t.Run("MethodsNotAllowed", func(t *testing.T) {
		before := emu.QueryCalls()
		for _, m := range []string{http.MethodHead, http.MethodOptions, http.MethodGet, http.MethodPut} {
			a := e.do(t, m, "/three/queryfacerecord", nil, false)
			if a.Status != http.StatusMethodNotAllowed {
				t.Errorf("%s: status %d, want 405", m, a.Status)
				continue
			}
			if got := a.Header.Get("Allow"); got != http.MethodPost {
				t.Errorf("%s: Allow %q, want POST", m, got)
			}
			if ct := a.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("%s: Content-Type %q, want JSON", m, ct)
			}
			if m != http.MethodHead {
				a.wantPluginError(t, []int{405}, []string{"FACEIDSIGNER_METHOD_NOT_ALLOWED"})
			}
		}
		if got := emu.QueryCalls() - before; got != 0 {
			t.Errorf("%d requests with other methods reached the vendor", got)
		}
	})

	// 5. Reloads: 20 real changes of the dynamic configuration (every one
	// changes the plugin's configuration, so every router's middleware is
	// rebuilt) keep the one ticket and leak no goroutines.
	t.Run("ReloadsKeepTicketAndGoroutines", func(t *testing.T) {
		emu.AddResult(exampleAppID, "ORDBURST", faceidtest.Result{})
		before := e.burstThenSnapshot(t)
		var slowest, total time.Duration
		for i := 0; i < 20; i++ {
			cfg.Gen++
			d := e.apply(t, cfg)
			total += d
			if d > slowest {
				slowest = d
			}
			// Each generation signs (and leaves an idle upstream connection
			// behind if a reload made a new transport).
			e.post(t, routerPrefixes[i%3]+"/queryfacerecord", `{"orderNo":"ORDBURST"}`).wantOK(t)
		}
		after := e.burstThenSnapshot(t)
		t.Logf("20 reloads applied in %s (slowest %s); goroutines after a burst: %d before (%d on connections), %d after (%d on connections); allowed growth %d",
			total.Round(time.Millisecond), slowest.Round(time.Millisecond),
			before.total, before.conns, after.total, after.conns, goroutineSlack)
		if after.total > before.total {
			t.Logf("stacks that grew:\n%s", grownStacks(before.stacks, after.stacks))
		}
		if after.total-before.total > goroutineSlack {
			t.Errorf("Traefik runs %d more goroutines after 20 reloads (%d -> %d), allowed %d; stacks that grew:\n%s",
				after.total-before.total, before.total, after.total, goroutineSlack, grownStacks(before.stacks, after.stacks))
		}
		if emu.TokenCalls() != 1 || emu.TicketCalls() != 1 {
			t.Errorf("after 20 reloads: %d token and %d ticket calls, want 1 and 1", emu.TokenCalls(), emu.TicketCalls())
		}
	})

	// 6. A 6 MiB photo+video answer streams through intact, and 20 at once
	// do not make Traefik hold them.
	t.Run("LargeAnswersStream", func(t *testing.T) {
		photo := randomBytes(t, mediaBytes)
		video := randomBytes(t, mediaBytes)
		emu.AddResult(exampleAppID, "ORDBIG", faceidtest.Result{Photo: photo, Video: video})
		const req = `{"orderNo":"ORDBIG","getFile":"1"}`

		a := e.doLarge(t, req)
		v := a.wantOK(t)
		if got, _ := base64.StdEncoding.DecodeString(v.Result.Photo); !bytes.Equal(got, photo) {
			t.Fatalf("photo arrived changed: %d bytes, want %d", len(got), len(photo))
		}
		if got, _ := base64.StdEncoding.DecodeString(v.Result.Video); !bytes.Equal(got, video) {
			t.Fatalf("video arrived changed: %d bytes, want %d", len(got), len(video))
		}
		size := len(a.Body)
		t.Logf("one answer: %.2f MiB", float64(size)/(1<<20))

		photoB64 := []byte(base64.StdEncoding.EncodeToString(photo))
		videoB64 := []byte(base64.StdEncoding.EncodeToString(video))
		rssBefore, err := tr.RSS()
		if err != nil {
			t.Fatal(err)
		}
		peak := rssBefore
		stopSampling := make(chan struct{})
		sampled := make(chan int)
		go func() {
			n := 0
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stopSampling:
					sampled <- n
					return
				case <-tick.C:
					if rss, err := tr.RSS(); err == nil {
						n++
						if rss > peak {
							peak = rss
						}
					}
				}
			}
		}()
		const streams = 20
		began := time.Now()
		errs := make(chan error, streams)
		var wg sync.WaitGroup
		for i := 0; i < streams; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- e.streamAndCheck(req, photoB64, videoB64)
			}()
		}
		wg.Wait()
		close(stopSampling)
		samples := <-sampled
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		growth := peak - rssBefore
		t.Logf("%d concurrent %.1f MiB answers in %s: Traefik RSS %.1f MiB before, peak %.1f MiB (growth %.1f MiB, limit %d MiB, held answers would be %.0f MiB; %d samples)",
			streams, float64(size)/(1<<20), time.Since(began).Round(time.Millisecond),
			float64(rssBefore)/(1<<20), float64(peak)/(1<<20), float64(growth)/(1<<20), rssGrowthLimit>>20,
			float64(streams*size)/(1<<20), samples)
		if growth >= rssGrowthLimit {
			t.Errorf("Traefik's RSS grew %.1f MiB while %d answers streamed; limit %d MiB", float64(growth)/(1<<20), streams, rssGrowthLimit>>20)
		}
	})

	// 7. A reload that changes appId, then one that changes only the
	// secret, makes the next request use the new credentials.
	t.Run("CredentialChangeOnReload", func(t *testing.T) {
		tokens := emu.TokenCalls()
		cfg.Gen++
		cfg.AppID = otherAppID
		cfg.SecretFile = writeFile(t, dir, "secret-b", secretB)
		e.apply(t, cfg)
		emu.AddResult(otherAppID, "ORDNEWAPP", faceidtest.Result{})
		v := e.post(t, "/one/queryfacerecord", `{"orderNo":"ORDNEWAPP"}`).wantOK(t)
		if v.Result == nil || v.Result.AppID != otherAppID {
			t.Errorf("vendor answered for app %+v, want %s", v.Result, otherAppID)
		}
		var fields map[string]string
		_ = json.Unmarshal(onlyRecord(t, emu, "ORDNEWAPP").Body, &fields)
		if fields["appId"] != otherAppID {
			t.Errorf("vendor saw appId %q, want %s", fields["appId"], otherAppID)
		}
		if got := emu.TokenCalls() - tokens; got != 1 {
			t.Errorf("new appId: %d token calls, want 1", got)
		}

		// The vendor console's secret changes (every token and ticket of the
		// app dies) and the operator points secretFile at the new secret.
		tokens = emu.TokenCalls()
		stale := emu.CodeCount(faceidtest.CodeIllegalRequest)
		emu.AddApp(otherAppID, secretC)
		cfg.Gen++
		cfg.SecretFile = writeFile(t, dir, "secret-c", secretC)
		e.apply(t, cfg)
		emu.AddResult(otherAppID, "ORDNEWSECRET", faceidtest.Result{})
		e.post(t, "/two/queryfacerecord", `{"orderNo":"ORDNEWSECRET"}`).wantOK(t)
		onlyRecord(t, emu, "ORDNEWSECRET") // signed once, with a ticket of the new secret: no retry
		if got := emu.CodeCount(faceidtest.CodeIllegalRequest) - stale; got != 0 {
			t.Errorf("after the secret changed, %d requests were signed with a dead ticket", got)
		}
		if got := emu.TokenCalls() - tokens; got != 1 {
			t.Errorf("new secret: %d token calls, want 1", got)
		}
	})

	// 8. The vendor is down: the token endpoint answers 502, or nothing
	// listens. The plugin answers a JSON error with Retry-After and
	// forwards nothing.
	t.Run("VendorDown", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		refused := "http://" + l.Addr().String()
		l.Close()
		cfg.Gen++
		cfg.Down = true
		cfg.DownSecretFile = writeFile(t, dir, "secret-down", secretDown)
		cfg.RefusedURL = refused
		e.apply(t, cfg)
		emu.AddResult(downAppID, "ORDDOWN", faceidtest.Result{})
		emu.SetFault(faceidtest.TokenEndpoint, faceidtest.Fault{Status: http.StatusBadGateway})
		defer emu.ClearFaults()

		queries := emu.QueryCalls()
		statuses := []int{502, 503}
		codes := []string{"FACEIDSIGNER_VENDOR_UNREACHABLE", "FACEIDSIGNER_TICKET_UNAVAILABLE"}
		for _, path := range []string{"/down/queryfacerecord", "/down/queryfacerecord", "/refused/queryfacerecord", "/refused/queryfacerecord"} {
			a := e.post(t, path, `{"orderNo":"ORDDOWN"}`)
			v := a.wantPluginError(t, statuses, codes)
			ra, err := strconv.Atoi(a.Header.Get("Retry-After"))
			if err != nil || ra < 1 {
				t.Errorf("%s: %d %s with Retry-After %q, want a positive number of seconds", path, a.Status, v.Code, a.Header.Get("Retry-After"))
			}
			t.Logf("%s: %d %s Retry-After %s: %s", path, a.Status, v.Code, a.Header.Get("Retry-After"), v.Msg)
		}
		if got := emu.QueryCalls() - queries; got != 0 {
			t.Errorf("%d requests were forwarded while the vendor was down", got)
		}
		// The main routers keep working on their cached ticket.
		e.post(t, "/three/queryfacerecord", `{"orderNo":"ORDNEWSECRET"}`).wantOK(t)
	})

	// 9. Nothing that left Traefik, and nothing it logged, holds a secret,
	// token or ticket.
	t.Run("NoSecretsLeak", func(t *testing.T) {
		var raw strings.Builder
		if resp, err := http.Get(tr.APIURL + "/api/rawdata"); err == nil {
			_, _ = io.Copy(&raw, resp.Body)
			resp.Body.Close()
		}
		if !strings.Contains(raw.String(), "faceidsigner") {
			t.Errorf("Traefik's /api/rawdata does not show the plugin configuration: %.200s", raw.String())
		}
		log := tr.Log()
		if !strings.Contains(log, "ticket fetched") {
			t.Errorf("Traefik's log has no plugin event (\"ticket fetched\"): is the plugin's output captured?")
		}
		assertNoLeaks(t, emu, []string{secretA, secretB, secretC, secretDown}, map[string]string{
			"responses":             e.seen.String(),
			"Traefik's log":         log,
			"Traefik's access log":  tr.AccessLog(),
			"Traefik's API rawdata": raw.String(),
		})
		rss, _ := tr.RSS()
		t.Logf("Traefik's log: %d bytes; RSS at the end %.1f MiB", len(log), float64(rss)/(1<<20))
	})
}

// goroutineSnapshot is Traefik's goroutines at one moment.
type goroutineSnapshot struct {
	total  int
	conns  int // serving an HTTP connection (client or server side)
	stacks map[string]int
}

// burstSize is how many signed requests burstThenSnapshot sends at once.
const burstSize = 24

// burstThenSnapshot sends burstSize concurrent signed requests (through
// the three routers), held 150 ms at the emulator so that all are in flight
// together and Traefik's pool of upstream connections ends at the same size
// every time; then it closes the client's connections and returns the
// snapshot with the fewest goroutines among a few taken once Traefik
// settles.
func (e *env) burstThenSnapshot(t *testing.T) goroutineSnapshot {
	t.Helper()
	e.emu.SetFault(faceidtest.QueryEndpoint, faceidtest.Fault{Delay: 150 * time.Millisecond})
	var wg sync.WaitGroup
	answers := make(chan answer, burstSize)
	for i := 0; i < burstSize; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := e.send(http.MethodPost, routerPrefixes[i%3]+"/queryfacerecord", []byte(`{"orderNo":"ORDBURST"}`), false)
			if err != nil {
				a = answer{Body: []byte(err.Error())}
			}
			answers <- a
		}()
	}
	wg.Wait()
	e.emu.ClearFaults()
	close(answers)
	for a := range answers {
		a.wantOK(t)
	}
	e.client.CloseIdleConnections()
	time.Sleep(300 * time.Millisecond)
	// Replaced configurations leave go-cache janitors (Traefik's own) that
	// stop when their cache is collected.
	for i := 0; i < 2; i++ {
		if err := e.tr.CollectGarbage(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var least goroutineSnapshot
	for i := 0; i < 5; i++ {
		stacks, err := e.tr.GoroutineStacks()
		if err != nil {
			t.Fatal(err)
		}
		s := goroutineSnapshot{stacks: stacks}
		for stack, n := range stacks {
			s.total += n
			if strings.Contains(stack, "net/http.(*persistConn)") || strings.Contains(stack, "net/http.(*conn).serve") {
				s.conns += n
			}
		}
		if i == 0 || s.total < least.total {
			least = s
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n, err := e.tr.Goroutines(); err == nil && (n < least.total-5 || n > least.total+5) {
		t.Logf("note: goroutine total %d now, %d in the parsed snapshot", n, least.total)
	}
	return least
}

// grownStacks lists the stacks that more goroutines run in after than in
// before.
func grownStacks(before, after map[string]int) string {
	var b strings.Builder
	for stack, n := range after {
		if n > before[stack] {
			fmt.Fprintf(&b, "+%d:\n\t%s\n", n-before[stack], strings.ReplaceAll(stack, "\n", "\n\t"))
		}
	}
	return b.String()
}

// doLarge posts body and reads the whole answer (for the single large
// answer); only its non-media parts are kept for the secret search.
func (e *env) doLarge(t *testing.T, payload string) answer {
	t.Helper()
	resp, err := e.client.Post(e.tr.URL+"/one/queryfacerecord", "application/json", strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	e.seen.add("POST large", resp.Header, data)
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// streamAndCheck posts payload and reads the answer slowly (64 KiB every
// 5 ms), checking without holding it that it carries photo and video as
// base64 and as many bytes as Content-Length. The parts around the media
// are kept for the secret search.
func (e *env) streamAndCheck(payload string, photoB64, videoB64 []byte) error {
	resp, err := e.client.Post(e.tr.URL+"/one/queryfacerecord", "application/json", strings.NewReader(payload))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("large answer: status %d", resp.StatusCode)
	}
	r := bufio.NewReaderSize(&slowReader{r: resp.Body}, 64<<10)
	var kept bytes.Buffer
	total := 0
	for _, m := range []struct {
		key  string
		want []byte
	}{{`"photo":"`, photoB64}, {`"video":"`, videoB64}} {
		n, err := readUntil(r, []byte(m.key), &kept)
		total += n
		if err != nil {
			return fmt.Errorf("large answer: looking for %s: %v", m.key, err)
		}
		if err := compareNext(r, m.want); err != nil {
			return fmt.Errorf("large answer: %s: %v", m.key, err)
		}
		total += len(m.want)
	}
	n, err := io.Copy(&kept, r)
	if err != nil {
		return fmt.Errorf("large answer: reading the rest: %v", err)
	}
	total += int(n)
	if resp.ContentLength >= 0 && int64(total) != resp.ContentLength {
		return fmt.Errorf("large answer: %d bytes, Content-Length %d", total, resp.ContentLength)
	}
	e.seen.add("POST large (media left out)", resp.Header, kept.Bytes())
	return nil
}

// slowReader reads at most 64 KiB per call and sleeps 5 ms before each.
type slowReader struct{ r io.Reader }

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(5 * time.Millisecond)
	if len(p) > 64<<10 {
		p = p[:64<<10]
	}
	return s.r.Read(p)
}

// readUntil reads up to and including marker, copying what it read to kept.
func readUntil(r *bufio.Reader, marker []byte, kept *bytes.Buffer) (int, error) {
	n := 0
	for {
		b, err := r.ReadByte()
		if err != nil {
			return n, err
		}
		n++
		kept.WriteByte(b)
		if kept.Len() > 1<<20 {
			return n, fmt.Errorf("not found in the first MiB")
		}
		if bytes.HasSuffix(kept.Bytes(), marker) {
			return n, nil
		}
	}
}

// compareNext reads len(want) bytes and compares them with want.
func compareNext(r *bufio.Reader, want []byte) error {
	buf := make([]byte, 32<<10)
	for off := 0; off < len(want); {
		n := len(want) - off
		if n > len(buf) {
			n = len(buf)
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return fmt.Errorf("after %d of %d bytes: %v", off, len(want), err)
		}
		if !bytes.Equal(buf[:n], want[off:off+n]) {
			return fmt.Errorf("differs from what was registered within bytes %d-%d", off, off+n)
		}
		off += n
	}
	return nil
}
