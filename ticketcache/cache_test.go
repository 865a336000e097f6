package ticketcache

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock shared by the cache and the fetcher.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// scriptedFetcher hands out numbered tickets, optionally failing or blocking.
type scriptedFetcher struct {
	clock    *fakeClock
	lifetime time.Duration
	calls    atomic.Int64
	forced   atomic.Int64
	fail     atomic.Bool
	gate     chan struct{} // when not nil, each fetch waits for a value
}

func (f *scriptedFetcher) fetch(ctx context.Context, current Ticket, rejected string) (Ticket, error) {
	n := f.calls.Add(1)
	if rejected != "" {
		f.forced.Add(1)
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return Ticket{}, ctx.Err()
		}
	}
	if f.fail.Load() {
		return Ticket{}, wrapf(ErrUnreachable, "scripted failure")
	}
	return Ticket{Value: "ticket-" + strconv.FormatInt(n, 10), FetchedAt: f.clock.Now(), Lifetime: f.lifetime}, nil
}

func newTestCache(lifetime time.Duration, s Settings) (*Cache, *scriptedFetcher, *fakeClock) {
	clock := newFakeClock()
	f := &scriptedFetcher{clock: clock, lifetime: lifetime}
	c := New(clock.Now)
	c.Configure("id-1", f.fetch, s)
	return c, f, clock
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestSingleFlightFirstFetch(t *testing.T) {
	c, f, _ := newTestCache(time.Hour, Settings{})
	f.gate = make(chan struct{})
	var wg sync.WaitGroup
	values := make([]string, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tk, err := c.Get(context.Background())
			if err != nil {
				t.Error(err)
			}
			values[i] = tk.Value
		}(i)
	}
	waitFor(t, "the fetch to start", func() bool { return f.calls.Load() == 1 })
	time.Sleep(20 * time.Millisecond) // let every goroutine join the flight
	close(f.gate)
	wg.Wait()
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
	for i, v := range values {
		if v != "ticket-1" {
			t.Fatalf("request %d got %q", i, v)
		}
	}
}

func TestRefreshAheadServesCurrentTicket(t *testing.T) {
	c, f, clock := newTestCache(time.Hour, Settings{RefreshInterval: 20 * time.Minute})
	first, err := c.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(19 * time.Minute)
	if tk, _ := c.Get(context.Background()); tk.Value != first.Value || f.calls.Load() != 1 {
		t.Fatalf("refreshed before refreshInterval (calls %d)", f.calls.Load())
	}
	// Past the interval: the old ticket is served while one refresh runs.
	f.gate = make(chan struct{})
	clock.Advance(2 * time.Minute)
	for i := 0; i < 50; i++ {
		tk, err := c.Get(context.Background())
		if err != nil || tk.Value != first.Value {
			t.Fatalf("during refresh got %q, %v; want the still-valid ticket", tk.Value, err)
		}
	}
	waitFor(t, "one background refresh", func() bool { return f.calls.Load() == 2 })
	close(f.gate)
	waitFor(t, "the new ticket", func() bool {
		tk, _ := c.Get(context.Background())
		return tk.Value == "ticket-2"
	})
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
}

