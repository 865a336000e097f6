// Package ticketcache owns the lifecycle of the FaceID access token and SIGN
// ticket: the vendor OAuth client, a cache that keeps one ticket per
// (endpoint, app id) for the whole Traefik process, single-flight refreshes
// ahead of expiry, backoff after failures, and forced refreshes when the
// vendor rejects a ticket. Requests read the cached ticket without waiting
// while a refresh runs; they wait only when no valid ticket is left.
//
// The design follows golang.org/x/oauth2: a FetchFunc gets a fresh ticket
// (Client.Fetch talks to the vendor; a shared store can wrap it) and Cache
// reuses what it returns until it is due.
package ticketcache

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"
)

// Ticket is a SIGN ticket with what the cache needs to schedule it. The
// value is a credential: never log or return it.
type Ticket struct {
	Value string
	// FetchedAt is when the token that issued the ticket was requested.
	FetchedAt time.Time
	// Lifetime is the shorter of the token's and the ticket's expire_in.
	Lifetime time.Duration
	// CheckAt, when not zero, asks the cache to call its FetchFunc again at
	// that time even if the ticket is not due for refresh (a shared store
	// uses it to notice a record written by another replica).
	CheckAt time.Time
	// Version identifies the record in a shared store (0 in-process).
	Version int64
	// OldTokenSupersededAt is set, with an error, by a FetchFunc that got a
	// new access token but no ticket: the vendor kills the previous token,
	// and the ticket in use, about a minute after that time, so the cache
	// stops using its ticket then instead of at its own expiry.
	OldTokenSupersededAt time.Time
}

// FetchFunc returns a ticket. current is the cache's ticket while it is
// still valid (zero otherwise). rejected is empty for a scheduled refresh;
// after the vendor rejected a ticket it holds that ticket's value, and the
// FetchFunc must not return it again (it fetches a new token, or returns a
// newer ticket it already knows of).
type FetchFunc func(ctx context.Context, current Ticket, rejected string) (Ticket, error)

// LogFunc receives the cache's events. fields never hold a credential.
type LogFunc func(level, msg string, fields map[string]interface{})

// Settings tune a Cache. Zero values take the defaults below.
type Settings struct {
	// RefreshInterval is the age at which a ticket is refreshed ahead of
	// expiry (vendor advice: 20 minutes).
	RefreshInterval time.Duration
	// FetchTimeout bounds one whole refresh (token and ticket calls).
	FetchTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait after failed refreshes; the
	// wait doubles per consecutive failure, with jitter.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// MinForcedInterval is the least time between two forced refreshes.
	MinForcedInterval time.Duration
	// Log receives events; nil discards them.
	Log LogFunc
}

// Defaults for Settings.
const (
	DefaultRefreshInterval   = 20 * time.Minute
	DefaultFetchTimeout      = 15 * time.Second
	DefaultMinBackoff        = time.Second
	DefaultMaxBackoff        = time.Minute
	DefaultMinForcedInterval = 10 * time.Second
	// maxExpiryMargin is how long before its end a ticket stops being used,
	// so that a signed request still reaches the vendor in time. Short
	// lifetimes (tests) use a tenth of the lifetime instead.
	maxExpiryMargin = time.Minute
	// maxCheckOverdue: a ticket whose CheckAt is this far past (an idle
	// replica in a cluster) is not used before it is checked again, since
	// another replica may have replaced it more than the vendor's one-minute
	// overlap ago.
	maxCheckOverdue = 30 * time.Second
	// supersededGrace is how long a ticket is still used after a new token
	// of its app id was issued (the vendor's overlap is about a minute).
	supersededGrace = 45 * time.Second
)

// ErrForcedTooSoon is returned by Invalidate when a forced refresh happened
// less than MinForcedInterval ago.
var ErrForcedTooSoon = errors.New("ticket refresh was forced too recently; not forcing another yet")

