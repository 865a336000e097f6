// Package traefikharness runs a real Traefik binary with a local Yaegi plugin
// for end-to-end tests, the way httptest runs a server: Start lays out a
// working directory (plugins-local/src/<module> linked to the plugin,
// a static config, a watched dynamic config file), starts Traefik on free
// loopback ports, waits until it answers /ping with the file configuration
// applied, and stops it when the test ends.
//
// The binary is built by scripts/build-traefik.sh into <repo>/.bin/traefik
// from the Traefik version pinned in e2e/go.mod. A cold build takes 10-15
// minutes, longer than go test's default timeout: CI should run the script
// as its own step before the tests.
package traefikharness

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts used by the harness. Yaegi interprets the plugin source at
// startup, which takes a few seconds for a real plugin.
const (
	startTimeout = 60 * time.Second
	waitTimeout  = 30 * time.Second
	stopTimeout  = 5 * time.Second
	pollInterval = 50 * time.Millisecond
)

// Options configures one Traefik process.
type Options struct {
	// PluginDir is the plugin's source tree, holding .traefik.yml (the
	// repository root for the real plugin, e2e/testdata/passthrough for the
	// baseline). Required.
	PluginDir string
	// ModuleName is the plugin's module path. Empty: read from PluginDir's
	// go.mod, else from the import line of .traefik.yml.
	ModuleName string
	// PluginAlias is the key under experimental.localPlugins, the name the
	// dynamic configuration uses (plugin.<alias>). Empty: the last element
	// of ModuleName.
	PluginAlias string
	// DynamicConfig is the content of the file provider's file, watched by
	// Traefik. It may be empty and written later with WriteDynamic.
	DynamicConfig string
	// DynamicFormat is "yaml" (default) or "toml".
	DynamicFormat string
	// ExtraStatic is appended verbatim to the static YAML configuration. It
	// must not repeat a top-level key the harness writes: global,
	// entryPoints, ping, api, log, accessLog, providers, experimental.
	ExtraStatic string
	// AccessLog enables Traefik's access log (JSON) in the working
	// directory; read it with AccessLog().
	AccessLog bool
	// Env is added to the environment of the Traefik process (and so to the
	// plugin's os.Getenv, read once when the interpreter is created).
	Env []string
	// ProvidersThrottle is providers.providersThrottleDuration: how long
	// Traefik waits after a configuration change before applying it (and
	// drops changes superseded meanwhile). Zero: Traefik's default, 2s.
	// Tests that reload often set it to about 100ms.
	ProvidersThrottle time.Duration
	// EntryPoint is the name of the entry point at URL, the one routers
	// list in entryPoints. Empty: "web". The examples use "faceid".
	EntryPoint string
	// WaitRouters are router names (without @file) that Start waits for
	// until each is enabled, in addition to /ping answering.
	WaitRouters []string
}

// Traefik is a running Traefik process.
type Traefik struct {
	// URL is the web entry point, http://127.0.0.1:<port>.
	URL string
	// APIURL is the traefik entry point serving /ping, /api and /debug/pprof.
	APIURL string
	// PID is the process id of Traefik.
	PID int
	// Dir is the working directory laid out by Start.
	Dir string
	// StartupTime is how long Traefik took from exec to ready (Start's
	// conditions met), Yaegi's loading of the plugin included.
	StartupTime time.Duration

	opts        Options
	dynamicPath string
	accessPath  string
	cmd         *exec.Cmd
	out         *syncBuffer
	client      *http.Client

	exited  chan struct{} // closed when the process has exited
	waitErr error         // set before exited is closed

	stopOnce sync.Once
}

// Start starts Traefik with opts, fails the test (with the tail of Traefik's
// log) if it does not come up, and stops it when the test ends. When the
// test fails, the tail of Traefik's log is written to the test log.
func Start(t testing.TB, opts Options) *Traefik {
	t.Helper()
	tr, err := StartE(opts)
	if err != nil {
		t.Fatalf("traefikharness: %v", err)
	}
	t.Cleanup(func() {
		tr.Stop()
		if t.Failed() {
			t.Logf("traefikharness: last lines of Traefik's log:\n%s", tail(tr.Log(), 60))
		}
	})
	return tr
}

