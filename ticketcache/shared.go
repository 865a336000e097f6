package ticketcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Store is what Shared needs from a shared key-value store (Redis).
// *redisclient.Client implements it.
type Store interface {
	Get(ctx context.Context, key string) (value string, found bool, err error)
	Set(ctx context.Context, key string, value string, ttl time.Duration) error
	SetNX(ctx context.Context, key string, value string, ttl time.Duration) (acquired bool, err error)
	DeleteIfEqual(ctx context.Context, key string, value string) (deleted bool, err error)
}

// ErrStoreUnavailable: the shared store failed and the failure policy says
// not to fetch a ticket locally.
var ErrStoreUnavailable = errors.New("shared ticket store unavailable")

// Shared coordinates replicas through a Store so that one access token and
// ticket per app id serve the whole cluster (SPEC.md section 7): a lease
// elects the one replica that refreshes, the winner re-reads the record
// before it asks the vendor, and every replica re-reads the record every
// CheckInterval, so a replica signs with a superseded ticket for at most
// CheckInterval (plus one store round trip) after the new record is written,
// well within the vendor's one-minute overlap.
//
// Use its Fetch method as the Cache's FetchFunc; the Cache keeps a local
// copy, so requests never touch the store.
type Shared struct {
	Store Store
	// RecordKey holds the versioned record; LeaseKey the refresh lease.
	RecordKey string
	LeaseKey  string
	// Owner identifies this replica in the lease (random per process).
	Owner string
	// Vendor fetches a new token and ticket from the vendor.
	Vendor func(ctx context.Context) (Ticket, error)
	// RefreshInterval, as for Cache: the record age at which it is renewed.
	RefreshInterval time.Duration
	// CheckInterval is how often the record is re-read.
	CheckInterval time.Duration
	// LeaseTTL bounds how long a dead lease holder blocks others.
	LeaseTTL time.Duration
	// MinForcedInterval rate-limits forced refreshes across the cluster: a
	// record younger than this is not replaced because a replica saw it
	// rejected.
	MinForcedInterval time.Duration
	// FetchLocallyOnStoreFailure chooses the failure policy: when the store
	// fails and no valid ticket is left, fetch one from the vendor directly
	// (true) or fail with ErrStoreUnavailable (false).
	FetchLocallyOnStoreFailure bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives events; nil discards them.
	Log LogFunc

	mu       sync.Mutex
	returned Ticket // the last ticket handed to the cache

	// StoreCalls counts store round trips, for the figures in BENCHMARKS.md.
	StoreCalls atomic.Int64
}

// record is the JSON stored under RecordKey. Lifetimes are kept as
// durations from FetchedAt, never as the vendor's expire_time.
type record struct {
	Version        int64  `json:"version"`
	Ticket         string `json:"ticket"`
	FetchedAtMilli int64  `json:"fetchedAtMs"`
	LifetimeMilli  int64  `json:"lifetimeMs"`
	Writer         string `json:"writer"`
}

// Fetch is a FetchFunc backed by the store.
func (s *Shared) Fetch(ctx context.Context, rejected string) (Ticket, error) {
	poll := s.CheckInterval / 4
	if poll > 200*time.Millisecond {
		poll = 200 * time.Millisecond
	}
	if poll < 10*time.Millisecond {
		poll = 10 * time.Millisecond
	}
	for {
		now := s.now()
		t, found, err := s.read(ctx)
		if err != nil {
			return s.storeFailed(ctx, err, rejected)
		}
		if found && s.fresh(t, now, rejected) {
			return s.hand(t, now, s.CheckInterval), nil
		}
		if found && rejected != "" && t.Value == rejected && now.Sub(t.FetchedAt) < s.MinForcedInterval {
			return Ticket{}, ErrForcedTooSoon
		}
		won, err := s.Store.SetNX(ctx, s.LeaseKey, s.Owner, s.LeaseTTL)
		s.StoreCalls.Add(1)
		if err != nil {
			return s.storeFailed(ctx, err, rejected)
		}
		if won {
			return s.refreshHoldingLease(ctx, rejected)
		}
		// Another replica holds the lease and is refreshing. Keep serving a
		// still-valid record, and look again soon.
		if found && t.Value != rejected && now.Before(expiry(t)) {
			return s.hand(t, now, poll), nil
		}
		select {
		case <-ctx.Done():
			return Ticket{}, fmt.Errorf("%w: waited for another replica's refresh: %s", ErrTimeout, ctx.Err().Error())
		case <-time.After(poll):
		}
	}
}