func TestShortLifetimeRefreshesBeforeExpiry(t *testing.T) {
	c, f, clock := newTestCache(40*time.Second, Settings{RefreshInterval: 20 * time.Minute})
	if _, err := c.Get(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(31 * time.Second) // past 3/4 of the lifetime
	if tk, _ := c.Get(context.Background()); tk.Value != "ticket-1" {
		t.Fatalf("got %q, want the still-valid ticket", tk.Value)
	}
	waitFor(t, "refresh at 3/4 of the lifetime", func() bool {
		tk, _ := c.Get(context.Background())
		return tk.Value == "ticket-2"
	})
	_ = f
}

func TestExpiredTicketIsNeverServed(t *testing.T) {
	c, f, clock := newTestCache(time.Hour, Settings{MinBackoff: time.Minute, MaxBackoff: time.Minute})
	if _, err := c.Get(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.fail.Store(true)
	clock.Advance(time.Hour) // expired
	_, err := c.Get(context.Background())
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want the fetch error", err)
	}
	// Backing off: fail at once, no new fetch, error says why.
	calls := f.calls.Load()
	for i := 0; i < 100; i++ {
		_, err = c.Get(context.Background())
		if !errors.Is(err, ErrNoTicket) {
			t.Fatalf("err = %v, want ErrNoTicket", err)
		}
	}
	if f.calls.Load() != calls {
		t.Fatalf("backing off still fetched: %d calls", f.calls.Load()-calls)
	}
	if s := c.RetryAfterSeconds(); s < 30 || s > 60 {
		t.Errorf("RetryAfterSeconds = %d, want within the 30-60 s jittered backoff", s)
	}
	// After the backoff the next request tries again and recovers.
	f.fail.Store(false)
	clock.Advance(time.Minute)
	tk, err := c.Get(context.Background())
	if err != nil || tk.Value == "ticket-1" {
		t.Fatalf("after backoff got %q, %v", tk.Value, err)
	}
}

func TestBackoffGrowsAndCaps(t *testing.T) {
	for n := 1; n <= 10; n++ {
		d := backoffFor(n, time.Second, 30*time.Second)
		want := time.Second << uint(n-1)
		if want > 30*time.Second {
			want = 30 * time.Second
		}
		if d < want/2 || d > want {
			t.Errorf("backoff(%d) = %s, want in [%s, %s]", n, d, want/2, want)
		}
	}
}

func TestFailedRefreshKeepsValidTicket(t *testing.T) {
	c, f, clock := newTestCache(time.Hour, Settings{RefreshInterval: 20 * time.Minute})
	if _, err := c.Get(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.fail.Store(true)
	clock.Advance(21 * time.Minute)
	for i := 0; i < 20; i++ {
		tk, err := c.Get(context.Background())
		if err != nil || tk.Value != "ticket-1" {
			t.Fatalf("got %q, %v; want the still-valid ticket while refresh fails", tk.Value, err)
		}
	}
	waitFor(t, "the failed refresh", func() bool { return c.Stats().Failures == 1 })
	// Within the backoff no further attempt is made.
	for i := 0; i < 20; i++ {
		_, _ = c.Get(context.Background())
	}
	time.Sleep(10 * time.Millisecond)
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2 (no hot loop during backoff)", n)
	}
}

func TestInvalidate(t *testing.T) {
	c, f, clock := newTestCache(time.Hour, Settings{MinForcedInterval: 10 * time.Second})
	first, _ := c.Get(context.Background())
	tk, err := c.Invalidate(context.Background(), first.Value)
	if err != nil || tk.Value != "ticket-2" || f.forced.Load() != 1 {
		t.Fatalf("Invalidate = %q, %v (forced %d)", tk.Value, err, f.forced.Load())
	}
	// A stale rejection of the old ticket returns the new one without fetching.
	if tk, err := c.Invalidate(context.Background(), first.Value); err != nil || tk.Value != "ticket-2" {
		t.Fatalf("second Invalidate = %q, %v", tk.Value, err)
	}
	// Rejecting the new ticket at once is rate-limited.
	if _, err := c.Invalidate(context.Background(), "ticket-2"); !errors.Is(err, ErrForcedTooSoon) {
		t.Fatalf("err = %v, want ErrForcedTooSoon", err)
	}
	clock.Advance(11 * time.Second)
	if tk, err := c.Invalidate(context.Background(), "ticket-2"); err != nil || tk.Value != "ticket-3" {
		t.Fatalf("Invalidate after interval = %q, %v", tk.Value, err)
	}
	if f.calls.Load() != 3 {
		t.Fatalf("fetches = %d, want 3", f.calls.Load())
	}
}

func TestConfigureNewIdentityDropsTicket(t *testing.T) {
	c, f, _ := newTestCache(time.Hour, Settings{})
	first, _ := c.Get(context.Background())
	c.Configure("id-1", f.fetch, Settings{}) // same credentials: keep
	if tk, _ := c.Get(context.Background()); tk.Value != first.Value {
		t.Fatal("same identity dropped the ticket")
	}
	c.Configure("id-2", f.fetch, Settings{}) // new secret: never reuse
	if tk, _ := c.Get(context.Background()); tk.Value == first.Value {
		t.Fatal("a new identity reused the old ticket")
	}
}

func TestFetchPanicIsRecovered(t *testing.T) {
	c := New(nil)
	c.Configure("x", func(ctx context.Context, current Ticket, rejected string) (Ticket, error) { panic("boom") }, Settings{})
	if _, err := c.Get(context.Background()); err == nil {
		t.Fatal("a panicking fetch returned no error")
	}
}

func TestGetHonoursContext(t *testing.T) {
	c, f, _ := newTestCache(time.Hour, Settings{})
	f.gate = make(chan struct{})
	defer close(f.gate)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Get(ctx); !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("Get did not give up with its context")
	}
}

