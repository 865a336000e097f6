package ticketcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
// copy, so requests never touch the store. Shared keeps no state of its
// own: a new one can be made on every configuration reload.
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
	// StoreTimeout bounds the store calls made after the vendor answered
	// (writing the record, releasing the lease), which must not depend on
	// what is left of the refresh's own deadline.
	StoreTimeout time.Duration
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
}

// record is the JSON stored under RecordKey. Lifetimes are kept as
// durations from FetchedAt, never as the vendor's expire_time.
// SupersededAtMilli, when set, says that a replica got a newer access token
// at that time but no ticket from it: the vendor ends the record's ticket
// about a minute later, so every replica stops using it then.
type record struct {
	Version           int64  `json:"version"`
	Ticket            string `json:"ticket"`
	FetchedAtMilli    int64  `json:"fetchedAtMs"`
	LifetimeMilli     int64  `json:"lifetimeMs"`
	SupersededAtMilli int64  `json:"supersededAtMs,omitempty"`
	Writer            string `json:"writer"`
}

// Fetch is a FetchFunc backed by the store.
func (s *Shared) Fetch(ctx context.Context, current Ticket, rejected string) (Ticket, error) {
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
			return s.storeFailed(ctx, err, current, rejected)
		}
		// A record older than this replica's own ticket is dead: the token
		// behind this replica's ticket (fetched while the store was down,
		// or whose record could not be written) superseded it. Write this
		// one back instead, under the lease.
		mine := found && newerThan(current, t, rejected)
		if found && !mine && s.fresh(t, now, rejected) {
			return withCheck(t, now, s.CheckInterval), nil
		}
		if found && !mine && rejected != "" && t.Value == rejected && now.Sub(t.FetchedAt) < s.MinForcedInterval {
			return Ticket{}, ErrForcedTooSoon
		}
		won, err := s.Store.SetNX(ctx, s.LeaseKey, s.Owner, s.LeaseTTL)
		if err != nil {
			return s.storeFailed(ctx, err, current, rejected)
		}
		if won {
			return s.refreshHoldingLease(ctx, current, rejected)
		}
		// Another replica holds the lease and is refreshing. Keep serving a
		// still-valid ticket, and look again soon.
		if mine && now.Before(expiry(current)) {
			return withCheck(current, now, poll), nil
		}
		if found && !mine && t.Value != rejected && now.Before(expiry(t)) {
			return withCheck(t, now, poll), nil
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
// fetch from the vendor and write a new version. When the record is gone
// (Redis restarted empty) but this replica's ticket is still good, that
// ticket is written back instead: a new token would kill every replica's.
func (s *Shared) refreshHoldingLease(ctx context.Context, current Ticket, rejected string) (Ticket, error) {
	defer s.releaseLease()
	now := s.now()
	t, found, err := s.read(ctx)
	if err != nil {
		return s.storeFailed(ctx, err, current, rejected)
	}
	mine := found && newerThan(current, t, rejected)
	if found && !mine && s.fresh(t, now, rejected) {
		return withCheck(t, now, s.CheckInterval), nil
	}
	current.CheckAt = time.Time{} // when to look at the store again is not its freshness
	if (!found || mine) && current.Value != "" && s.fresh(current, now, rejected) {
		current.Version = t.Version + 1
		if err := s.write(current); err != nil {
			return Ticket{}, fmt.Errorf("%w: %s", ErrStoreUnavailable, err.Error())
		}
		if found {
			s.log("info", "wrote this replica's newer ticket over the shared record (its token superseded the record's)", map[string]interface{}{"version": current.Version})
		} else {
			s.log("info", "wrote this replica's ticket back to the empty shared store", nil)
		}
		return withCheck(current, now, s.CheckInterval), nil
	}
	fetched, err := s.Vendor(ctx)
	if err != nil {
		if found && fetched.OldTokenSupersededAt.After(t.FetchedAt) && t.OldTokenSupersededAt.IsZero() {
			// A new token but no ticket: the record's ticket dies about a
			// minute from now. Say so in the record, so that every replica
			// stops using it in time, not only this one. (A token older
			// than the record's, kept from an earlier failure and refused
			// now, dooms nothing.)
			t.OldTokenSupersededAt = fetched.OldTokenSupersededAt
			t.Version++
			if werr := s.write(t); werr != nil {
				s.log("warn", "cannot mark the shared record as superseded", map[string]interface{}{"error": werr.Error()})
			}
		}
		return fetched, err
	}
	fetched.Version = 1
	if found {
		fetched.Version = t.Version + 1
	}
	if err := s.write(fetched); err != nil {
		// The ticket is good; the others will not see it and may fetch
		// their own. Say so once per occurrence. Version 0 marks it as
		// never stored: it is written back at the next check if the record
		// is still older (newerThan).
		s.log("error", "cannot write the ticket record to the shared store", map[string]interface{}{"error": err.Error()})
		fetched.Version = 0
	}
	s.log("info", "fetched a new token and ticket for the cluster", map[string]interface{}{"version": fetched.Version, "forced": rejected != ""})
	return withCheck(fetched, s.now(), s.CheckInterval), nil
}

func (s *Shared) releaseLease() {
	ctx, cancel := context.WithTimeout(context.Background(), s.storeTimeout())
	defer cancel()
	if _, err := s.Store.DeleteIfEqual(ctx, s.LeaseKey, s.Owner); err != nil {
		s.log("warn", "cannot release the refresh lease; it expires by itself", map[string]interface{}{"error": err.Error(), "leaseTTLSeconds": s.LeaseTTL.Seconds()})
	}
}

// storeFailed applies the failure policy. While the cache still holds a
// valid ticket, the error is returned and the cache keeps serving that
// ticket. With none left, the ticket is fetched locally or the request fails.
func (s *Shared) storeFailed(ctx context.Context, err error, current Ticket, rejected string) (Ticket, error) {
	stillValid := current.Value != "" && current.Value != rejected
	if stillValid || !s.FetchLocallyOnStoreFailure {
		return Ticket{}, fmt.Errorf("%w: %s", ErrStoreUnavailable, err.Error())
	}
	s.log("warn", "shared store unavailable and no valid ticket left: fetching one locally", map[string]interface{}{"error": err.Error()})
	t, ferr := s.Vendor(ctx)
	if ferr != nil {
		return t, ferr
	}
	return withCheck(t, s.now(), s.CheckInterval), nil
}

// fresh reports whether t can be handed out as is.
func (s *Shared) fresh(t Ticket, now time.Time, rejected string) bool {
	if t.Value == rejected {
		return false
	}
	_, refreshAt := schedule(t, s.RefreshInterval)
	return now.Before(refreshAt)
}

// withCheck asks the cache to come back to the store after check.
func withCheck(t Ticket, now time.Time, check time.Duration) Ticket {
	t.CheckAt = now.Add(check)
	return t
}

func (s *Shared) read(ctx context.Context) (Ticket, bool, error) {
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
	if r.SupersededAtMilli > 0 {
		t.OldTokenSupersededAt = time.UnixMilli(r.SupersededAtMilli)
	}
	return t, true, nil
}

// write stores t as the record, with a deadline of its own: the refresh's
// context may be nearly spent by the vendor calls, and a record that is not
// written makes the other replicas fetch tokens of their own.
func (s *Shared) write(t Ticket) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.storeTimeout())
	defer cancel()
	var r record
	r.Version = t.Version
	r.Ticket = t.Value
	r.FetchedAtMilli = t.FetchedAt.UnixMilli()
	r.LifetimeMilli = t.Lifetime.Milliseconds()
	r.Writer = s.Owner
	if !t.OldTokenSupersededAt.IsZero() {
		r.SupersededAtMilli = t.OldTokenSupersededAt.UnixMilli()
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ttl := t.FetchedAt.Add(t.Lifetime).Sub(s.now())
	if ttl <= 0 {
		return errors.New("ticket already expired")
	}
	return s.Store.Set(ctx, s.RecordKey, string(data), ttl)
}

func (s *Shared) storeTimeout() time.Duration {
	if s.StoreTimeout > 0 {
		return s.StoreTimeout
	}
	return time.Second
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

// newerThan reports whether mine, the cache's ticket, was never stored
// (Version 0: fetched while the store was unreachable, or its record write
// failed), is still usable, and comes from a later access token than the
// record's ticket, which that token superseded. Once written back it has a
// version, so a replica whose clock runs ahead cannot keep overriding
// newer records with it.
func newerThan(mine, record Ticket, rejected string) bool {
	return mine.Version == 0 && mine.Value != "" && mine.Value != rejected && mine.Value != record.Value && mine.FetchedAt.After(record.FetchedAt)
}

// expiry is when the cache stops using t.
func expiry(t Ticket) time.Time {
	e, _ := schedule(t, t.Lifetime)
	return e
}