// refreshHoldingLease runs with the lease held: re-read the record (another
// replica may have written it just before), and only if it is still due,
// fetch from the vendor and write a new version.
func (s *Shared) refreshHoldingLease(ctx context.Context, rejected string) (Ticket, error) {
	defer s.releaseLease()
	now := s.now()
	t, found, err := s.read(ctx)
	if err != nil {
		return s.storeFailed(ctx, err, rejected)
	}
	if found && s.fresh(t, now, rejected) {
		return s.hand(t, now, s.CheckInterval), nil
	}
	fetched, err := s.Vendor(ctx)
	if err != nil {
		return Ticket{}, err
	}
	fetched.Version = 1
	if found {
		fetched.Version = t.Version + 1
	}
	if err := s.write(ctx, fetched); err != nil {
		// The ticket is good; the others will not see it and may fetch
		// their own. Say so once per occurrence.
		s.log("error", "cannot write the ticket record to the shared store", map[string]interface{}{"error": err.Error()})
	}
	s.log("info", "fetched a new token and ticket for the cluster", map[string]interface{}{"version": fetched.Version, "forced": rejected != ""})
	return s.hand(fetched, s.now(), s.CheckInterval), nil
}

func (s *Shared) releaseLease() {
	ctx, cancel := context.WithTimeout(context.Background(), s.LeaseTTL)
	defer cancel()
	s.StoreCalls.Add(1)
	if _, err := s.Store.DeleteIfEqual(ctx, s.LeaseKey, s.Owner); err != nil {
		s.log("warn", "cannot release the refresh lease; it expires by itself", map[string]interface{}{"error": err.Error(), "leaseTTLSeconds": s.LeaseTTL.Seconds()})
	}
}

// storeFailed applies the failure policy. While the cache still holds a
// valid ticket, the error is returned and the cache keeps serving that
// ticket. With none left, the ticket is fetched locally or the request fails.
func (s *Shared) storeFailed(ctx context.Context, err error, rejected string) (Ticket, error) {
	now := s.now()
	s.mu.Lock()
	last := s.returned
	s.mu.Unlock()
	stillValid := last.Value != "" && last.Value != rejected && now.Before(expiry(last))
	if stillValid || !s.FetchLocallyOnStoreFailure {
		return Ticket{}, fmt.Errorf("%w: %s", ErrStoreUnavailable, err.Error())
	}
	s.log("warn", "shared store unavailable and no valid ticket left: fetching one locally", map[string]interface{}{"error": err.Error()})
	t, ferr := s.Vendor(ctx)
	if ferr != nil {
		return Ticket{}, ferr
	}
	return s.hand(t, now, s.CheckInterval), nil
}

// fresh reports whether t can be handed out as is.
func (s *Shared) fresh(t Ticket, now time.Time, rejected string) bool {
	if t.Value == rejected {
		return false
	}
	_, refreshAt := schedule(t, s.RefreshInterval)
	return now.Before(refreshAt)
}

// hand records t as the replica's current ticket and asks the cache to come
// back after check.
func (s *Shared) hand(t Ticket, now time.Time, check time.Duration) Ticket {
	t.CheckAt = now.Add(check)
	s.mu.Lock()
	s.returned = t
	s.mu.Unlock()
	return t
}

func (s *Shared) read(ctx context.Context) (Ticket, bool, error) {
	s.StoreCalls.Add(1)
	raw, found, err := s.Store.Get(ctx, s.RecordKey)
	if err != nil || !found {
		return Ticket{}, false, err
	}
	var r record
	if json.Unmarshal([]byte(raw), &r) != nil || r.Ticket == "" || r.LifetimeMilli <= 0 {
		s.log("warn", "ignoring an unreadable ticket record in the shared store", nil)
		return Ticket{}, false, nil
	}
	var t Ticket
	t.Value = r.Ticket
	t.FetchedAt = time.UnixMilli(r.FetchedAtMilli)
	t.Lifetime = time.Duration(r.LifetimeMilli) * time.Millisecond
	t.Version = r.Version
	return t, true, nil
}

func (s *Shared) write(ctx context.Context, t Ticket) error {
	var r record
	r.Version = t.Version
	r.Ticket = t.Value
	r.FetchedAtMilli = t.FetchedAt.UnixMilli()
	r.LifetimeMilli = t.Lifetime.Milliseconds()
	r.Writer = s.Owner
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	s.StoreCalls.Add(1)
	return s.Store.Set(ctx, s.RecordKey, string(data), t.Lifetime)
}

func (s *Shared) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Shared) log(level, msg string, fields map[string]interface{}) {
	if s.Log != nil {
		s.Log(level, msg, fields)
	}
}

// expiry is when the cache stops using t.
func expiry(t Ticket) time.Time {
	e, _ := schedule(t, t.Lifetime)
	return e
}
