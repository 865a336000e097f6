package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kycgate/faceidsigner/e2e/traefikharness"
)

// localPlugin is one plugin Traefik loads from plugins-local.
type localPlugin struct {
	alias  string // key under experimental.localPlugins
	module string // module path, the directory under plugins-local/src
	dir    string // source tree, linked into plugins-local/src/<module>
}

// traefik is one Traefik process for the benchmark. Unlike
// traefikharness (one plugin, DEBUG log), it loads two local plugins (the
// real one and the pass-through baseline) and logs at ERROR, Traefik's
// default, so that logging costs what it costs in production.
type traefik struct {
	url    string // web entry point
	apiURL string // traefik entry point: /ping and /api
	pid    int
	dir    string
	// startup is how long Traefik took to be ready, interpreting both
	// plugins included.
	startup time.Duration

	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{}
	once   sync.Once
}

// startTraefik starts Traefik with plugins and the dynamic configuration
// dynamic (YAML), and waits until every router in routers is enabled.
func startTraefik(plugins []localPlugin, dynamic string, routers []string) (*traefik, error) {
	bin, err := traefikharness.BuildBinary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "benchtraefik-")
	if err != nil {
		return nil, err
	}
	tr := &traefik{dir: dir, out: &lockedBuffer{}, exited: make(chan struct{})}
	if err := tr.launch(bin, plugins, dynamic); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := tr.waitRouters(routers); err != nil {
		tr.stop()
		return nil, fmt.Errorf("%v\nTraefik's log:\n%s", err, tr.out.String())
	}
	return tr, nil
}

// launch lays out the working directory and starts the process.
func (tr *traefik) launch(bin string, plugins []localPlugin, dynamic string) error {
	dir := tr.dir
	webPort, err := freePort()
	if err != nil {
		return err
	}
	apiPort, err := freePort()
	if err != nil {
		return err
	}
	tr.url = "http://127.0.0.1:" + strconv.Itoa(webPort)
	tr.apiURL = "http://127.0.0.1:" + strconv.Itoa(apiPort)

	var static strings.Builder
	fmt.Fprintf(&static, `global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  web:
    address: "127.0.0.1:%d"
  traefik:
    address: "127.0.0.1:%d"
ping: {}
api:
  insecure: true
  dashboard: false
log:
  level: ERROR
  noColor: true
providers:
  file:
    filename: %q
experimental:
  abortOnPluginFailure: true
  localPlugins:
`, webPort, apiPort, filepath.Join(dir, "dynamic.yml"))
	for _, p := range plugins {
		link := filepath.Join(dir, "plugins-local", "src", filepath.FromSlash(p.module))
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(p.dir, link); err != nil {
			return err
		}
		fmt.Fprintf(&static, "    %s:\n      moduleName: %q\n", p.alias, p.module)
	}
	if err := os.WriteFile(filepath.Join(dir, "traefik.yml"), []byte(static.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "dynamic.yml"), []byte(dynamic), 0o644); err != nil {
		return err
	}

	cmd := exec.Command(bin, "--configFile="+filepath.Join(dir, "traefik.yml"))
	cmd.Dir = dir
	cmd.Stdout = tr.out
	cmd.Stderr = tr.out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	tr.cmd = cmd
	tr.pid = cmd.Process.Pid
	go func() {
		_ = cmd.Wait()
		close(tr.exited)
	}()
	return nil
}

// waitRouters waits up to a minute (yaegi interprets the plugins at start)
// for /ping and then for every router to be enabled.
func (tr *traefik) waitRouters(routers []string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(time.Minute)
	pending := append([]string{""}, routers...) // "" stands for /ping
	last := errors.New("not started")
	for len(pending) > 0 {
		select {
		case <-tr.exited:
			return errors.New("Traefik exited during startup")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Traefik not ready after a minute: %v", last)
		}
		if last = tr.ready(client, pending[0]); last == nil {
			pending = pending[1:]
			continue
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func (tr *traefik) ready(client *http.Client, router string) error {
	path := "/ping"
	if router != "" {
		path = "/api/http/routers/" + router + "@file"
	}
	resp, err := client.Get(tr.apiURL + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	if router == "" {
		return nil
	}
	var info struct {
		Status string   `json:"status"`
		Error  []string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return err
	}
	if info.Status != "enabled" {
		return fmt.Errorf("router %s is %s: %s", router, info.Status, strings.Join(info.Error, "; "))
	}
	return nil
}

// stop ends Traefik (SIGTERM, SIGKILL after 5 s) and removes its directory.
func (tr *traefik) stop() {
	tr.once.Do(func() {
		if tr.cmd != nil {
			_ = tr.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-tr.exited:
			case <-time.After(5 * time.Second):
				_ = tr.cmd.Process.Kill()
				<-tr.exited
			}
		}
		_ = os.RemoveAll(tr.dir)
	})
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