// StartE is Start without a test: it returns an error instead of failing,
// and the caller must call Stop. The error carries the tail of Traefik's log
// when Traefik started but did not come up.
func StartE(opts Options) (*Traefik, error) {
	if err := completeOptions(&opts); err != nil {
		return nil, err
	}
	bin, err := BuildBinary()
	if err != nil {
		return nil, err
	}
	// Free ports are picked by listening on :0 and closing; another process
	// can take one in between, so retry a few times on a bind conflict.
	for attempt := 1; ; attempt++ {
		tr, err := start(bin, opts)
		if err == nil {
			return tr, nil
		}
		if attempt < 3 && tr != nil && strings.Contains(tr.Log(), "address already in use") {
			continue
		}
		return nil, err
	}
}

func completeOptions(opts *Options) error {
	if opts.PluginDir == "" {
		return errors.New("Options.PluginDir is empty: set it to the directory holding the plugin's .traefik.yml")
	}
	dir, err := filepath.Abs(opts.PluginDir)
	if err != nil {
		return err
	}
	opts.PluginDir = dir
	if _, err := os.Stat(filepath.Join(dir, ".traefik.yml")); err != nil {
		return fmt.Errorf("plugin dir %s has no .traefik.yml manifest: %w", dir, err)
	}
	if opts.ModuleName == "" {
		name, err := pluginModuleName(dir)
		if err != nil {
			return err
		}
		opts.ModuleName = name
	}
	if opts.PluginAlias == "" {
		opts.PluginAlias = filepath.Base(opts.ModuleName)
	}
	if opts.EntryPoint == "" {
		opts.EntryPoint = "web"
	}
	if opts.EntryPoint == "traefik" {
		return errors.New("Options.EntryPoint must not be \"traefik\": the harness uses that one for /ping and the API")
	}
	switch opts.DynamicFormat {
	case "":
		opts.DynamicFormat = "yaml"
	case "yaml", "toml":
	default:
		return fmt.Errorf("Options.DynamicFormat %q: use \"yaml\" or \"toml\"", opts.DynamicFormat)
	}
	return nil
}

// pluginModuleName reads the module path from dir/go.mod, else the import
// line of dir/.traefik.yml.
func pluginModuleName(dir string) (string, error) {
	if name := firstValue(filepath.Join(dir, "go.mod"), "module "); name != "" {
		return name, nil
	}
	if name := firstValue(filepath.Join(dir, ".traefik.yml"), "import:"); name != "" {
		return strings.Trim(name, `"'`), nil
	}
	return "", fmt.Errorf("cannot tell the module name of the plugin in %s (no go.mod module line, no import in .traefik.yml): set Options.ModuleName", dir)
}

func firstValue(path, prefix string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, prefix) {
			return strings.TrimSpace(strings.TrimPrefix(line, prefix))
		}
	}
	return ""
}

func start(bin string, opts Options) (*Traefik, error) {
	dir, err := os.MkdirTemp("", "traefikharness-")
	if err != nil {
		return nil, err
	}
	tr := &Traefik{
		Dir:         dir,
		opts:        opts,
		dynamicPath: filepath.Join(dir, "dynamic."+map[string]string{"yaml": "yml", "toml": "toml"}[opts.DynamicFormat]),
		accessPath:  filepath.Join(dir, "access.log"),
		out:         &syncBuffer{},
		client:      &http.Client{Timeout: 5 * time.Second},
		exited:      make(chan struct{}),
	}
	if err := tr.layout(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	webPort, err := freePort()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	apiPort, err := freePort()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	tr.URL = fmt.Sprintf("http://127.0.0.1:%d", webPort)
	tr.APIURL = fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	staticPath := filepath.Join(dir, "traefik.yml")
	if err := os.WriteFile(staticPath, []byte(tr.staticConfig(webPort, apiPort)), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}

	cmd := exec.Command(bin, "--configFile="+staticPath)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), opts.Env...)
	cmd.Stdout = tr.out
	cmd.Stderr = tr.out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	tr.cmd = cmd
	tr.PID = cmd.Process.Pid
	go func() {
		tr.waitErr = cmd.Wait()
		close(tr.exited)
	}()

	if err := tr.waitReady(); err != nil {
		tr.Stop()
		return tr, fmt.Errorf("%v\n--- last lines of Traefik's log (%s) ---\n%s", err, dir, tail(tr.Log(), 40))
	}
	return tr, nil
}

