package ticketcache

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestHotFollowsTheTicketSchedule: on the real clock, Hot returns the ticket
// once fetched, empties when the ticket falls due (its timer), and returns
// the refreshed ticket after the refresh that Value then starts.
func TestHotFollowsTheTicketSchedule(t *testing.T) {
	var calls atomic.Int64
	lifetime := 400 * time.Millisecond // due at 3/4: 300 ms after the fetch
	c := New(nil)
	c.Configure("id", func(ctx context.Context, current Ticket, rejected string) (Ticket, error) {
		n := calls.Add(1)
		return Ticket{Value: "ticket-" + strconv.FormatInt(n, 10), FetchedAt: time.Now(), Lifetime: lifetime}, nil
	}, Settings{})
	if v := Hot(c); v != "" {
		t.Fatalf("Hot before any fetch = %q, want empty", v)
	}
	start := time.Now()
	if v, err := c.Value(context.Background()); err != nil || v != "ticket-1" {
		t.Fatalf("Value = %q, %v", v, err)
	}
	if v := Hot(c); v != "ticket-1" && time.Since(start) < 250*time.Millisecond {
		t.Fatalf("Hot right after the fetch = %q, want ticket-1", v)
	}
	waitFor(t, "Hot to empty when the ticket falls due", func() bool { return Hot(c) == "" })
	if since := time.Since(start); since < 290*time.Millisecond {
		t.Fatalf("Hot emptied %v after the fetch, before the ticket was due (300 ms)", since)
	}
	// The next request goes through Get: it is served the still-valid
	// ticket and starts the refresh, after which Hot has the new one.
	if v, err := c.Value(context.Background()); err != nil || v == "" {
		t.Fatalf("Value while due = %q, %v", v, err)
	}
	waitFor(t, "the refreshed ticket in Hot", func() bool { return Hot(c) == "ticket-2" })
}

// TestHotIsOffWithAnInjectedClock: the timer runs on the real clock, so a
// cache on a test clock always answers through Get.
func TestHotIsOffWithAnInjectedClock(t *testing.T) {
	c, _, clock := newTestCache(time.Hour, Settings{})
	if v, err := c.Value(context.Background()); err != nil || v != "ticket-1" {
		t.Fatalf("Value = %q, %v", v, err)
	}
	if v := Hot(c); v != "" {
		t.Fatalf("Hot = %q with an injected clock, want empty", v)
	}
	clock.Advance(2 * time.Hour)
	if v, _ := c.Value(context.Background()); v == "ticket-1" {
		t.Fatal("Value served an expired ticket")
	}
}

// TestHotEmptiesOnInvalidateAndNewCredentials: a rejected ticket and a
// change of credentials stop Hot at once, not at the timer.
func TestHotEmptiesOnInvalidateAndNewCredentials(t *testing.T) {
	var calls atomic.Int64
	fetch := func(ctx context.Context, current Ticket, rejected string) (Ticket, error) {
		n := calls.Add(1)
		return Ticket{Value: "ticket-" + strconv.FormatInt(n, 10), FetchedAt: time.Now(), Lifetime: time.Hour}, nil
	}
	c := New(nil)
	c.Configure("id", fetch, Settings{})
	if _, err := c.Value(context.Background()); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	c.Configure("id", func(ctx context.Context, current Ticket, rejected string) (Ticket, error) {
		<-gate
		return fetch(ctx, current, rejected)
	}, Settings{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = c.Invalidate(context.Background(), "ticket-1")
	}()
	waitFor(t, "Hot to drop the rejected ticket", func() bool { return Hot(c) == "" })
	close(gate)
	<-done
	if v := Hot(c); v != "ticket-2" {
		t.Fatalf("Hot after the forced refresh = %q, want ticket-2", v)
	}
	c.Configure("other-credentials", fetch, Settings{})
	if v := Hot(c); v != "" {
		t.Fatalf("Hot after new credentials = %q, want empty", v)
	}
}
