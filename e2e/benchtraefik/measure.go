package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kycgate/faceidsigner/e2e/loadgen"
	"github.com/kycgate/faceidsigner/faceidtest"
)

func (b *bench) fastVariants() []variant {
	body := []byte(requestBody)
	return []variant{
		{key: "bare", label: "bare Traefik", path: "/bare/faceid/queryfacerecord", body: body},
		{key: "pass", label: "pass-through plugin", path: "/pass/faceid/queryfacerecord", body: body},
		{key: "floor", label: "minimal signing plugin (floor)", path: "/floor/faceid/queryfacerecord", body: body},
		{key: "sign", label: "faceidsigner", path: "/sign/faceid/queryfacerecord", body: body},
		{key: "redis", label: "faceidsigner, Redis store", path: "/redis/faceid/queryfacerecord", body: body, redis: true},
	}
}

func (b *bench) emuVariants() []variant {
	return []variant{
		{key: "emu-bare", label: "bare Traefik, app signs", path: "/emu/bare" + b.signedPath, body: b.signedBody},
		{key: "emu-pass", label: "pass-through plugin, app signs", path: "/emu/pass" + b.signedPath, body: b.signedBody},
		{key: "emu-sign", label: "faceidsigner", path: "/emu/sign/faceid/queryfacerecord", body: []byte(requestBody)},
	}
}

// sample is one load run of one variant.
type sample struct {
	round      int
	rps        float64
	p50, p99   time.Duration
	traefikCPU time.Duration // Traefik's CPU time per request
	benchCPU   time.Duration // this process's (load generator, upstreams) per request
	sent       int           // requests of the whole run, warmup included
	redisOps   int64         // Redis commands during the whole run
	redisWhat  string        // which commands
}

func sampleKey(variantKey string, conc int) string { return fmt.Sprintf("%s/c%d", variantKey, conc) }

