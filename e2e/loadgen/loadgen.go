// Package loadgen is the closed-loop HTTP load generator of the benchmarks:
// a fixed number of workers, each on its own keep-alive connection, send the
// same request back to back for a fixed time, and every latency is kept.
// Percentiles are read from the sorted samples, so they are exact for the
// run (no histogram buckets). It needs nothing but net/http.
//
// Closed loop means a worker sends its next request only when the previous
// answer has been read: throughput is what the server sustains at that
// concurrency, and latency includes queueing inside the server.
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Options describes one load run.
type Options struct {
	// URL receives every request. Required.
	URL string
	// Method is the request method; empty means POST.
	Method string
	// Body is sent with every request (with Content-Length).
	Body []byte
	// ContentType is the Content-Type header; empty means application/json.
	ContentType string
	// Header holds more request headers.
	Header http.Header
	// Concurrency is the number of workers (and connections). Required.
	Concurrency int
	// Warmup is sent before measuring; its requests are not counted.
	Warmup time.Duration
	// Duration is the measured time. Required.
	Duration time.Duration
	// Check judges an answer; nil accepts status 200 only. The body is
	// read fully either way.
	Check func(status int, body []byte) error
	// Timeout bounds each request; zero means 10 s.
	Timeout time.Duration
	// Client sends the requests; nil means a client with one keep-alive
	// connection per worker and no compression.
	Client *http.Client
}

// Result is what one run measured.
type Result struct {
	// Requests is how many answers completed inside the measured window,
	// accepted or not.
	Requests int
	// Failures counts requests that errored or that Check rejected, in
	// the measured window; FirstFailure says why the first one failed.
	Failures     int
	FirstFailure string
	// Sent counts every request of the run, warmup and the requests that
	// completed after the window included: divide a resource used over the
	// whole run by it.
	Sent int
	// Elapsed is the measured window.
	Elapsed time.Duration
	// Throughput is accepted answers per second over Elapsed.
	Throughput float64

	sorted []time.Duration
}

// Percentile returns the latency below or at which p percent of the
// measured requests completed (nearest rank; p in (0, 100]); zero when
// nothing was measured.
func (r *Result) Percentile(p float64) time.Duration {
	n := len(r.sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	return r.sorted[rank-1]
}

// Max returns the slowest measured latency.
func (r *Result) Max() time.Duration { return r.Percentile(100) }

// String is a one-line summary.
func (r *Result) String() string {
	return fmt.Sprintf("%d requests in %s: %.0f req/s, p50 %s, p90 %s, p99 %s, max %s, %d failed",
		r.Requests, r.Elapsed.Round(time.Millisecond), r.Throughput,
		r.Percentile(50), r.Percentile(90), r.Percentile(99), r.Max(), r.Failures)
}

// NewClient returns a client that keeps up to conns connections alive to
// one host and never asks for compression, as Run uses by default.
func NewClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}

// worker is one worker's share of the measurements.
type worker struct {
	latencies    []time.Duration
	sent         int
	requests     int
	failures     int
	firstFailure string
}

// Run sends load as opts says and returns what it measured. It returns an
// error for bad options or when ctx ends before the run does; failed
// requests are counted in the Result, not returned.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if opts.URL == "" || opts.Concurrency < 1 || opts.Duration <= 0 {
		return nil, errors.New("loadgen: URL, Concurrency (at least 1) and Duration (above 0) are required")
	}
	if opts.Method == "" {
		opts.Method = http.MethodPost
	}
	if opts.ContentType == "" {
		opts.ContentType = "application/json"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	client := opts.Client
	if client == nil {
		client = NewClient(opts.Concurrency)
		defer client.CloseIdleConnections()
	}

	begin := time.Now()
	measureFrom := begin.Add(opts.Warmup)
	measureTo := measureFrom.Add(opts.Duration)
	workers := make([]*worker, opts.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{latencies: make([]time.Duration, 0, 4096)}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, client, &opts, measureFrom, measureTo)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("loadgen: run interrupted: %w", err)
	}

	res := &Result{Elapsed: opts.Duration}
	total := 0
	for _, w := range workers {
		total += len(w.latencies)
	}
	res.sorted = make([]time.Duration, 0, total)
	for _, w := range workers {
		res.sorted = append(res.sorted, w.latencies...)
		res.Requests += w.requests
		res.Sent += w.sent
		res.Failures += w.failures
		if res.FirstFailure == "" {
			res.FirstFailure = w.firstFailure
		}
	}
	sort.Slice(res.sorted, func(i, j int) bool { return res.sorted[i] < res.sorted[j] })
	res.Throughput = float64(res.Requests-res.Failures) / opts.Duration.Seconds()
	return res, nil
}

// run sends requests until measureTo, recording those that complete inside
// [measureFrom, measureTo].
func (w *worker) run(ctx context.Context, client *http.Client, opts *Options, measureFrom, measureTo time.Time) {
	var buf bytes.Buffer
	for ctx.Err() == nil {
		start := time.Now()
		if !start.Before(measureTo) {
			return
		}
		err := send(ctx, client, opts, &buf)
		end := time.Now()
		w.sent++
		if end.Before(measureFrom) || end.After(measureTo) {
			continue
		}
		w.requests++
		w.latencies = append(w.latencies, end.Sub(start))
		if err != nil {
			w.failures++
			if w.firstFailure == "" {
				w.firstFailure = err.Error()
			}
		}
	}
}

// send makes one request, reads the whole answer into buf and checks it.
func send(ctx context.Context, client *http.Client, opts *Options, buf *bytes.Buffer) error {
	rctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, opts.Method, opts.URL, bytes.NewReader(opts.Body))
	if err != nil {
		return err
	}
	for k, v := range opts.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", opts.ContentType)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	buf.Reset()
	_, err = io.Copy(buf, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if opts.Check != nil {
		return opts.Check(resp.StatusCode, buf.Bytes())
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, buf.Bytes())
	}
	return nil
}