// Cache keeps one ticket and refreshes it. Its methods are safe for
// concurrent use. Create caches with For (process-wide) or New (tests).
type Cache struct {
	now func() time.Time

	mu         sync.Mutex
	fetch      FetchFunc
	identity   string
	settings   Settings
	generation int64 // bumped when the identity changes: late results of older flights are dropped

	has        bool
	current    Ticket
	refreshAt  time.Time
	expiresAt  time.Time
	flight     *flight
	failures   int
	retryAt    time.Time
	lastErr    error
	lastForced time.Time
	stats      Stats

	// hot holds the current ticket's value (a string, "" for none) while it
	// is not due, for Hot, the per-request read: one atomic load, no clock
	// read, no lock. hotTimer empties it when the ticket falls due (a
	// timer that fires after the ticket changed only recomputes); a cache
	// with an injected clock (tests) never fills it, since a timer runs on
	// the real clock. The timer runs on the monotonic clock: after the host
	// was suspended, Hot may serve the ticket for up to the time suspended
	// past its due time, which the stale-ticket retry covers.
	realClock bool
	hot       atomic.Value
	hotTimer  *time.Timer
}

// Stats is what the cache can report about itself, without the ticket.
type Stats struct {
	HasTicket      bool
	FetchedAt      time.Time
	ExpiresAt      time.Time
	LastRefresh    time.Time
	LastRefreshErr string
	Refreshes      int64
	Failures       int64
	Forced         int64
}

type flight struct {
	done     chan struct{}
	rejected string // the ticket this refresh was forced to replace; "" when scheduled
	ticket   Ticket
	err      error
}

// New returns an empty cache that uses now as its clock (time.Now when nil).
// Call Configure before Get.
func New(now func() time.Time) *Cache {
	if now == nil {
		return &Cache{now: time.Now, realClock: true}
	}
	return &Cache{now: now}
}

// Configure sets how the cache fetches and schedules. identity names the
// credentials behind fetch (for example endpoint, app id and a hash of the
// secret): when it changes, the cached ticket is dropped so that no request
// is signed with a ticket of the old credentials. Calling Configure again
// with the same identity only updates fetch and settings.
func (c *Cache) Configure(identity string, fetch FetchFunc, settings Settings) {
	settings = withDefaults(settings)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fetch = fetch
	c.settings = settings
	if c.identity == identity {
		return
	}
	if c.identity != "" {
		c.log("warn", "credentials changed: dropping the cached ticket (if two middlewares share an endpoint and app id with different secrets, they will keep replacing each other's ticket)", nil)
	}
	c.identity = identity
	c.generation++
	c.has = false
	c.current = Ticket{}
	c.setHotLocked()
	c.flight = nil
	c.failures = 0
	c.retryAt = time.Time{}
	c.lastErr = nil
}

func withDefaults(s Settings) Settings {
	if s.RefreshInterval <= 0 {
		s.RefreshInterval = DefaultRefreshInterval
	}
	if s.FetchTimeout <= 0 {
		s.FetchTimeout = DefaultFetchTimeout
	}
	if s.MinBackoff <= 0 {
		s.MinBackoff = DefaultMinBackoff
	}
	if s.MaxBackoff < s.MinBackoff {
		s.MaxBackoff = DefaultMaxBackoff
		if s.MaxBackoff < s.MinBackoff {
			s.MaxBackoff = s.MinBackoff
		}
	}
	if s.MinForcedInterval <= 0 {
		s.MinForcedInterval = DefaultMinForcedInterval
	}
	return s
}

// Get returns a valid ticket. It returns at once when the cached ticket is
// not due; when it is due but still valid it starts a background refresh and
// returns the cached one; it waits only when no valid ticket is cached.
// While backing off after a failure with no valid ticket it fails at once
// with ErrNoTicket.
func (c *Cache) Get(ctx context.Context) (Ticket, error) {
	now := c.now()
	c.mu.Lock()
	if c.has && now.Before(c.refreshAt) {
		t := c.current
		c.mu.Unlock()
		return t, nil
	}
	if c.has && now.Before(c.expiresAt) {
		t := c.current
		if c.flight == nil && !now.Before(c.retryAt) {
			c.startFlightLocked("", now)
		}
		c.mu.Unlock()
		return t, nil
	}
	f := c.flight
	if f == nil {
		if now.Before(c.retryAt) {
			err := c.backingOffErrorLocked(now)
			c.mu.Unlock()
			return Ticket{}, err
		}
		f = c.startFlightLocked("", now)
	}
	c.mu.Unlock()
	return waitFlight(ctx, f)
}