func TestForIsProcessWide(t *testing.T) {
	a := For("https://e.example", "APP1")
	if For("https://e.example", "APP1") != a {
		t.Fatal("For returned two caches for one key")
	}
	if For("https://e.example", "APP2") == a || For("https://other.example", "APP1") == a {
		t.Fatal("For shared a cache across keys")
	}
}

func TestLogNeverCarriesTicket(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	clock := newFakeClock()
	f := &scriptedFetcher{clock: clock, lifetime: time.Hour}
	c := New(clock.Now)
	c.Configure("id", f.fetch, Settings{Log: func(level, msg string, fields map[string]interface{}) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, level+" "+msg)
		for k, v := range fields {
			if s, ok := v.(string); ok && (s == "ticket-1" || s == "ticket-2") {
				t.Errorf("field %s carries the ticket", k)
			}
		}
	}})
	_, _ = c.Get(context.Background())
	f.fail.Store(true)
	clock.Advance(2 * time.Hour)
	_, _ = c.Get(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 2 || lines[0] != "info ticket fetched" || lines[1] != "error ticket refresh failed" {
		t.Fatalf("log lines = %q", lines)
	}
}

func TestNewTokenWithoutTicketShortensTheOldTicket(t *testing.T) {
	c, f, clock := newTestCache(time.Hour, Settings{RefreshInterval: 20 * time.Minute, MinBackoff: time.Minute, MaxBackoff: time.Minute})
	if _, err := c.Get(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(21 * time.Minute)
	superseded := clock.Now()
	c.Configure("id-1", func(ctx context.Context, current Ticket, rejected string) (Ticket, error) {
		var failed Ticket
		failed.OldTokenSupersededAt = superseded
		return failed, wrapf(ErrUnreachable, "ticket call failed after a new token")
	}, Settings{RefreshInterval: 20 * time.Minute, MinBackoff: time.Minute, MaxBackoff: time.Minute})
	_, _ = c.Get(context.Background()) // starts the failing refresh, serves ticket-1
	waitFor(t, "the failed refresh", func() bool { return c.Stats().Failures == 1 })
	clock.Advance(30 * time.Second)
	if tk, err := c.Get(context.Background()); err != nil || tk.Value != "ticket-1" {
		t.Fatalf("within the overlap: %q %v", tk.Value, err)
	}
	clock.Advance(20 * time.Second) // 50 s after the new token: the old ticket is about to die
	if _, err := c.Get(context.Background()); err == nil {
		t.Fatal("still serving a ticket whose token was superseded 50 s ago")
	}
	_ = f
}

func TestWaitersOfARateLimitedForcedRefreshGetTheTicket(t *testing.T) {
	c, f, _ := newTestCache(time.Hour, Settings{})
	first, _ := c.Get(context.Background())
	f.gate = make(chan struct{})
	c.Configure("id-1", func(ctx context.Context, current Ticket, rejected string) (Ticket, error) {
		<-f.gate
		return Ticket{}, ErrForcedTooSoon
	}, Settings{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Invalidate(context.Background(), first.Value)
		done <- err
	}()
	waitFor(t, "the forced refresh to start", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.flight != nil
	})
	waiter := make(chan string, 1)
	go func() {
		tk, err := c.Get(context.Background())
		if err != nil {
			waiter <- err.Error()
			return
		}
		waiter <- tk.Value
	}()
	time.Sleep(20 * time.Millisecond)
	close(f.gate)
	if err := <-done; !errors.Is(err, ErrForcedTooSoon) {
		t.Fatalf("Invalidate: %v", err)
	}
	if got := <-waiter; got != first.Value {
		t.Fatalf("a request waiting on the refresh got %q", got)
	}
}

// TestOlderSupersedingTokenDoesNotShortenTheTicket: a failed refresh whose
// token is older than the cached ticket's (a kept token, refused) leaves
// the ticket's expiry alone; a newer one caps it at the grace.
func TestOlderSupersedingTokenDoesNotShortenTheTicket(t *testing.T) {
	for _, newer := range []bool{false, true} {
		c, f, clock := newTestCache(time.Hour, Settings{RefreshInterval: 20 * time.Minute})
		first, err := c.Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		before := c.Stats().ExpiresAt
		supersededAt := first.FetchedAt.Add(-time.Minute)
		if newer {
			supersededAt = clock.Now().Add(21 * time.Minute)
		}
		c.Configure("id-1", func(ctx context.Context, current Ticket, rejected string) (Ticket, error) {
			var failed Ticket
			failed.OldTokenSupersededAt = supersededAt
			return failed, wrapf(ErrUnreachable, "ticket call failed")
		}, Settings{RefreshInterval: 20 * time.Minute})
		clock.Advance(21 * time.Minute) // due: the next Get starts a refresh
		_, _ = c.Get(context.Background())
		waitFor(t, "the failed refresh", func() bool { return c.Stats().Failures == 1 })
		after := c.Stats().ExpiresAt
		if !newer && !after.Equal(before) {
			t.Fatalf("an older token moved the expiry from %v to %v", before, after)
		}
		if newer && !after.Equal(supersededAt.Add(supersededGrace)) {
			t.Fatalf("a newer token left the expiry at %v, want %v", after, supersededAt.Add(supersededGrace))
		}
		_ = f
	}
}

// TestInvalidateDuringAScheduledCheckForcesARefresh: a rejection that
// arrives while a scheduled refresh runs (a shared store's check, started by
// a request of its own) joins it; when that refresh brings back the very
// ticket the vendor rejected, a forced refresh follows instead of the
// rejection going unanswered.
func TestInvalidateDuringAScheduledCheckForcesARefresh(t *testing.T) {
	clock := newFakeClock()
	gate := make(chan struct{})
	var forced atomic.Int64
	c := New(clock.Now)
	c.Configure("id", func(ctx context.Context, current Ticket, rejected string) (Ticket, error) {
		if rejected == "" && current.Value != "" { // a check: the store still holds the same ticket
			<-gate
			return Ticket{Value: current.Value, FetchedAt: current.FetchedAt, Lifetime: current.Lifetime, CheckAt: clock.Now().Add(time.Second)}, nil
		}
		if rejected != "" {
			forced.Add(1)
			return Ticket{Value: "ticket-2", FetchedAt: clock.Now(), Lifetime: time.Hour}, nil
		}
		return Ticket{Value: "ticket-1", FetchedAt: clock.Now(), Lifetime: time.Hour, CheckAt: clock.Now().Add(time.Second)}, nil
	}, Settings{MinForcedInterval: time.Millisecond})
	if v, err := c.Value(context.Background()); err != nil || v != "ticket-1" {
		t.Fatalf("Value = %q, %v", v, err)
	}
	clock.Advance(2 * time.Second)                              // the check is due
	if v, _ := c.Value(context.Background()); v != "ticket-1" { // starts the check, serves the ticket
		t.Fatalf("during the check: %q", v)
	}
	got := make(chan string)
	go func() {
		tk, err := c.Invalidate(context.Background(), "ticket-1")
		if err != nil {
			got <- err.Error()
			return
		}
		got <- tk.Value
	}()
	time.Sleep(20 * time.Millisecond) // Invalidate joins the running check
	close(gate)
	if v := <-got; v != "ticket-2" || forced.Load() != 1 {
		t.Fatalf("Invalidate during a check = %q, forced refreshes %d; want ticket-2 and 1", v, forced.Load())
	}
}
