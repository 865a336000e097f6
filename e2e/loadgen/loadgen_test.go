package loadgen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// server is a loopback upstream that counts connections, requests and the
// most requests it had in flight at once, and checks every body.
type server struct {
	*httptest.Server
	conns, requests, inflight, peak atomic.Int64
	badBodies                       atomic.Int64
}

func newServer(t *testing.T, wantBody string, delay time.Duration, status func(n int64) int) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.inflight.Add(1)
		defer s.inflight.Add(-1)
		for {
			p := s.peak.Load()
			if n <= p || s.peak.CompareAndSwap(p, n) {
				break
			}
		}
		body, _ := io.ReadAll(r.Body)
		if string(body) != wantBody || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			s.badBodies.Add(1)
		}
		time.Sleep(delay)
		w.WriteHeader(status(s.requests.Add(1)))
		_, _ = io.WriteString(w, `{"code":"0"}`)
	}))
	s.Server.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func always200(int64) int { return http.StatusOK }

func TestRunKeepsConcurrencyAndConnections(t *testing.T) {
	const body = `{"orderNo":"orderNo596551"}`
	srv := newServer(t, body, 2*time.Millisecond, always200)
	res, err := Run(context.Background(), Options{
		URL: srv.URL + "/x", Body: []byte(body), Concurrency: 8,
		Warmup: 100 * time.Millisecond, Duration: 400 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Failures != 0 {
		t.Fatalf("%d failures: %s", res.Failures, res.FirstFailure)
	}
	if got := srv.badBodies.Load(); got != 0 {
		t.Errorf("server saw %d requests with another method, body or Content-Type", got)
	}
	if got := srv.peak.Load(); got != 8 {
		t.Errorf("server had at most %d requests in flight, want 8", got)
	}
	if got := srv.conns.Load(); got != 8 {
		t.Errorf("server accepted %d connections, want 8 (one keep-alive connection per worker)", got)
	}
	// 8 workers, 2 ms per request, 0.4 s: at most 1600 measured.
	if res.Requests < 100 || res.Requests > 1600 {
		t.Errorf("measured %d requests, want between 100 and 1600", res.Requests)
	}
	if int64(res.Requests) >= srv.requests.Load() {
		t.Errorf("measured %d of %d requests: warmup requests were counted", res.Requests, srv.requests.Load())
	}
	if int64(res.Sent) != srv.requests.Load() {
		t.Errorf("Sent = %d, server answered %d", res.Sent, srv.requests.Load())
	}
	if res.Percentile(50) < 2*time.Millisecond {
		t.Errorf("p50 %s is below the server's 2 ms delay", res.Percentile(50))
	}
	if !(res.Percentile(50) <= res.Percentile(99) && res.Percentile(99) <= res.Max()) {
		t.Errorf("percentiles out of order: %s", res)
	}
	if want := float64(res.Requests) / 0.4; res.Throughput != want {
		t.Errorf("throughput %.1f, want %.1f", res.Throughput, want)
	}
}

func TestRunCountsFailures(t *testing.T) {
	// Every third answer is a 503.
	srv := newServer(t, "{}", 0, func(n int64) int {
		if n%3 == 0 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	res, err := Run(context.Background(), Options{
		URL: srv.URL, Body: []byte("{}"), Concurrency: 1, Duration: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failures == 0 || !strings.Contains(res.FirstFailure, "status 503") {
		t.Fatalf("want 503 failures, got %d (%q)", res.Failures, res.FirstFailure)
	}
	third := float64(res.Requests) / 3
	if f := float64(res.Failures); f < third-1 || f > third+1 {
		t.Errorf("%d failures of %d requests, want a third", res.Failures, res.Requests)
	}
	if want := float64(res.Requests-res.Failures) / 0.2; res.Throughput != want {
		t.Errorf("throughput %.1f counts failures; want %.1f", res.Throughput, want)
	}
}

func TestRunCheckSeesTheBody(t *testing.T) {
	srv := newServer(t, "{}", 0, always200)
	var mu sync.Mutex
	var seen []byte
	res, err := Run(context.Background(), Options{
		URL: srv.URL, Body: []byte("{}"), Concurrency: 2, Duration: 100 * time.Millisecond,
		Check: func(status int, body []byte) error {
			mu.Lock()
			seen = append(seen[:0], body...)
			mu.Unlock()
			if !bytes.Contains(body, []byte(`"code":"1"`)) {
				return errors.New("code is not 1")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failures != res.Requests || res.FirstFailure != "code is not 1" {
		t.Errorf("Check rejected %d of %d (%q), want all", res.Failures, res.Requests, res.FirstFailure)
	}
	if res.Throughput != 0 {
		t.Errorf("throughput %.1f with every answer rejected, want 0", res.Throughput)
	}
	if string(seen) != `{"code":"0"}` {
		t.Errorf("Check saw body %q", seen)
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	if _, err := Run(context.Background(), Options{URL: "http://127.0.0.1:1", Duration: time.Second}); err == nil {
		t.Error("Run without Concurrency returned no error")
	}
}

func TestPercentileNearestRank(t *testing.T) {
	r := &Result{}
	for i := 1; i <= 100; i++ {
		r.sorted = append(r.sorted, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {99.5, 100 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.1, time.Millisecond}} {
		if got := r.Percentile(c.p); got != c.want {
			t.Errorf("Percentile(%v) = %s, want %s", c.p, got, c.want)
		}
	}
	if (&Result{}).Percentile(50) != 0 {
		t.Error("Percentile of an empty result is not 0")
	}
}