// Value returns the value of a valid ticket, like Get: Hot's value when
// there is one, else Get's.
func (c *Cache) Value(ctx context.Context) (string, error) {
	if v := Hot(c); v != "" {
		return v, nil
	}
	t, err := c.Get(ctx)
	if err != nil {
		return "", err
	}
	return t.Value, nil
}

// Hot returns the cached ticket's value while it is valid and not due for
// refresh, or "" (then call Get or Value, which refresh). It is the plugin's
// per-request read, written for yaegi: a plain function (a method call
// costs about 2 µs more there), one atomic load, no clock and no lock (each
// call into compiled code costs about 0.5 µs there). A timer empties it
// when the ticket falls due.
func Hot(c *Cache) string {
	v, _ := c.hot.Load().(string)
	return v
}

// setHotLocked updates what Hot returns after a change of the ticket or of
// its schedule, and arms the timer that empties it when the ticket falls
// due. c.mu is held.
func (c *Cache) setHotLocked() {
	if !c.has || !c.realClock {
		c.hot.Store("")
		return
	}
	wait := c.hotUntilLocked().Sub(c.now())
	if wait <= 0 {
		c.hot.Store("")
		return
	}
	c.hot.Store(c.current.Value)
	if c.hotTimer == nil {
		c.hotTimer = time.AfterFunc(wait, c.expireHot)
	} else {
		c.hotTimer.Reset(wait)
	}
}

// hotUntilLocked is when the current ticket falls due: its refresh time, or
// its expiry if that comes first. c.mu is held.
func (c *Cache) hotUntilLocked() time.Time {
	if c.expiresAt.Before(c.refreshAt) {
		return c.expiresAt
	}
	return c.refreshAt
}

