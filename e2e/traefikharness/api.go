package traefikharness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RouterInfo is a router as Traefik's API reports it
// (GET /api/http/routers/<name>@file).
type RouterInfo struct {
	Name        string   `json:"name"`
	Provider    string   `json:"provider"`
	Rule        string   `json:"rule"`
	Service     string   `json:"service"`
	Middlewares []string `json:"middlewares"`
	EntryPoints []string `json:"entryPoints"`
	// Status is "enabled", "warning" or "disabled"; Error says why when not enabled.
	Status string   `json:"status"`
	Error  []string `json:"error"`
}

// APIGet decodes the JSON answer of Traefik's API at path (e.g.
// "/api/http/middlewares") into out. A 404 is reported as ErrNotFound.
func (tr *Traefik) APIGet(path string, out any) error {
	resp, err := tr.client.Get(tr.APIURL + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("GET %s: %w", path, ErrNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d: %s", path, resp.StatusCode, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: decoding the answer: %w", path, err)
	}
	return nil
}

// ErrNotFound is returned by APIGet and Router when Traefik's API answers 404.
var ErrNotFound = errors.New("not found in Traefik's API")

// Router returns the current state of the file-provider router name
// (without @file).
func (tr *Traefik) Router(name string) (RouterInfo, error) {
	var r RouterInfo
	err := tr.APIGet("/api/http/routers/"+url.PathEscape(name+"@file"), &r)
	return r, err
}

func (tr *Traefik) routerEnabled(name string) error {
	r, err := tr.Router(name)
	if err != nil {
		return fmt.Errorf("router %s: %w", name, err)
	}
	if r.Status != "enabled" {
		return fmt.Errorf("router %s is %s: %s", name, r.Status, strings.Join(r.Error, "; "))
	}
	return nil
}

// WaitRouter waits until the file-provider router name (without @file) is
// enabled and returns it; it fails the test with the router's last state and
// errors after 30 s or if Traefik exits. A router whose plugin's New
// returned an error stays "disabled" with that error: check it with Router.
func (tr *Traefik) WaitRouter(t testing.TB, name string) RouterInfo {
	t.Helper()
	var r RouterInfo
	tr.WaitUntil(t, "router "+name+" enabled", func() error {
		if err := tr.routerEnabled(name); err != nil {
			return err
		}
		var err error
		r, err = tr.Router(name)
		return err
	})
	return r
}

// WaitUntil calls cond every 50 ms until it returns nil; it fails the test
// with what and cond's last error after 30 s, or at once if Traefik exits
// or a recovered panic stops it from applying configurations.
// Use it to wait for a rewritten dynamic configuration to be live, e.g. for
// a router's new rule.
func (tr *Traefik) WaitUntil(t testing.TB, what string, cond func() error) {
	t.Helper()
	if err := tr.poll(time.Now().Add(waitTimeout), cond); err != nil {
		t.Fatalf("traefikharness: waiting for %s: %v", what, err)
	}
}

// Goroutines returns the number of goroutines in Traefik, from
// /debug/pprof/goroutine?debug=1 (api.debug is on).
func (tr *Traefik) Goroutines() (int, error) {
	resp, err := tr.client.Get(tr.APIURL + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("goroutine profile: status %d", resp.StatusCode)
	}
	// The first line is "goroutine profile: total N".
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("goroutine profile: %w", err)
	}
	const prefix = "goroutine profile: total "
	if !strings.HasPrefix(line, prefix) {
		return 0, fmt.Errorf("goroutine profile: unexpected first line %q", line)
	}
	return strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, prefix)))
}

// RSS returns Traefik's resident set size in bytes, from /proc/<pid>/status
// (Linux only).
func (tr *Traefik) RSS() (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tr.PID))
	if err != nil {
		return 0, fmt.Errorf("reading Traefik's memory usage: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "VmRSS:") {
			continue
		}
		fields := strings.Fields(strings.TrimPrefix(line, "VmRSS:"))
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected VmRSS line %q: %w", line, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status (has Traefik exited?)", tr.PID)
}

// GoroutineStacks returns Traefik's goroutines grouped by stack, from
// /debug/pprof/goroutine?debug=1: each key is the stack's function names,
// innermost first, one per line; each value is how many goroutines run it.
// Compare two snapshots to see which goroutines a change added.
func (tr *Traefik) GoroutineStacks() (map[string]int, error) {
	resp, err := tr.client.Get(tr.APIURL + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("goroutine profile: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("goroutine profile: status %d", resp.StatusCode)
	}
	stacks := map[string]int{}
	// Records are separated by blank lines: "N @ 0x... 0x..." then one
	// "#\t0x...\tpkg.func+0x..\tfile:line" line per frame.
	for _, record := range strings.Split(string(data), "\n\n") {
		lines := strings.Split(strings.TrimSpace(record), "\n")
		if len(lines) > 0 && strings.HasPrefix(lines[0], "goroutine profile:") {
			lines = lines[1:]
		}
		if len(lines) == 0 {
			continue
		}
		count, err := strconv.Atoi(strings.Fields(lines[0] + " x")[0])
		if err != nil {
			continue // not a record (e.g. trailing text)
		}
		var frames []string
		for _, l := range lines[1:] {
			f := strings.Split(strings.TrimSpace(l), "\t")
			if len(f) < 3 || f[0] != "#" {
				continue
			}
			name := f[2]
			if i := strings.LastIndex(name, "+0x"); i > 0 {
				name = name[:i]
			}
			frames = append(frames, name)
		}
		stacks[strings.Join(frames, "\n")] += count
	}
	return stacks, nil
}

// CollectGarbage makes Traefik run a garbage collection (via
// /debug/pprof/heap?gc=1). Finalizers run afterwards: some of Traefik's own
// goroutines (go-cache janitors of replaced configurations) stop only then,
// so call it before counting goroutines.
func (tr *Traefik) CollectGarbage() error {
	resp, err := tr.client.Get(tr.APIURL + "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("heap profile: status %d", resp.StatusCode)
	}
	return nil
}
