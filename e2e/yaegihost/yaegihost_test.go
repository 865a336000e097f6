package yaegihost

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Fixture directories, absolute because some tests change directory.
var (
	passthroughDir  = fixture("passthrough")
	configechoDir   = fixture("configecho")
	badsignatureDir = fixture("badsignature")
	badimportDir    = fixture("badimport")
)

func fixture(name string) string {
	dir, err := filepath.Abs(filepath.Join("..", "testdata", name))
	if err != nil {
		panic(err)
	}
	return dir
}

// interpreted marks a test that drives interpreted code: the race detector
// reports races inside yaegi itself, so such tests are skipped under -race.
func interpreted(tb testing.TB) {
	tb.Helper()
	if raceEnabled {
		tb.Skip("drives yaegi-interpreted code: run without -race")
	}
}

func load(tb testing.TB, dir string, opts Options) *Plugin {
	tb.Helper()
	p, err := Load(dir, opts)
	if err != nil {
		tb.Fatalf("Load(%s): %v", dir, err)
	}
	tb.Cleanup(p.Close)
	return p
}

// echoView is what the configecho fixture answers.
type echoView struct {
	Name     string         `json:"name"`
	Instance int            `json:"instance"`
	Env      string         `json:"env"`
	Config   map[string]any `json:"config"`
}

func serveEcho(tb testing.TB, h http.Handler) echoView {
	tb.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	var v echoView
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		tb.Fatalf("configecho answered %q: %v", rec.Body.String(), err)
	}
	return v
}

// copyFixture copies a fixture directory into a temporary directory, so a
// test can alter its manifest or go.mod.
func copyFixture(tb testing.TB, dir string) string {
	tb.Helper()
	dst := tb.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dst
}

func writeFile(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}

func TestPassthroughForwardsRequestToUpstream(t *testing.T) {
	interpreted(t)
	type seen struct {
		method, uri, header, body string
	}
	got := make(chan seen, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		got <- seen{method: req.Method, uri: req.RequestURI, header: req.Header.Get("X-Probe"), body: string(body)}
		rw.Header().Set("X-Upstream", "yes")
		rw.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(rw, "upstream says hi")
	}))
	defer upstream.Close()
	target, err := url.Parse(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}

	p := load(t, passthroughDir, Options{})
	h, err := p.New(context.Background(), httputil.NewSingleHostReverseProxy(target), p.TestData(), "passthrough@file")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	front := httptest.NewServer(h)
	defer front.Close()

	req, err := http.NewRequest(http.MethodPost, front.URL+"/v1/check?orderNo=42", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Probe", "through-yaegi")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)

	if resp.StatusCode != http.StatusAccepted || string(body) != "upstream says hi" || resp.Header.Get("X-Upstream") != "yes" {
		t.Errorf("response = %d %q (X-Upstream %q), want 202 from upstream", resp.StatusCode, body, resp.Header.Get("X-Upstream"))
	}
	want := seen{method: http.MethodPost, uri: "/v1/check?orderNo=42", header: "through-yaegi", body: `{"a":1}`}
	if s := <-got; s != want {
		t.Errorf("upstream saw %+v, want %+v", s, want)
	}
}

func TestManifestDefaults(t *testing.T) {
	interpreted(t)
	p := load(t, passthroughDir, Options{})
	if p.ModuleName() != "github.com/kycgate/passthrough" {
		t.Errorf("ModuleName = %q", p.ModuleName())
	}
	if got := p.Manifest().PackageName(); got != "passthrough" {
		t.Errorf("PackageName = %q", got)
	}
	if td := p.TestData(); td == nil || len(td) != 0 {
		t.Errorf("TestData = %#v, want empty non-nil map", td)
	}
	m := &Manifest{Import: "github.com/acme/my-plugin"}
	if got := m.PackageName(); got != "my_plugin" {
		t.Errorf("PackageName of %s = %q, want my_plugin", m.Import, got)
	}
	m.BasePkg = "explicit"
	if got := m.PackageName(); got != "explicit" {
		t.Errorf("PackageName with basePkg = %q", got)
	}
}

