package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kycgate/faceidsigner/redisclient"
)

// redisServer is a redis-server process on a free loopback port, keeping
// nothing on disk.
type redisServer struct {
	addr   string
	cmd    *exec.Cmd
	dir    string
	client *redisclient.Client
}

func startRedis() (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server is not in PATH; the shared-store figures need it (Debian/Ubuntu: apt-get install redis-server)")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "benchredis-")
	if err != nil {
		return nil, err
	}
	r := &redisServer{addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir}
	r.cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", dir)
	out := &lockedBuffer{}
	r.cmd.Stdout = out
	r.cmd.Stderr = out
	r.cmd.SysProcAttr = sysProcAttr()
	if err := r.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	r.client = redisclient.New(redisclient.Options{Address: r.addr, Timeout: time.Second})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := r.client.Ping(context.Background()); err == nil {
			return r, nil
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer PING within 10s; its output:\n%s", r.addr, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *redisServer) stop() {
	_ = r.client.Close()
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	_ = os.RemoveAll(r.dir)
}

// commands returns how many commands Redis has run so far, by command name
// (INFO commandstats), leaving out INFO itself (the counting).
func (r *redisServer) commands(ctx context.Context) (map[string]int64, error) {
	rep, err := r.client.Do(ctx, "INFO", "commandstats")
	if err != nil {
		return nil, err
	}
	counts := map[string]int64{}
	// Lines look like "cmdstat_get:calls=12,usec=40,usec_per_call=3.33,...".
	for _, line := range strings.Split(rep.Str, "\n") {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") || name == "cmdstat_info" {
			continue
		}
		for _, kv := range strings.Split(stats, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("INFO commandstats: %q: %w", line, err)
				}
				counts[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return counts, nil
}

// commandsSince returns how many commands ran between two snapshots, in
// total and as "name×n" text.
func commandsSince(before, after map[string]int64) (int64, string) {
	var total int64
	var parts []string
	for name, n := range after {
		if d := n - before[name]; d > 0 {
			total += d
			parts = append(parts, fmt.Sprintf("%s×%d", name, d))
		}
	}
	sort.Strings(parts)
	return total, strings.Join(parts, " ")
}