// throughput runs every variant at every concurrency, -rounds times,
// rotating the order of the variants each round.
func (b *bench) throughput(ctx context.Context) error {
	o := b.opts
	runs := o.rounds * (len(o.conc)*len(b.fastVariants()) + len(o.emuConc)*len(b.emuVariants()))
	fmt.Printf("\n%d load runs of %s (+%s warmup) each, about %s\n", runs, o.duration, o.warmup,
		(time.Duration(runs) * (o.duration + o.warmup + 200*time.Millisecond)).Round(time.Second))
	for round := 0; round < o.rounds; round++ {
		for _, c := range o.conc {
			if err := b.runGroup(ctx, round, c, b.fastVariants()); err != nil {
				return err
			}
		}
		for _, c := range o.emuConc {
			if err := b.runGroup(ctx, round, c, b.emuVariants()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *bench) runGroup(ctx context.Context, round, conc int, variants []variant) error {
	for i := range variants {
		v := variants[(i+round)%len(variants)]
		if err := b.measure(ctx, round, conc, v); err != nil {
			return err
		}
	}
	return nil
}

// checkOK accepts HTTP 200 with vendor code 0 only: a benchmark must never
// measure an error path.
func checkOK(status int, body []byte) error {
	if status != http.StatusOK || vendorCode(body) != faceidtest.CodeOK {
		return fmt.Errorf("status %d: %.200s", status, body)
	}
	return nil
}

func (b *bench) measure(ctx context.Context, round, conc int, v variant) error {
	var redisBefore map[string]int64
	var err error
	if v.redis {
		if redisBefore, err = b.redis.commands(ctx); err != nil {
			return err
		}
	}
	trCPU0, err1 := cpuTime(b.tr.pid)
	selfCPU0, err2 := cpuTime(0)
	res, err := loadgen.Run(ctx, loadgen.Options{
		URL: b.tr.url + v.path, Body: v.body, Concurrency: conc,
		Warmup: b.opts.warmup, Duration: b.opts.duration, Check: checkOK,
	})
	if err != nil {
		return err
	}
	trCPU1, err3 := cpuTime(b.tr.pid)
	selfCPU1, err4 := cpuTime(0)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return fmt.Errorf("reading CPU times: %w", err)
	}
	if res.Failures > 0 {
		return fmt.Errorf("%s at concurrency %d: %d of %d requests failed; first: %s", v.key, conc, res.Failures, res.Requests, res.FirstFailure)
	}
	s := sample{
		round: round, rps: res.Throughput, p50: res.Percentile(50), p99: res.Percentile(99),
		traefikCPU: (trCPU1 - trCPU0) / time.Duration(res.Sent),
		benchCPU:   (selfCPU1 - selfCPU0) / time.Duration(res.Sent),
		sent:       res.Sent,
	}
	if v.redis {
		after, err := b.redis.commands(ctx)
		if err != nil {
			return err
		}
		s.redisOps, s.redisWhat = commandsSince(redisBefore, after)
	}
	b.report.add(sampleKey(v.key, conc), s)
	extra := ""
	if v.redis {
		extra = fmt.Sprintf(", Redis: %d commands (%s)", s.redisOps, s.redisWhat)
	}
	fmt.Printf("round %d c=%-3d %-9s %7.0f req/s  p50 %6.3f ms  p99 %6.3f ms  Traefik CPU %5.1f µs/req  client+upstream CPU %5.1f µs/req%s\n",
		round+1, conc, v.key, s.rps, ms(s.p50), ms(s.p99), us(s.traefikCPU), us(s.benchCPU), extra)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// rssRun is one peak-RSS measurement on a fresh Traefik.
type rssRun struct {
	route         string
	before, peak  int64
	samples       int
	answerBytes   int
	streamElapsed time.Duration
}

// rss measures Traefik's peak RSS while -streams large answers stream at
// once through the plugin route and through the bare route, each on a
// fresh Traefik (a Go process rarely gives memory back, so a second
// measurement in the same process would find the heap already grown).
func (b *bench) rss(ctx context.Context) error {
	routes := []string{"emu-bare", "emu-sign"}
	fmt.Printf("\npeak RSS: %d fresh Traefik processes, %d concurrent large answers each\n", b.opts.rssRounds*len(routes), b.opts.streams)
	for round := 0; round < b.opts.rssRounds; round++ {
		for i := range routes {
			route := routes[(i+round)%len(routes)]
			r, err := b.rssRun(ctx, route)
			if err != nil && ctx.Err() == nil && route == "emu-bare" {
				// A stream cut short on a loaded machine, seen once on
				// the bare route (no plugin involved), should not throw
				// away the whole run: measure again on a fresh Traefik,
				// once, and say so. A failure through the plugin is
				// never retried: it is reported.
				fmt.Printf("RSS %-8s failed (%v); measuring again on a fresh Traefik\n", route, err)
				r, err = b.rssRun(ctx, route)
			}
			if err != nil {
				return fmt.Errorf("RSS through %s: %w", route, err)
			}
			b.report.rss = append(b.report.rss, r)
			fmt.Printf("RSS %-8s %d × %.2f MiB answers in %s: %.1f MiB before, peak %.1f MiB (+%.1f MiB; %d samples)\n",
				route, b.opts.streams, mib(int64(r.answerBytes)), r.streamElapsed.Round(time.Millisecond),
				mib(r.before), mib(r.peak), mib(r.peak-r.before), r.samples)
		}
	}
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func (b *bench) rssRun(ctx context.Context, route string) (rssRun, error) {
	r := rssRun{route: route}
	if err := b.startTraefik(); err != nil {
		return r, err
	}
	defer b.tr.stop()
	if err := b.presign(); err != nil { // the plugin's first ticket, and the app-signed bodies
		return r, err
	}
	path, body := "/emu/sign/faceid/queryfacerecord", []byte(`{"orderNo":"`+bigOrderNo+`","getFile":"1"}`)
	if route == "emu-bare" {
		path, body = "/emu/bare"+b.bigSignedPath, b.bigSignedBody
	}
	client := loadgen.NewClient(b.opts.streams)
	defer client.CloseIdleConnections()
	// One answer read at full speed: its size, and warm connections.
	size, err := streamLarge(ctx, client, b.tr.url+path, body, -1, false)
	if err != nil {
		return r, err
	}
	r.answerBytes = size
	time.Sleep(300 * time.Millisecond)
	if r.before, err = rssBytes(b.tr.pid); err != nil {
		return r, err
	}
	r.peak = r.before

	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if v, err := rssBytes(b.tr.pid); err == nil {
					r.samples++
					if v > r.peak {
						r.peak = v
					}
				}
			}
		}
	}()
	began := time.Now()
	errs := make(chan error, b.opts.streams)
	var wg sync.WaitGroup
	for i := 0; i < b.opts.streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := streamLarge(ctx, client, b.tr.url+path, body, size, true)
			errs <- err
		}()
	}
	wg.Wait()
	r.streamElapsed = time.Since(began)
	time.Sleep(50 * time.Millisecond) // a last sample or two after the streams
	close(stop)
	<-sampled
	close(errs)
	for err := range errs {
		if err != nil {
			return r, err
		}
	}
	return r, nil
}

// streamLarge posts body and reads the whole answer, slowly when slow is
// set (64 KiB every 5 ms, so that the answers overlap and a gateway that
// held them would show it), checks status, vendor code and, when want is
// not negative, the size; it returns the size.
func streamLarge(ctx context.Context, client *http.Client, url string, body []byte, want int, slow bool) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var rd io.Reader = resp.Body
	if slow {
		rd = &slowReader{r: resp.Body}
	}
	br := bufio.NewReaderSize(rd, 64<<10)
	head, _ := br.Peek(100)
	if resp.StatusCode != http.StatusOK || vendorCode(head) != faceidtest.CodeOK {
		return 0, fmt.Errorf("large answer: status %d: %.100s", resp.StatusCode, head)
	}
	n, err := io.Copy(io.Discard, br)
	if err != nil {
		return int(n), fmt.Errorf("large answer: after %d bytes: %w", n, err)
	}
	if n < 2*mediaBytes || (want >= 0 && int(n) != want) {
		return int(n), fmt.Errorf("large answer: %d bytes, want %d (photo and video of %d bytes)", n, want, mediaBytes)
	}
	return int(n), nil
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

// repoRoot is the plugin's repository: the directory above the working
// directory that holds scripts/build-traefik.sh.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "build-traefik.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find scripts/build-traefik.sh above the working directory: run benchtraefik from inside the repository")
		}
		dir = parent
	}
}