func TestConfigDecodedLikeTraefik(t *testing.T) {
	interpreted(t)
	p := load(t, configechoDir, Options{})

	t.Run("testData", func(t *testing.T) {
		want := map[string]any{"name": "from-test-data", "count": 3, "tags": "a,b"}
		if !reflect.DeepEqual(p.TestData(), want) {
			t.Fatalf("TestData = %#v, want %#v", p.TestData(), want)
		}
		h, err := p.New(context.Background(), http.NotFoundHandler(), p.TestData(), "echo@file")
		if err != nil {
			t.Fatal(err)
		}
		c := serveEcho(t, h).Config
		if c["Name"] != "from-test-data" || c["Count"] != 3.0 || !reflect.DeepEqual(c["Tags"], []any{"a", "b"}) {
			t.Errorf("config = %v", c)
		}
	})

	t.Run("empty map keeps CreateConfig defaults", func(t *testing.T) {
		h, err := p.New(context.Background(), http.NotFoundHandler(), map[string]any{}, "echo@file")
		if err != nil {
			t.Fatal(err)
		}
		c := serveEcho(t, h).Config
		if c["Name"] != "default-name" || c["Count"] != 1.0 || c["Timeout"] != "20s" {
			t.Errorf("config = %v, want CreateConfig defaults", c)
		}
	})

	t.Run("weak typing, case-insensitive keys, json tags ignored", func(t *testing.T) {
		h, err := p.New(context.Background(), http.NotFoundHandler(), map[string]any{
			"NAME":        "n",
			"count":       "30",   // file provider: scalars arrive as strings
			"enabled":     "true", // labels: everything is a string
			"ratio":       0.5,    // CRD: JSON numbers are float64
			"tags":        "x,y,z",
			"interval":    "5000000000",
			"headers":     map[string]any{"X-A": "1"},
			"upstream":    map[string]any{"url": "http://u", "retries": "2"},
			"secret_file": "/ignored",
			"typoKey":     "silently dropped",
		}, "echo@file")
		if err != nil {
			t.Fatal(err)
		}
		c := serveEcho(t, h).Config
		want := map[string]any{
			"Name": "n", "Count": 30.0, "Enabled": true, "Ratio": 0.5,
			"Tags": []any{"x", "y", "z"}, "Interval": "5s", "Timeout": "20s",
			"Headers": map[string]any{"X-A": "1"}, "UpstreamURL": "http://u", "Retries": 2.0,
			"SecretFile": "",
		}
		if !reflect.DeepEqual(c, want) {
			t.Errorf("config =\n%v\nwant\n%v", c, want)
		}
	})

	t.Run("duration string fails", func(t *testing.T) {
		_, err := p.New(context.Background(), http.NotFoundHandler(), map[string]any{"interval": "5s"}, "echo@file")
		if err == nil || !strings.Contains(err.Error(), "failed to decode configuration") {
			t.Fatalf("err = %v, want a decode error", err)
		}
	})

	t.Run("New error is returned", func(t *testing.T) {
		_, err := p.New(context.Background(), http.NotFoundHandler(), map[string]any{"failWith": "endpoint is required"}, "echo@file")
		if err == nil || err.Error() != "endpoint is required" {
			t.Fatalf("err = %v, want the plugin's own error", err)
		}
	})
}

func TestBuildSharesOneConfigAcrossRouters(t *testing.T) {
	interpreted(t)
	p := load(t, configechoDir, Options{})
	build, err := p.Build(map[string]any{"name": "shared"}, "echo@file")
	if err != nil {
		t.Fatal(err)
	}
	var views []echoView
	for range 2 {
		h, err := build(context.Background(), http.NotFoundHandler())
		if err != nil {
			t.Fatal(err)
		}
		views = append(views, serveEcho(t, h))
	}
	if views[0].Instance != 1 || views[1].Instance != 2 || views[1].Config["Name"] != "shared" || views[1].Name != "echo@file" {
		t.Errorf("views = %+v", views)
	}
}