// layout creates plugins-local/src/<module> as a symlink to the plugin dir
// (Traefik's manifest reader and Yaegi's importer both follow it) and writes
// the initial dynamic configuration.
func (tr *Traefik) layout() error {
	link := filepath.Join(tr.Dir, "plugins-local", "src", filepath.FromSlash(tr.opts.ModuleName))
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	if err := os.Symlink(tr.opts.PluginDir, link); err != nil {
		return fmt.Errorf("linking the plugin into Traefik's local plugin dir: %w", err)
	}
	return os.WriteFile(tr.dynamicPath, []byte(tr.opts.DynamicConfig), 0o644)
}

func (tr *Traefik) staticConfig(webPort, apiPort int) string {
	throttle := ""
	if tr.opts.ProvidersThrottle > 0 {
		throttle = fmt.Sprintf("  providersThrottleDuration: %q\n", tr.opts.ProvidersThrottle.String())
	}
	var b strings.Builder
	fmt.Fprintf(&b, `global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  %q:
    address: "127.0.0.1:%d"
    transport:
      lifeCycle:
        graceTimeOut: 1s
  traefik:
    address: "127.0.0.1:%d"
    transport:
      lifeCycle:
        graceTimeOut: 1s
ping: {}
api:
  insecure: true
  debug: true
  dashboard: false
log:
  level: DEBUG
  noColor: true
providers:
  file:
    filename: %q
    watch: true
%sexperimental:
  abortOnPluginFailure: true
  localPlugins:
    %q:
      moduleName: %q
`, tr.opts.EntryPoint, webPort, apiPort, tr.dynamicPath, throttle, tr.opts.PluginAlias, tr.opts.ModuleName)
	if tr.opts.AccessLog {
		fmt.Fprintf(&b, "accessLog:\n  filePath: %q\n  format: json\n", tr.accessPath)
	}
	if tr.opts.ExtraStatic != "" {
		b.WriteString(tr.opts.ExtraStatic)
		b.WriteString("\n")
	}
	return b.String()
}

// waitReady waits for /ping, for the file configuration (if any) and for
// Options.WaitRouters, failing early if Traefik exits.
func (tr *Traefik) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	began := time.Now()
	for {
		if err := tr.failure(); err != nil {
			return err
		}
		if tr.pingOK() {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Traefik did not answer %s/ping within %s", tr.APIURL, startTimeout)
		}
		time.Sleep(pollInterval)
	}
	if strings.Contains(tr.Log(), "Plugins are disabled") {
		return errors.New("Traefik disabled its plugins (a plugin failed to load)")
	}
	if strings.TrimSpace(tr.opts.DynamicConfig) != "" {
		err := tr.poll(deadline, func() error {
			var raw map[string]map[string]any
			if err := tr.APIGet("/api/rawdata", &raw); err != nil {
				return err
			}
			for _, section := range raw {
				for name := range section {
					if strings.HasSuffix(name, "@file") {
						return nil
					}
				}
			}
			return errors.New("no configuration from the file provider yet (is the dynamic config valid?)")
		})
		if err != nil {
			return err
		}
	}
	for _, name := range tr.opts.WaitRouters {
		if err := tr.poll(deadline, func() error { return tr.routerEnabled(name) }); err != nil {
			return err
		}
	}
	tr.StartupTime = time.Since(began)
	return nil
}

