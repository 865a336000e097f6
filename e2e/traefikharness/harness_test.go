package traefikharness

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// passthroughDir is the baseline fixture plugin (module
// github.com/kycgate/passthrough).
const passthroughDir = "../testdata/passthrough"

// newUpstream answers every request with "upstream saw <method> <path>".
func newUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream saw %s %s", r.Method, r.URL.Path)
	}))
	t.Cleanup(up.Close)
	return up
}

// yamlConfig routes PathPrefix(prefix) through the passthrough plugin to upstream.
func yamlConfig(prefix, upstream string) string {
	return fmt.Sprintf(`http:
  routers:
    main:
      rule: "PathPrefix(%[1]s)"
      entryPoints: [web]
      middlewares: [pt]
      service: upstream
  middlewares:
    pt:
      plugin:
        passthrough: {}
  services:
    upstream:
      loadBalancer:
        servers:
          - url: %[2]q
`, "`"+prefix+"`", upstream)
}

// tomlConfig is yamlConfig in TOML, with an optional second router "second"
// for PathPrefix(`/second`).
func tomlConfig(prefix, upstream string, second bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[http.routers.main]
  rule = "PathPrefix(%[1]s)"
  entryPoints = ["web"]
  middlewares = ["pt"]
  service = "upstream"
`, "`"+prefix+"`")
	if second {
		b.WriteString(`[http.routers.second]
  rule = "PathPrefix(` + "`/second`" + `)"
  entryPoints = ["web"]
  middlewares = ["pt"]
  service = "upstream"
`)
	}
	fmt.Fprintf(&b, `[http.middlewares.pt.plugin.passthrough]
[[http.services.upstream.loadBalancer.servers]]
  url = %q
`, upstream)
	return b.String()
}

// get returns the status and body of GET url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func TestStartServesThroughPlugin(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	tr := Start(t, Options{
		PluginDir:     passthroughDir,
		DynamicConfig: yamlConfig("/a", up.URL),
		WaitRouters:   []string{"main"},
		AccessLog:     true,
	})
	t.Logf("Traefik ready %s after exec", tr.StartupTime)

	if status, body := get(t, tr.URL+"/a/x"); status != http.StatusOK || body != "upstream saw GET /a/x" {
		t.Errorf("GET /a/x through the plugin = %d %q, want 200 from the upstream", status, body)
	}
	if status, body := get(t, tr.URL+"/elsewhere"); status != http.StatusNotFound || strings.Contains(body, "upstream") {
		t.Errorf("GET /elsewhere = %d %q, want Traefik's own 404", status, body)
	}

	r, err := tr.Router("main")
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != "enabled" || len(r.Middlewares) != 1 || r.Middlewares[0] != "pt@file" {
		t.Errorf("router main = %+v, want enabled with middleware pt@file", r)
	}
	if !strings.Contains(tr.Log(), "Plugins loaded.") {
		t.Errorf("Traefik's log does not say the plugin loaded")
	}
	tr.WaitUntil(t, "the access log entry of GET /a/x", func() error {
		if !strings.Contains(tr.AccessLog(), `"RequestPath":"/a/x"`) {
			return fmt.Errorf("access log so far: %q", tr.AccessLog())
		}
		return nil
	})

	n, err := tr.Goroutines()
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 || n > 5000 {
		t.Errorf("Goroutines() = %d, want a plausible count for an idle Traefik", n)
	}
	rss, err := tr.RSS()
	if err != nil {
		t.Fatal(err)
	}
	if rss < 10<<20 || rss > 2<<30 {
		t.Errorf("RSS() = %d bytes, want between 10 MiB and 2 GiB", rss)
	}
	t.Logf("idle Traefik with the passthrough plugin: %d goroutines, RSS %d MiB", n, rss>>20)

	tr.Stop()
	tr.Stop() // a second Stop is harmless
	if err := syscall.Kill(tr.PID, 0); err == nil {
		t.Errorf("process %d still exists after Stop", tr.PID)
	}
	if _, err := os.Stat(tr.Dir); !os.IsNotExist(err) {
		t.Errorf("working dir %s still exists after Stop (err %v)", tr.Dir, err)
	}
	if _, err := http.Get(tr.URL + "/a/x"); err == nil {
		t.Errorf("web entry point still answers after Stop")
	}
}

func TestWriteDynamicIsPickedUp(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	tr := Start(t, Options{
		PluginDir:     passthroughDir,
		PluginAlias:   "passthrough",
		DynamicConfig: tomlConfig("/a", up.URL, false),
		DynamicFormat: "toml",
		WaitRouters:   []string{"main"},
	})
	if status, _ := get(t, tr.URL+"/a"); status != http.StatusOK {
		t.Fatalf("GET /a before the rewrite = %d, want 200", status)
	}

	began := time.Now()
	tr.WriteDynamic(t, tomlConfig("/b", up.URL, true))
	tr.WaitUntil(t, "router main to move to /b", func() error {
		r, err := tr.Router("main")
		if err != nil {
			return err
		}
		if r.Rule != "PathPrefix(`/b`)" {
			return fmt.Errorf("router main still has rule %s", r.Rule)
		}
		return nil
	})
	tr.WaitRouter(t, "second")
	t.Logf("rewritten config live after %s", time.Since(began))

	if status, body := get(t, tr.URL+"/b/1"); status != http.StatusOK || body != "upstream saw GET /b/1" {
		t.Errorf("GET /b/1 after the rewrite = %d %q, want 200 from the upstream", status, body)
	}
	if status, _ := get(t, tr.URL+"/a"); status != http.StatusNotFound {
		t.Errorf("GET /a after the rewrite = %d, want 404", status)
	}
	if status, body := get(t, tr.URL+"/second"); status != http.StatusOK || body != "upstream saw GET /second" {
		t.Errorf("GET /second (new router) = %d %q, want 200 from the upstream", status, body)
	}
}

// brokenPlugin copies the passthrough fixture into a temp dir with its Go
// source rewritten by edit.
func brokenPlugin(t *testing.T, edit func(src string) string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{".traefik.yml", "go.mod", "passthrough.go"} {
		data, err := os.ReadFile(filepath.Join(passthroughDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "passthrough.go" {
			edited := edit(string(data))
			if edited == string(data) {
				t.Fatal("the edit did not change the fixture; update the test to the fixture's source")
			}
			data = []byte(edited)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const fixtureNew = "func New(_ context.Context, next http.Handler, _ *Config, _ string) (http.Handler, error) {"

func TestStartFailsOnBrokenPlugin(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		edit func(string) string
		want []string // substrings of the error
	}{
		{
			name: "syntax error",
			edit: func(src string) string { return src + "\nfunc {\n" },
			want: []string{"exited early", "failed to import plugin code", "passthrough.go"},
		},
		{
			name: "no New",
			edit: func(src string) string { return strings.Replace(src, "func New(", "func NewHandler(", 1) },
			want: []string{"exited early", "failed to eval New"},
		},
		{
			name: "New with a wrong signature",
			edit: func(src string) string {
				return strings.Replace(src, fixtureNew, "func New(next http.Handler) (http.Handler, error) {", 1)
			},
			want: []string{"panicked", "reflect: Call with too many input arguments"},
		},
	}
	up := newUpstream(t)
	for _, tc := range cases {
		tc := tc
		t.Run(tc.name, func(t *testing.T) {
			dir := brokenPlugin(t, tc.edit)
			began := time.Now()
			tr, err := StartE(Options{PluginDir: dir, DynamicConfig: yamlConfig("/a", up.URL)})
			if err == nil {
				tr.Stop()
				t.Fatalf("StartE succeeded with a broken plugin; Traefik's log:\n%s", tail(tr.Log(), 30))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("StartE error does not mention %q:\n%v", w, err)
				}
			}
			if d := time.Since(began); d > 20*time.Second {
				t.Errorf("StartE took %s to notice the broken plugin", d)
			}
		})
	}
}

func TestRouterReportsErrorFromNew(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	dir := brokenPlugin(t, func(src string) string {
		src = strings.Replace(src, `"context"`, "\"context\"\n\t\"errors\"", 1)
		return strings.Replace(src, "return &passthrough{next: next}, nil", `return nil, errors.New("refusing this config")`, 1)
	})
	tr := Start(t, Options{PluginDir: dir, DynamicConfig: yamlConfig("/a", up.URL)})

	var r RouterInfo
	tr.WaitUntil(t, "router main to be built", func() error {
		var err error
		r, err = tr.Router("main")
		return err
	})
	if r.Status != "disabled" || len(r.Error) != 1 || r.Error[0] != "refusing this config" {
		t.Errorf("router main = %+v, want disabled with New's error", r)
	}
	if status, body := get(t, tr.URL+"/a"); status != http.StatusNotFound || strings.Contains(body, "upstream") {
		t.Errorf("GET /a through a router whose plugin refused = %d %q, want 404", status, body)
	}
}

func TestStartEValidatesOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{}, "PluginDir is empty"},
		{Options{PluginDir: t.TempDir()}, "no .traefik.yml"},
		{Options{PluginDir: passthroughDir, DynamicFormat: "json"}, `DynamicFormat "json"`},
	} {
		_, err := StartE(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("StartE(%+v) error = %v, want one mentioning %q", tc.opts, err, tc.want)
		}
	}
}

func TestPluginModuleName(t *testing.T) {
	t.Parallel()
	got, err := pluginModuleName(passthroughDir)
	if err != nil || got != "github.com/kycgate/passthrough" {
		t.Errorf("pluginModuleName(passthrough) = %q, %v", got, err)
	}
	dir := t.TempDir()
	manifest := "displayName: x\ntype: middleware\nimport: \"example.com/only/manifest\"\nsummary: s\ntestData: {}\n"
	if err := os.WriteFile(filepath.Join(dir, ".traefik.yml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err = pluginModuleName(dir)
	if err != nil || got != "example.com/only/manifest" {
		t.Errorf("pluginModuleName without go.mod = %q, %v, want the manifest's import", got, err)
	}
}

func TestEntryPointThrottleAndGoroutineStacks(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	tr := Start(t, Options{
		PluginDir:         passthroughDir,
		DynamicConfig:     strings.ReplaceAll(yamlConfig("/a", up.URL), "entryPoints: [web]", "entryPoints: [faceid]"),
		EntryPoint:        "faceid",
		ProvidersThrottle: 100 * time.Millisecond,
		WaitRouters:       []string{"main"},
	})
	if status, body := get(t, tr.URL+"/a/x"); status != http.StatusOK || body != "upstream saw GET /a/x" {
		t.Errorf("GET /a/x on entry point faceid = %d %q, want 200 from the upstream", status, body)
	}
	data, err := os.ReadFile(filepath.Join(tr.Dir, "traefik.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "providersThrottleDuration: \"100ms\"") {
		t.Errorf("static configuration lacks the throttle:\n%s", data)
	}

	// A rewrite is applied well before Traefik's default 2 s throttle.
	began := time.Now()
	tr.WriteDynamic(t, strings.ReplaceAll(yamlConfig("/b", up.URL), "entryPoints: [web]", "entryPoints: [faceid]"))
	tr.WaitUntil(t, "the /b rule", func() error {
		if status, _ := get(t, tr.URL+"/b/x"); status != http.StatusOK {
			return fmt.Errorf("GET /b/x = %d", status)
		}
		return nil
	})
	if d := time.Since(began); d > 1500*time.Millisecond {
		t.Errorf("rewrite applied after %s, want well under the default 2s throttle", d)
	}

	if err := tr.CollectGarbage(); err != nil {
		t.Fatal(err)
	}
	stacks, err := tr.GoroutineStacks()
	if err != nil {
		t.Fatal(err)
	}
	n, err := tr.Goroutines()
	if err != nil {
		t.Fatal(err)
	}
	total, sawServe := 0, false
	for stack, c := range stacks {
		total += c
		if strings.Contains(stack, "net/http.(*Server).Serve") || strings.Contains(stack, "net.(*TCPListener).Accept") {
			sawServe = true
		}
	}
	if total < n-10 || total > n+10 {
		t.Errorf("GoroutineStacks adds up to %d goroutines, Goroutines says %d", total, n)
	}
	if !sawServe {
		t.Errorf("no goroutine accepting connections among %d stacks", len(stacks))
	}

	if _, err := StartE(Options{PluginDir: passthroughDir, EntryPoint: "traefik"}); err == nil || !strings.Contains(err.Error(), "EntryPoint") {
		t.Errorf("StartE with EntryPoint traefik: %v, want an error naming EntryPoint", err)
	}
}