func TestEachLoadIsASeparateProcess(t *testing.T) {
	interpreted(t)
	procs := []*Plugin{
		load(t, configechoDir, Options{Env: []string{"YAEGIHOST_PROBE=one"}}),
		load(t, configechoDir, Options{Env: []string{"YAEGIHOST_PROBE=two"}}),
		load(t, configechoDir, Options{}),
	}
	newEcho := func(p *Plugin, name string) echoView {
		h, err := p.New(context.Background(), http.NotFoundHandler(), nil, name)
		if err != nil {
			t.Fatal(err)
		}
		return serveEcho(t, h)
	}
	newEcho(procs[0], "first")
	if v := newEcho(procs[0], "second"); v.Instance != 2 || v.Env != "one" {
		t.Errorf("process 1, second New: %+v, want instance 2, env one", v)
	}
	if v := newEcho(procs[1], "first"); v.Instance != 1 || v.Env != "two" {
		t.Errorf("process 2, first New: %+v, want instance 1, env two", v)
	}
	if v := newEcho(procs[2], "first"); v.Instance != 1 || v.Env != "" {
		t.Errorf("process 3, first New: %+v, want instance 1, no env", v)
	}
}

func TestPluginOutputIsCapturedPerInterpreter(t *testing.T) {
	interpreted(t)
	var extraOut, extraErr LogBuffer
	p1 := load(t, configechoDir, Options{Stdout: &extraOut, Stderr: &extraErr})
	p2 := load(t, configechoDir, Options{})
	if _, err := p1.New(context.Background(), http.NotFoundHandler(), nil, "loud@file"); err != nil {
		t.Fatal(err)
	}

	const outLine, errLine = "configecho: stdout: New loud@file 1", "configecho: stderr: New loud@file 1"
	if !p1.Stdout().Contains(outLine) || p1.Stdout().Contains(errLine) {
		t.Errorf("Stdout = %q, want the fmt.Println line only", p1.Stdout())
	}
	if !p1.Stderr().Contains(errLine) || p1.Stderr().Contains(outLine) {
		t.Errorf("Stderr = %q, want the log.Printf line only", p1.Stderr())
	}
	if !p1.Output().Contains(outLine) || !p1.Output().Contains(errLine) {
		t.Errorf("Output = %q, want both lines", p1.Output())
	}
	if !extraOut.Contains(outLine) || !extraErr.Contains(errLine) {
		t.Errorf("Options writers got %q and %q", extraOut.String(), extraErr.String())
	}
	if p2.Output().Len() != 0 {
		t.Errorf("the other interpreter captured %q", p2.Output())
	}
}

func TestOutputCapturesEveryRoute(t *testing.T) {
	interpreted(t)
	dir := copyFixture(t, passthroughDir)
	writeFile(t, filepath.Join(dir, "passthrough.go"), `package passthrough
import ("context"; "fmt"; "log"; "net/http"; "os")
type Config struct{}
func CreateConfig() *Config { return &Config{} }
func New(ctx context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	fmt.Println("route=fmt.Println")
	println("route=println")
	log.Printf("route=log.Printf")
	_, _ = os.Stdout.Write([]byte("route=os.Stdout.Write\n"))
	fmt.Fprintln(os.Stderr, "route=fmt.Fprintln(os.Stderr)")
	log.New(os.Stderr, "", 0).Println("route=log.New(os.Stderr)")
	go func() { fmt.Fprintln(os.Stdout, "route=goroutine") }()
	return next, nil
}
`)
	var extra LogBuffer
	p := load(t, dir, Options{Stdout: &extra, Stderr: &extra})
	if _, err := p.New(context.Background(), http.NotFoundHandler(), nil, "routes@file"); err != nil {
		t.Fatal(err)
	}
	want := map[string]*LogBuffer{
		"route=fmt.Println":             p.Stdout(),
		"route=println":                 p.Stdout(),
		"route=log.Printf":              p.Stderr(),
		"route=os.Stdout.Write":         p.ProcessStdout(),
		"route=fmt.Fprintln(os.Stderr)": p.ProcessStderr(),
		"route=log.New(os.Stderr)":      p.ProcessStderr(),
	}
	for line, buf := range want {
		if !buf.Contains(line) {
			t.Errorf("%q missing from its buffer %q", line, buf)
		}
		if !p.Output().Contains(line) || !extra.WaitFor(line, 5*time.Second) {
			t.Errorf("%q missing from Output or Options writers", line)
		}
	}
	if !p.Output().WaitFor("route=goroutine", 5*time.Second) {
		t.Error("a write from a plugin goroutine was not captured")
	}
	if n := len(p.Output().Lines()); n != len(want)+1 {
		t.Errorf("Output has %d lines, want %d:\n%s", n, len(want)+1, p.Output())
	}
	p.Close()
	if !p.ProcessStdout().Contains("route=os.Stdout.Write") {
		t.Error("Close lost captured output")
	}
}