func (tr *Traefik) pingOK() bool {
	resp, err := tr.client.Get(tr.APIURL + "/ping")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// poll calls cond until it returns nil, Traefik exits, or deadline passes;
// the error then names the last reason cond gave.
func (tr *Traefik) poll(deadline time.Time, cond func() error) error {
	for {
		if err := tr.failure(); err != nil {
			return err
		}
		last := cond()
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out: %w", last)
		}
		time.Sleep(pollInterval)
	}
}

// failure reports that Traefik exited, or that one of its recovered
// goroutines panicked, nil while it runs normally.
//
// The second matters for plugins: a New whose signature Traefik does not
// expect makes reflect.Call panic inside the goroutine that applies
// configurations. Traefik recovers it, logs "Error in Go routine" and keeps
// running without ever applying a configuration again (not even the one
// that serves /ping).
func (tr *Traefik) failure() error {
	select {
	case <-tr.exited:
		if tr.waitErr != nil {
			return fmt.Errorf("Traefik exited early: %w", tr.waitErr)
		}
		return errors.New("Traefik exited early with status 0")
	default:
	}
	if line := tr.out.panicLine(); line != "" {
		return fmt.Errorf("a Traefik goroutine panicked and was recovered, Traefik no longer applies configurations: %s", line)
	}
	return nil
}

// WriteDynamic replaces the dynamic configuration file atomically (write to
// a temporary file in the same directory, then rename), which Traefik's
// directory watcher sees as one change. Traefik applies it after its
// providers throttle (2 s by default); use WaitRouter or WaitUntil to know
// when it is live. Writing identical content is ignored by Traefik.
func (tr *Traefik) WriteDynamic(t testing.TB, content string) {
	t.Helper()
	tmp := tr.dynamicPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatalf("traefikharness: writing the dynamic config: %v", err)
	}
	if err := os.Rename(tmp, tr.dynamicPath); err != nil {
		t.Fatalf("traefikharness: replacing the dynamic config: %v", err)
	}
}

// Log returns everything Traefik wrote so far (stdout and stderr, DEBUG level).
func (tr *Traefik) Log() string { return tr.out.String() }

// AccessLog returns the JSON access log so far (Options.AccessLog).
func (tr *Traefik) AccessLog() string {
	data, _ := os.ReadFile(tr.accessPath)
	return string(data)
}

// Stop sends SIGTERM, waits for Traefik to exit, sends SIGKILL after a few
// seconds, and removes the working directory. It is safe to call twice.
func (tr *Traefik) Stop() {
	tr.stopOnce.Do(func() {
		if tr.cmd != nil && tr.cmd.Process != nil {
			_ = tr.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-tr.exited:
			case <-time.After(stopTimeout):
				_ = tr.cmd.Process.Kill()
				<-tr.exited
			}
		}
		_ = os.RemoveAll(tr.Dir)
	})
}

// Exited reports whether the Traefik process has exited.
func (tr *Traefik) Exited() bool {
	select {
	case <-tr.exited:
		return true
	default:
		return false
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// goroutinePanicMark is what Traefik logs when it recovers a panic in one of
// its goroutines (pkg/safe).
const goroutinePanicMark = "Error in Go routine"

// syncBuffer is a bytes.Buffer safe for the process's output goroutines and
// concurrent readers. It remembers the first line logging a recovered
// goroutine panic (Traefik writes its log line by line).
type syncBuffer struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	panicked string
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.panicked == "" {
		if i := bytes.Index(p, []byte(goroutinePanicMark)); i >= 0 {
			line := p[i:]
			if j := bytes.IndexByte(line, '\n'); j >= 0 {
				line = line[:j]
			}
			b.panicked = string(line)
		}
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) panicLine() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.panicked
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
