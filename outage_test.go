package faceidsigner

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycgate/faceidsigner/faceidtest"
)

// TestRecoveryIsNotAThunderingHerd: with the vendor down and no ticket,
// requests get 503 at once while the plugin backs off; when the backoff
// ends, a crowd of requests makes exactly one token call.
func TestRecoveryIsNotAThunderingHerd(t *testing.T) {
	g := newGateway(t, func(c *Config) { c.Timeout = "200ms" })
	g.emu.SetFault(faceidtest.TokenEndpoint, faceidtest.Fault{Status: 503})
	if a := g.do(t, http.MethodPost, queryBody, nil); a.status != 502 {
		t.Fatalf("vendor down: %d %s", a.status, a.raw)
	}
	// During the backoff: fast 503s, no vendor calls.
	start := time.Now()
	for i := 0; i < 20; i++ {
		if a := g.do(t, http.MethodPost, queryBody, nil); a.status != 503 {
			t.Fatalf("during backoff: %d %s", a.status, a.raw)
		}
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Fatalf("20 answers during backoff took %s", elapsed)
	}
	if g.emu.TokenCalls() != 1 {
		t.Fatalf("token calls during backoff: %d", g.emu.TokenCalls())
	}
	g.emu.ClearFaults()
	time.Sleep(1100 * time.Millisecond) // first backoff is at most 1 s
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := g.do(t, http.MethodPost, queryBody, nil)
			mu.Lock()
			codes[a.status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if g.emu.TokenCalls() != 2 || codes[200] != 50 {
		t.Fatalf("after recovery: token calls %d, statuses %v; want 2 and 50×200", g.emu.TokenCalls(), codes)
	}
}

// TestRefusedTokenLogsOncePerAttempt: a rotated secret makes every token
// call fail; the error is logged once per refresh attempt, not once per
// request, and names the vendor's code.
func TestRefusedTokenLogsOncePerAttempt(t *testing.T) {
	g := newGateway(t, func(c *Config) { c.LogLevel = "error" })
	g.emu.SetFault(faceidtest.TokenEndpoint, faceidtest.Fault{Code: "66660004", Msg: "secret invalid"})
	deadline := time.Now().Add(1500 * time.Millisecond)
	requests := 0
	for time.Now().Before(deadline) {
		g.do(t, http.MethodPost, queryBody, nil)
		requests++
		time.Sleep(10 * time.Millisecond)
	}
	logs := g.logs.String()
	failures := strings.Count(logs, `"msg":"ticket refresh failed"`)
	if failures != g.emu.TokenCalls() || failures > 3 || requests < 50 {
		t.Fatalf("%d requests, %d token calls, %d failure lines; want one line per attempt", requests, g.emu.TokenCalls(), failures)
	}
	if !strings.Contains(logs, "66660004") || strings.Contains(logs, `"msg":"request rejected"`) {
		t.Fatalf("logs at level error should name the vendor code and drop warn lines:\n%s", logs)
	}
}

// TestLogsNeverCarryCredentials runs every kind of event at debug level and
// searches the log for the secret, tokens, tickets, sign inputs and files.
func TestLogsNeverCarryCredentials(t *testing.T) {
	g := newGateway(t, func(c *Config) { c.LogLevel = "debug"; c.MediaRetryDelay = "50ms" })
	photo := []byte("PHOTO-SECRET-BYTES-0123456789")
	g.emu.AddResult(testAppID, "late9", faceidtest.Result{Photo: photo, Video: photo, MediaAfter: 80 * time.Millisecond})
	g.do(t, http.MethodPost, queryBody, nil)                                   // ticket fetched
	g.do(t, http.MethodPost, `{"orderNo":"late9","getFile":"1"}`, nil)         // media retry
	g.emu.RevokeTokens(testAppID)                                              // stale ticket retry
	g.do(t, http.MethodPost, queryBody, nil)                                   //
	g.do(t, http.MethodPost, `{"orderNo":"bad-order"}`, nil)                   // rejected
	g.emu.SetFault(faceidtest.QueryEndpoint, faceidtest.Fault{Code: "400101"}) // rejected twice
	g.do(t, http.MethodPost, queryBody, nil)
	logs := g.logs.String()
	for _, event := range []string{"ticket fetched", "retrying vendor call", "request rejected"} {
		if !strings.Contains(logs, `"msg":"`+event+`"`) {
			t.Errorf("no %q event in the log", event)
		}
	}
	assertNoLeak(t, g.emu, "logs", logs)
	for _, r := range g.emu.Requests() {
		if strings.Contains(logs, string(r.Body)) {
			t.Fatal("log carries a signed request body")
		}
	}
	for _, tk := range g.emu.IssuedTickets() {
		// The sign input is the sorted concatenation; any part with the ticket is caught above.
		if strings.Contains(logs, testOrder+tk) || strings.Contains(logs, tk[:16]) {
			t.Fatal("log carries part of a ticket")
		}
	}
	if strings.Contains(logs, "PHOTO-SECRET") || strings.Contains(logs, "UEhPVE8tU0VDUkVU") {
		t.Fatal("log carries the photo")
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !strings.HasPrefix(line, "{") || !strings.HasSuffix(line, "}") {
			t.Fatalf("log line is not one JSON object: %q", line)
		}
	}
}