func TestBadImportFailsLoudly(t *testing.T) {
	interpreted(t)
	_, err := Load(badimportDir, Options{})
	if err == nil || !strings.Contains(err.Error(), `failed to import plugin code "github.com/kycgate/badimport"`) ||
		!strings.Contains(err.Error(), "github.com/kycgate/notvendored/helper") {
		t.Fatalf("Load err = %v, want an import failure naming the missing package", err)
	}
	err = CheckCatalog(badimportDir)
	if err == nil || !strings.Contains(err.Error(), "github.com/kycgate/notvendored/helper") {
		t.Fatalf("CheckCatalog err = %v, want an import failure naming the missing package", err)
	}
}

func TestBadSignatureLoadsButCannotBeInstantiated(t *testing.T) {
	interpreted(t)
	// Like Traefik, Load only evaluates the symbols; the mismatch shows when
	// New is called with the *Config that CreateConfig returned.
	p := load(t, badsignatureDir, Options{})
	_, err := p.New(context.Background(), http.NotFoundHandler(), nil, "bad@file")
	if err == nil || !strings.Contains(err.Error(), "panic while calling the plugin's New") {
		t.Fatalf("New err = %v, want a reported panic", err)
	}
}

func TestLoadAppliesTraefikManifestChecks(t *testing.T) {
	interpreted(t)
	cases := map[string]struct{ manifest, want string }{
		"missing summary":  {"displayName: x\ntype: middleware\nimport: github.com/kycgate/passthrough\ntestData: {}\n", "missing Summary"},
		"missing testData": {"displayName: x\ntype: middleware\nimport: github.com/kycgate/passthrough\nsummary: s\n", "missing TestData"},
		"foreign import":   {"displayName: x\ntype: middleware\nimport: github.com/other/passthrough\nsummary: s\ntestData: {}\n", "must be related to the module name"},
		"provider":         {"displayName: x\ntype: provider\nimport: github.com/kycgate/passthrough\nsummary: s\ntestData: {}\n", "only runs middleware plugins"},
		"wasm":             {"displayName: x\ntype: middleware\nruntime: wasm\nimport: github.com/kycgate/passthrough\nsummary: s\ntestData: {}\n", "only runs yaegi"},
		"bad basePkg":      {"displayName: x\ntype: middleware\nimport: github.com/kycgate/passthrough\nbasePkg: nope\nsummary: s\ntestData: {}\n", "failed to eval New"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := copyFixture(t, passthroughDir)
			writeFile(t, filepath.Join(dir, ManifestFile), c.manifest)
			if _, err := Load(dir, Options{}); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Load err = %v, want it to contain %q", err, c.want)
			}
			if err := CheckCatalog(dir); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("CheckCatalog err = %v, want it to contain %q", err, c.want)
			}
		})
	}
	if _, err := Load(t.TempDir(), Options{}); err == nil || !strings.Contains(err.Error(), ManifestFile) {
		t.Errorf("Load of a directory without manifest: err = %v", err)
	}
}

func TestLogBuffer(t *testing.T) {
	var b LogBuffer
	done := make(chan struct{})
	for i := 0; i < 4; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := 0; j < 100; j++ {
				_, _ = b.Write([]byte("line\n"))
			}
		}()
	}
	for i := 0; i < 4; i++ {
		<-done
	}
	if n := len(b.Lines()); n != 400 {
		t.Errorf("Lines = %d, want 400", n)
	}
	_, _ = b.Write([]byte("partial"))
	if n := len(b.Lines()); n != 400 || !b.Contains("partial") {
		t.Errorf("after a partial line: Lines = %d, Contains(partial) = %v", n, b.Contains("partial"))
	}
	go func() { _, _ = b.Write([]byte("late secret")) }()
	if !b.WaitFor("late secret", 5*time.Second) {
		t.Error("WaitFor missed a concurrent write")
	}
	b.Reset()
	if b.Len() != 0 || b.WaitFor("x", 0) {
		t.Error("Reset left data")
	}
}