// expireHot runs on hotTimer: it empties what Hot returns once the ticket is
// due, or re-arms the timer if the schedule moved meanwhile.
func (c *Cache) expireHot() {
	defer func() {
		if r := recover(); r != nil {
			c.hot.Store("") // fail safe: requests go through Get
			c.log("error", "ticket timer failed", map[string]interface{}{"panic": fmt.Sprint(r)})
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setHotLocked()
}

// Invalidate is called when the vendor rejected a request signed with the
// ticket whose value is rejected. Unless a forced refresh happened less than
// MinForcedInterval ago (ErrForcedTooSoon), it stops serving that ticket,
// fetches a new token and ticket (single-flight) and returns the new ticket.
// If the cache already holds another ticket, that one is returned at once.
func (c *Cache) Invalidate(ctx context.Context, rejected string) (Ticket, error) {
	// A refresh already running was either forced for this ticket (wait for
	// it) or scheduled, say a shared store's check that a request of its own
	// started: that one may well bring back the rejected ticket, and then a
	// forced refresh must follow, or the rejection goes unanswered.
	for attempt := 0; ; attempt++ {
		t, joinedScheduled, err := c.invalidateOnce(ctx, rejected)
		if err != nil {
			return Ticket{}, err
		}
		if t.Value != rejected {
			return t, nil
		}
		if !joinedScheduled || attempt > 0 {
			return Ticket{}, ErrForcedTooSoon
		}
	}
}

// invalidateOnce is one round of Invalidate: it forces a refresh unless one
// runs already, and waits for the refresh it forced or joined.
// joinedScheduled reports that it joined a refresh not forced for rejected.
func (c *Cache) invalidateOnce(ctx context.Context, rejected string) (t Ticket, joinedScheduled bool, err error) {
	now := c.now()
	c.mu.Lock()
	if c.has && c.current.Value != rejected && now.Before(c.expiresAt) {
		t = c.current
		c.mu.Unlock()
		return t, false, nil
	}
	f := c.flight
	if f == nil {
		if now.Sub(c.lastForced) < c.settings.MinForcedInterval {
			c.mu.Unlock()
			return Ticket{}, false, ErrForcedTooSoon
		}
		c.lastForced = now
		c.stats.Forced++
		if c.has && c.current.Value == rejected {
			c.has = false
			c.setHotLocked()
		}
		f = c.startFlightLocked(rejected, now)
	}
	c.mu.Unlock()
	t, err = waitFlight(ctx, f)
	return t, f.rejected != rejected, err
}

// Stats returns a snapshot of the cache's state and counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.HasTicket = c.has && c.now().Before(c.expiresAt)
	if c.has {
		s.FetchedAt = c.current.FetchedAt
		s.ExpiresAt = c.expiresAt
	}
	return s
}

// RetryAfterSeconds says when a client that got no ticket should try again:
// the seconds until the next refresh attempt, at least 1.
func (c *Cache) RetryAfterSeconds() int {
	c.mu.Lock()
	wait := c.retryAt.Sub(c.now())
	c.mu.Unlock()
	secs := int((wait + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return secs
}

func (c *Cache) backingOffErrorLocked(now time.Time) error {
	wait := c.retryAt.Sub(now).Round(time.Millisecond)
	if c.lastErr == nil {
		return fmt.Errorf("%w (next attempt in %s)", ErrNoTicket, wait)
	}
	return fmt.Errorf("%w (next attempt in %s; last error: %s)", ErrNoTicket, wait, c.lastErr.Error())
}

// startFlightLocked starts one refresh in the background. c.mu is held.
func (c *Cache) startFlightLocked(rejected string, now time.Time) *flight {
	f := &flight{done: make(chan struct{}), rejected: rejected}
	c.flight = f
	var current Ticket
	if c.has && now.Before(c.expiresAt) {
		current = c.current
	}
	go c.runFlight(f, c.fetch, current, rejected, c.settings.FetchTimeout, c.generation)
	return f
}

func (c *Cache) runFlight(f *flight, fetch FetchFunc, current Ticket, rejected string, timeout time.Duration, generation int64) {
	var ticket Ticket
	var err error
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ticket refresh panicked: %v", r)
		}
		c.finishFlight(f, ticket, err, generation)
	}()
	if fetch == nil {
		err = errors.New("ticket cache used before Configure")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ticket, err = fetch(ctx, current, rejected)
	if err == nil && ticket.Value == "" {
		err = errors.New("ticket source returned an empty ticket")
	}
}

func (c *Cache) finishFlight(f *flight, ticket Ticket, err error, generation int64) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	f.ticket = ticket
	f.err = err
	// Waiters are released last, so that the cache's state and the log line
	// are in place when they return.
	defer close(f.done)
	if c.flight == f {
		c.flight = nil
	}
	if generation != c.generation {
		return // credentials changed while this flight ran
	}
	if errors.Is(err, ErrForcedTooSoon) {
		// Another replica replaced the ticket moments ago and the store
		// says not to replace it again yet: not a failure. Serve what the
		// cache had, if it is still valid.
		if c.current.Value != "" && now.Before(c.expiresAt) {
			c.has = true
			c.setHotLocked()
			// Requests that waited for this refresh get the ticket too.
			f.ticket = c.current
			f.err = nil
		}
		return
	}
	c.stats.LastRefresh = now
	if err != nil {
		if errors.Is(err, ErrStoreUnavailable) && c.has {
			// The shared store cannot be checked: keep serving the ticket
			// to its own expiry, not to its overdue check time.
			unchecked := c.current
			unchecked.CheckAt = time.Time{}
			expiresAt, _ := schedule(unchecked, c.settings.RefreshInterval)
			c.expiresAt = expiresAt
		}
		if ticket.OldTokenSupersededAt.After(c.current.FetchedAt) {
			// Only a token newer than the current ticket's dooms it (a
			// reused token older than it was already dead).
			c.expiresAt = supersededExpiry(c.expiresAt, ticket.OldTokenSupersededAt)
		}
		c.setHotLocked()
		c.failures++
		c.stats.Failures++
		c.lastErr = err
		c.stats.LastRefreshErr = err.Error()
		backoff := backoffFor(c.failures, c.settings.MinBackoff, c.settings.MaxBackoff)
		c.retryAt = now.Add(backoff)
		c.log("error", "ticket refresh failed", map[string]interface{}{
			"error": err.Error(), "failures": c.failures,
			"retryInSeconds": backoff.Seconds(), "haveValidTicket": c.has && now.Before(c.expiresAt),
		})
		return
	}
	changed := !c.has || c.current.Value != ticket.Value
	c.failures = 0
	c.retryAt = time.Time{}
	c.lastErr = nil
	c.stats.LastRefreshErr = ""
	c.has = true
	c.current = ticket
	expiresAt, refreshAt := schedule(ticket, c.settings.RefreshInterval)
	c.expiresAt = expiresAt
	c.refreshAt = refreshAt
	c.setHotLocked()
	if changed {
		c.stats.Refreshes++
		c.log("info", "ticket fetched", map[string]interface{}{
			"ageSeconds":       now.Sub(ticket.FetchedAt).Seconds(),
			"expiresInSeconds": c.expiresAt.Sub(now).Seconds(),
			"refreshInSeconds": c.refreshAt.Sub(now).Seconds(),
			"version":          ticket.Version,
		})
	}
}

// schedule returns when a ticket stops being used and when it is refreshed:
// at RefreshInterval of age, at three quarters of its lifetime, or when a
// newer token superseded it, whichever comes first; with a CheckAt (a
// shared store's), at CheckAt.
func schedule(t Ticket, refreshInterval time.Duration) (expiresAt, refreshAt time.Time) {
	margin := t.Lifetime / 10
	if margin > maxExpiryMargin {
		margin = maxExpiryMargin
	}
	expiresAt = t.FetchedAt.Add(t.Lifetime - margin)
	refreshAt = t.FetchedAt.Add(refreshInterval)
	if early := t.FetchedAt.Add(t.Lifetime * 3 / 4); early.Before(refreshAt) {
		refreshAt = early
	}
	if !t.OldTokenSupersededAt.IsZero() {
		// A newer token of the app id exists (a shared record marked by
		// the replica that got it): due at once, and dead after the grace.
		expiresAt = supersededExpiry(expiresAt, t.OldTokenSupersededAt)
		if t.OldTokenSupersededAt.Before(refreshAt) {
			refreshAt = t.OldTokenSupersededAt
		}
	}
	if !t.CheckAt.IsZero() {
		// A shared store decides when its record is due: come back at
		// CheckAt, not earlier (an already due record that another replica
		// is renewing would otherwise send every request to the store).
		refreshAt = t.CheckAt
		if overdue := t.CheckAt.Add(maxCheckOverdue); overdue.Before(expiresAt) {
			expiresAt = overdue
		}
	}
	return expiresAt, refreshAt
}

// supersededExpiry returns expiresAt, or earlier the end of the grace a
// ticket has after a newer token of its app id was issued at supersededAt.
func supersededExpiry(expiresAt, supersededAt time.Time) time.Time {
	if dies := supersededAt.Add(supersededGrace); dies.Before(expiresAt) {
		return dies
	}
	return expiresAt
}

// backoffFor returns the wait after the n-th consecutive failure: lo
// doubled n-1 times, capped at hi, then jittered to between half and all of it.
func backoffFor(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d = d * 2
	}
	if d > hi {
		d = hi
	}
	half := d / 2
	return half + time.Duration(rand.Int63n(int64(half)+1))
}

func waitFlight(ctx context.Context, f *flight) (Ticket, error) {
	select {
	case <-f.done:
		return f.ticket, f.err
	case <-ctx.Done():
		return Ticket{}, fmt.Errorf("%w: gave up waiting for the ticket refresh: %s", ErrTimeout, ctx.Err().Error())
	}
}

func (c *Cache) log(level, msg string, fields map[string]interface{}) {
	if c.settings.Log != nil {
		c.settings.Log(level, msg, fields)
	}
}
