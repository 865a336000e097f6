package ticketcache

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kycgate/faceidsigner/faceidtest"
	"github.com/kycgate/faceidsigner/redisclient"
	"github.com/kycgate/faceidsigner/redisclient/redistest"
	"github.com/kycgate/faceidsigner/signer"
)

func TestMain(m *testing.M) { redistest.Main(m) }

var keySeq atomic.Int64

// keyRun tells this test process's keys from those of earlier runs against
// the same Redis (FACEIDSIGNER_REDIS_ADDR outlives a run; records live an
// hour).
var keyRun = strconv.FormatInt(time.Now().UnixNano(), 36)

// replicaSet is a cluster of in-process "replicas", each with its own Cache
// and Shared source, sharing one Redis and one emulator.
type replicaSet struct {
	emu    *faceidtest.Server
	store  *redisclient.Client
	prefix string
	caches []*Cache
	shared []*Shared
}

type clusterOptions struct {
	replicas        int
	addr            string
	refreshInterval time.Duration
	checkInterval   time.Duration
	leaseTTL        time.Duration
	fetchLocally    bool
}

func newCluster(t *testing.T, o clusterOptions) *replicaSet {
	t.Helper()
	if o.addr == "" {
		o.addr = redistest.Shared(t)
	}
	if o.leaseTTL == 0 {
		o.leaseTTL = 3 * time.Second
	}
	emu := faceidtest.NewServer()
	t.Cleanup(emu.Close)
	emu.AddApp(testAppID, testSecret)
	store := redisclient.New(redisclient.Options{Address: o.addr, Timeout: 300 * time.Millisecond})
	t.Cleanup(func() { _ = store.Close() })
	rs := &replicaSet{emu: emu, store: store, prefix: "test:" + keyRun + ":" + t.Name() + ":" + strconv.FormatInt(keySeq.Add(1), 10)}
	for i := 0; i < o.replicas; i++ {
		vendor := &Client{Endpoint: emu.URL, AppID: testAppID, Secret: testSecret, Timeout: time.Second}
		sh := &Shared{
			Store: store, RecordKey: rs.prefix + ":record", LeaseKey: rs.prefix + ":lease",
			Owner: "replica-" + strconv.Itoa(i), Vendor: vendor.Fetch,
			RefreshInterval: o.refreshInterval, CheckInterval: o.checkInterval, LeaseTTL: o.leaseTTL,
			MinForcedInterval: time.Second, FetchLocallyOnStoreFailure: o.fetchLocally, StoreTimeout: 300 * time.Millisecond,
		}
		c := New(nil)
		c.Configure("id", sh.Fetch, Settings{
			RefreshInterval: o.refreshInterval, MinBackoff: 20 * time.Millisecond, MaxBackoff: o.checkInterval,
			FetchTimeout: 3 * time.Second, MinForcedInterval: time.Second,
		})
		rs.caches = append(rs.caches, c)
		rs.shared = append(rs.shared, sh)
	}
	return rs
}

// query signs a queryfacerecord call with ticket and sends it to the
// emulator, returning the vendor code.
func (rs *replicaSet) query(t *testing.T, ticket string) string {
	t.Helper()
	nonce, _ := signer.NewNonce()
	sign := signer.Sign(testAppID, "unknownOrder1", "1.0.0", ticket, nonce)
	body := `{"appId":"` + testAppID + `","version":"1.0.0","nonce":"` + nonce + `","orderNo":"unknownOrder1","sign":"` + sign + `"}`
	resp, err := rs.emu.Client().Post(rs.emu.URL+"/api/v2/base/queryfacerecord?orderNo=unknownOrder1", "application/json", stringsReader(body))
	if err != nil {
		t.Error(err)
		return ""
	}
	defer resp.Body.Close()
	var answer struct{ Code string }
	_ = decodeJSON(resp.Body, &answer)
	return answer.Code
}

func TestSharedOneFetchForTheCluster(t *testing.T) {
	rs := newCluster(t, clusterOptions{replicas: 3, refreshInterval: 20 * time.Minute, checkInterval: time.Second})
	var wg sync.WaitGroup
	values := make([]string, 30)
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tk, err := rs.caches[i%3].Get(context.Background())
			if err != nil {
				t.Error(err)
			}
			values[i] = tk.Value
		}(i)
	}
	wg.Wait()
	for _, v := range values {
		if v != values[0] {
			t.Fatal("replicas got different tickets")
		}
	}
	if rs.emu.TokenCalls() != 1 || rs.emu.TicketCalls() != 1 {
		t.Fatalf("token calls %d ticket calls %d; want 1 and 1 for the whole cluster", rs.emu.TokenCalls(), rs.emu.TicketCalls())
	}
	raw, err := redistest.Do(redistest.Shared(t), "GET", rs.prefix+":record")
	if err != nil || !containsAll(raw, `"version":1`, `"fetchedAtMs"`, `"lifetimeMs":3600000`) || containsAll(raw, "expire_time") {
		t.Fatalf("record %q, %v", raw, err)
	}
}

// TestSharedSteadyLoadNoRejections is the heart of SPEC.md section 7 on a
// scaled clock: a 400 ms overlap, a 700 ms refresh interval, three
// replicas under load for five periods.
func TestSharedSteadyLoadNoRejections(t *testing.T) {
	rs := newCluster(t, clusterOptions{replicas: 3, refreshInterval: 700 * time.Millisecond, checkInterval: 50 * time.Millisecond})
	rs.emu.SetOverlap(400 * time.Millisecond)
	codes := runLoad(t, rs, 3500*time.Millisecond)
	if codes["400101"] != 0 {
		t.Fatalf("%d answers were 400101 (codes %v)", codes["400101"], codes)
	}
	if codes["66660011"] < 100 {
		t.Fatalf("too little load to prove anything: %v", codes)
	}
	// One fetch per period for the whole cluster: 3.5 s / 0.7 s = 5 periods, plus the first.
	if n := rs.emu.TokenCalls(); n < 5 || n > 7 {
		t.Fatalf("token calls %d, want about 6 (one per refresh period)", n)
	}
}

// TestWithoutSharedStoreReplicasBreakEachOther is the control: the same
// load with each replica fetching on its own produces rejections, so the
// test above can fail.
func TestWithoutSharedStoreReplicasBreakEachOther(t *testing.T) {
	rs := newCluster(t, clusterOptions{replicas: 3, refreshInterval: 700 * time.Millisecond, checkInterval: 50 * time.Millisecond})
	rs.emu.SetOverlap(400 * time.Millisecond)
	for i, c := range rs.caches {
		vendor := &Client{Endpoint: rs.emu.URL, AppID: testAppID, Secret: testSecret, Timeout: time.Second}
		c.Configure("local-"+strconv.Itoa(i), func(ctx context.Context, current Ticket, rejected string) (Ticket, error) { return vendor.Fetch(ctx) },
			Settings{RefreshInterval: 700 * time.Millisecond})
		// Stagger the replicas as real processes would be.
		_, _ = c.Get(context.Background())
		time.Sleep(230 * time.Millisecond)
	}
	codes := runLoad(t, rs, 3500*time.Millisecond)
	if codes["400101"] == 0 {
		t.Fatalf("uncoordinated replicas produced no 400101 (codes %v): the scenario proves nothing", codes)
	}
}

// runLoad has four workers per replica get a ticket and query the emulator
// until d has passed, and counts the answers' codes.
func runLoad(t *testing.T, rs *replicaSet, d time.Duration) map[string]int {
	var mu sync.Mutex
	codes := map[string]int{}
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := 0; i < len(rs.caches)*4; i++ {
		c := rs.caches[i%len(rs.caches)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				tk, err := c.Get(context.Background())
				code := "no ticket"
				if err == nil {
					code = rs.query(t, tk.Value)
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return codes
}

func TestSharedForcedRefreshIsClusterWide(t *testing.T) {
	rs := newCluster(t, clusterOptions{replicas: 2, refreshInterval: 20 * time.Minute, checkInterval: 100 * time.Millisecond})
	a, b := rs.caches[0], rs.caches[1]
	first, _ := a.Get(context.Background())
	if tk, _ := b.Get(context.Background()); tk.Value != first.Value {
		t.Fatal("replicas differ")
	}
	time.Sleep(1100 * time.Millisecond) // past MinForcedInterval (1 s)
	rs.emu.RevokeTokens(testAppID)
	fresh, err := a.Invalidate(context.Background(), first.Value)
	if err != nil || fresh.Value == first.Value {
		t.Fatalf("Invalidate = %v", err)
	}
	// B rejects the same old ticket: it must take A's new one, not fetch.
	other, err := b.Invalidate(context.Background(), first.Value)
	if err != nil || other.Value != fresh.Value || rs.emu.TokenCalls() != 2 {
		t.Fatalf("second replica: %v, same=%v, token calls %d", err, other.Value == fresh.Value, rs.emu.TokenCalls())
	}
}

func TestSharedDeadLeaseHolderExpires(t *testing.T) {
	rs := newCluster(t, clusterOptions{replicas: 1, refreshInterval: 20 * time.Minute, checkInterval: 100 * time.Millisecond, leaseTTL: time.Second})
	// A replica took the lease and died before writing the record.
	if _, err := redistest.Do(redistest.Shared(t), "SET", rs.prefix+":lease", "dead-replica", "PX", "600"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	tk, err := rs.caches[0].Get(ctx)
	if err != nil || tk.Value == "" {
		t.Fatalf("Get after a dead lease holder: %v", err)
	}
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Fatalf("fetched after %s while another replica held the lease", waited)
	}
	if lease, err := redistest.Do(redistest.Shared(t), "GET", rs.prefix+":lease"); !errors.Is(err, redistest.ErrNil) {
		t.Fatalf("lease not released after the refresh: %q %v", lease, err)
	}
}

func TestSharedRedisFailurePolicies(t *testing.T) {
	for _, local := range []bool{true, false} {
		srv := redistest.Start(t)
		rs := newCluster(t, clusterOptions{replicas: 1, addr: srv.Addr(), refreshInterval: 20 * time.Minute, checkInterval: 50 * time.Millisecond, fetchLocally: local})
		rs.emu.SetLifetimes(2*time.Second, 2*time.Second) // expires (minus margin) at 1.8 s
		c := rs.caches[0]
		first, err := c.Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		srv.Kill()
		// While the ticket is valid, Redis being down changes nothing.
		for i := 0; i < 10; i++ {
			start := time.Now()
			tk, err := c.Get(context.Background())
			if err != nil || tk.Value != first.Value || time.Since(start) > 100*time.Millisecond {
				t.Fatalf("local=%v: with a valid ticket and Redis down: %v", local, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(900 * time.Millisecond) // expired
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		tk, err := c.Get(ctx)
		cancel()
		if local && (err != nil || tk.Value == first.Value) {
			t.Fatalf("policy local: %v", err)
		}
		if !local && !errors.Is(err, ErrStoreUnavailable) && !errors.Is(err, ErrNoTicket) {
			t.Fatalf("policy fail: err = %v, want ErrStoreUnavailable", err)
		}
		// Recovery needs no restart of the plugin.
		srv.Restart()
		deadline := time.Now().Add(3 * time.Second)
		for {
			tk, err = c.Get(context.Background())
			if err == nil {
				if raw, rerr := srv.Do("GET", rs.prefix+":record"); rerr == nil && raw != "" {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("local=%v: no recovery after Redis restarted: %v", local, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func TestSharedRedisRestartedEmpty(t *testing.T) {
	srv := redistest.Start(t)
	rs := newCluster(t, clusterOptions{replicas: 2, addr: srv.Addr(), refreshInterval: 20 * time.Minute, checkInterval: 50 * time.Millisecond})
	first, _ := rs.caches[0].Get(context.Background())
	_, _ = rs.caches[1].Get(context.Background())
	srv.Restart() // empty: no record, no lease
	// The replicas write their still-valid ticket back instead of fetching
	// a new token, which would kill everyone's ticket a minute later.
	deadline := time.Now().Add(3 * time.Second)
	for {
		for _, c := range rs.caches {
			if tk, err := c.Get(context.Background()); err != nil || tk.Value != first.Value {
				t.Fatalf("after Redis lost its data: %v (same ticket: %v)", err, tk.Value == first.Value)
			}
		}
		if raw, err := srv.Do("GET", rs.prefix+":record"); err == nil && strings.Contains(raw, first.Value) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the record was not written back after Redis lost its data")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := rs.emu.TokenCalls(); n != 1 {
		t.Fatalf("token calls %d, want 1 (no refetch for an empty store)", n)
	}
}

func TestSharedRateLimitedForcedRefreshKeepsServing(t *testing.T) {
	rs := newCluster(t, clusterOptions{replicas: 2, refreshInterval: 20 * time.Minute, checkInterval: 100 * time.Millisecond})
	first, _ := rs.caches[0].Get(context.Background())
	_, _ = rs.caches[1].Get(context.Background())
	// A 400101 right after the record was written: the shared store says
	// not to replace it yet. The replica must keep serving, not back off.
	if _, err := rs.caches[1].Invalidate(context.Background(), first.Value); !errors.Is(err, ErrForcedTooSoon) {
		t.Fatalf("Invalidate = %v, want ErrForcedTooSoon", err)
	}
	if v, err := rs.caches[1].Value(context.Background()); err != nil || v != first.Value {
		t.Fatalf("after a rate-limited forced refresh: %v", err)
	}
	if s := rs.caches[1].Stats(); s.Failures != 0 {
		t.Fatalf("a rate-limited forced refresh counted as a failure: %+v", s)
	}
}

func TestSharedIdleReplicaChecksBeforeSigning(t *testing.T) {
	clock := newFakeClock()
	rs := newCluster(t, clusterOptions{replicas: 1, refreshInterval: 20 * time.Minute, checkInterval: time.Second})
	c := New(clock.Now)
	sh := rs.shared[0]
	c.Configure("idle", sh.Fetch, Settings{RefreshInterval: 20 * time.Minute})
	sh.Now = clock.Now
	first, err := c.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Another replica replaces the record while this one is idle.
	if _, err := redistest.Do(redistest.Shared(t), "SET", rs.prefix+":record",
		`{"version":9,"ticket":"NEWER","fetchedAtMs":`+strconv.FormatInt(clock.Now().UnixMilli(), 10)+`,"lifetimeMs":3600000}`); err != nil {
		t.Fatal(err)
	}
	clock.Advance(40 * time.Second) // past CheckAt + 30 s
	tk, err := c.Get(context.Background())
	if err != nil || tk.Value != "NEWER" {
		t.Fatalf("idle replica signed with %q (first %q), err %v; want the newer record", tk.Value, first.Value, err)
	}
}

func TestSharedIgnoresUnreadableRecord(t *testing.T) {
	rs := newCluster(t, clusterOptions{replicas: 1, refreshInterval: 20 * time.Minute, checkInterval: time.Second})
	if _, err := redistest.Do(redistest.Shared(t), "SET", rs.prefix+":record", "{not json"); err != nil {
		t.Fatal(err)
	}
	if tk, err := rs.caches[0].Get(context.Background()); err != nil || tk.Value == "" {
		t.Fatalf("Get with a corrupt record: %v", err)
	}
	if rs.emu.TokenCalls() != 1 {
		t.Fatal("corrupt record not replaced by a fetch")
	}
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

func decodeJSON(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestSharedOutageKeepsServingTheValidTicket: with Redis down, the store
// cannot be checked, but the ticket (valid for an hour) is served to its
// own expiry: no 503s and no local token fetches while it lasts.
func TestSharedOutageKeepsServingTheValidTicket(t *testing.T) {
	for _, local := range []bool{true, false} {
		srv := redistest.Start(t)
		rs := newCluster(t, clusterOptions{replicas: 1, addr: srv.Addr(), refreshInterval: 20 * time.Minute, checkInterval: 10 * time.Second, fetchLocally: local})
		clock := newFakeClock()
		c := New(clock.Now)
		sh := rs.shared[0]
		sh.Now = clock.Now
		c.Configure("outage", sh.Fetch, Settings{RefreshInterval: 20 * time.Minute, MinBackoff: time.Second, MaxBackoff: 10 * time.Second})
		first, err := c.Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		srv.Kill()
		for i := 0; i < 30; i++ { // five minutes
			clock.Advance(10 * time.Second)
			failures := c.Stats().Failures
			tk, err := c.Get(context.Background())
			if err != nil || tk.Value != first.Value {
				t.Fatalf("local=%v, %ds into the outage: %q %v", local, (i+1)*10, tk.Value, err)
			}
			waitFor(t, "the failed check", func() bool { return c.Stats().Failures > failures })
		}
		if n := rs.emu.TokenCalls(); n != 1 {
			t.Fatalf("local=%v: %d token calls during the outage, want none beyond the first", local, n-1)
		}
	}
}

// countingStore counts the record reads of a real store.
type countingStore struct {
	Store
	gets atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, key string) (string, bool, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, key)
}

// TestSharedDueRecordBeingRenewedIsNotPolledPerRequest: while another
// replica holds the lease to renew a due record, requests are served from
// the copy and the store is read again only at the poll interval.
func TestSharedDueRecordBeingRenewedIsNotPolledPerRequest(t *testing.T) {
	rs := newCluster(t, clusterOptions{replicas: 1, refreshInterval: 20 * time.Minute, checkInterval: time.Second})
	clock := newFakeClock()
	c := New(clock.Now)
	sh := rs.shared[0]
	sh.Now = clock.Now
	store := &countingStore{Store: sh.Store}
	sh.Store = store
	vendor := &Client{Endpoint: rs.emu.URL, AppID: testAppID, Secret: testSecret, Timeout: time.Second, Now: clock.Now}
	sh.Vendor = vendor.Fetch
	c.Configure("due", sh.Fetch, Settings{RefreshInterval: 20 * time.Minute})
	first, err := c.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(21 * time.Minute) // the record is due
	if _, err := redistest.Do(redistest.Shared(t), "SET", rs.prefix+":lease", "another-replica", "PX", "60000"); err != nil {
		t.Fatal(err)
	}
	_, _ = c.Get(context.Background()) // starts one check, which finds the lease taken
	waitFor(t, "the check", func() bool { return store.gets.Load() == 3 })
	time.Sleep(20 * time.Millisecond)
	for i := 0; i < 200; i++ {
		tk, err := c.Get(context.Background())
		if err != nil || tk.Value != first.Value {
			t.Fatalf("while another replica renews: %v", err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if n := store.gets.Load(); n != 3 {
		t.Fatalf("%d record reads for 200 requests within one poll interval, want 3 (two for the first fetch, one check)", n)
	}
}

// TestSharedSupersededRecordStopsEveryReplica: the lease holder gets a new
// token but no ticket. The vendor ends the record's ticket about a minute
// later, so the holder marks the record, and every replica, not only the
// holder, stops using that ticket within the grace.
func TestSharedSupersededRecordStopsEveryReplica(t *testing.T) {
	rs := newCluster(t, clusterOptions{replicas: 2, refreshInterval: 20 * time.Minute, checkInterval: 100 * time.Millisecond})
	first, err := rs.caches[0].Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = rs.caches[1].Get(context.Background())
	time.Sleep(1100 * time.Millisecond) // past MinForcedInterval
	rs.emu.SetFault(faceidtest.TicketEndpoint, faceidtest.Fault{Code: "400102", Msg: "ticket refused"})
	if _, err := rs.caches[1].Invalidate(context.Background(), first.Value); err == nil {
		t.Fatal("a forced refresh with a failing ticket call succeeded")
	}
	raw, _, err := rs.store.Get(context.Background(), rs.prefix+":record")
	var rec record
	if err != nil || json.Unmarshal([]byte(raw), &rec) != nil || rec.Ticket != first.Value || rec.SupersededAtMilli == 0 {
		t.Fatalf("record after the failed refresh: %s (%v); want the old ticket marked superseded", raw, err)
	}
	dies := time.UnixMilli(rec.SupersededAtMilli).Add(supersededGrace)
	if time.Until(dies) > supersededGrace || time.Until(dies) < supersededGrace-5*time.Second {
		t.Fatalf("superseded at %v: not the time of the new token", time.UnixMilli(rec.SupersededAtMilli))
	}
	// Replica 0 saw no failure: it learns it from the record at its next check.
	waitFor(t, "replica 0 to shorten the superseded ticket's life", func() bool {
		tk, err := rs.caches[0].Get(context.Background())
		s := rs.caches[0].Stats()
		return err == nil && tk.Value == first.Value && !s.ExpiresAt.After(dies)
	})
	if s := rs.caches[1].Stats(); s.ExpiresAt.After(dies) {
		t.Fatalf("the lease holder keeps the superseded ticket until %v, after %v", s.ExpiresAt, dies)
	}
	// Once the vendor answers again, one replica renews the record for all.
	rs.emu.ClearFaults()
	waitFor(t, "a new ticket for both replicas", func() bool {
		a, errA := rs.caches[0].Get(context.Background())
		b, errB := rs.caches[1].Get(context.Background())
		return errA == nil && errB == nil && a.Value != first.Value && a.Value == b.Value
	})
	if code := rs.query(t, mustValue(t, rs.caches[0])); code == faceidtest.CodeIllegalRequest || code == "" {
		t.Fatalf("the renewed ticket is refused: %q", code)
	}
}

// TestSharedNewerLocalTicketIsWrittenBack: a replica that fetched a ticket
// of its own while the store was unreachable (failure policy local) has
// superseded the record's token. When the store answers again, its newer
// ticket replaces the record, instead of the replica going back to a
// ticket its own token has doomed; the other replicas follow.
func TestSharedNewerLocalTicketIsWrittenBack(t *testing.T) {
	rs := newCluster(t, clusterOptions{replicas: 2, refreshInterval: 20 * time.Minute, checkInterval: 50 * time.Millisecond})
	first, err := rs.caches[0].Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// What replica 1 fetched directly from the vendor during the outage.
	vendor := &Client{Endpoint: rs.emu.URL, AppID: testAppID, Secret: testSecret, Timeout: time.Second}
	local, err := vendor.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, err := rs.shared[1].Fetch(context.Background(), local, "")
	if err != nil || got.Value != local.Value {
		t.Fatalf("Fetch with a newer local ticket = %v; want that ticket kept", err)
	}
	raw, _, _ := rs.store.Get(context.Background(), rs.prefix+":record")
	var rec record
	if json.Unmarshal([]byte(raw), &rec) != nil || rec.Ticket != local.Value || rec.Version != 2 {
		t.Fatalf("record %s; want the newer ticket as version 2", raw)
	}
	waitFor(t, "replica 0 to follow the newer record", func() bool {
		tk, err := rs.caches[0].Get(context.Background())
		return err == nil && tk.Value == local.Value
	})
	if n := rs.emu.TokenCalls(); n != 2 {
		t.Fatalf("token calls %d, want 2 (the cluster's and the local one)", n)
	}
	// The older ticket never goes back into the record.
	if got, err := rs.shared[0].Fetch(context.Background(), first, ""); err != nil || got.Value != local.Value {
		t.Fatalf("an older ticket replaced the record: %v", err)
	}
}

func mustValue(t *testing.T, c *Cache) string {
	t.Helper()
	v, err := c.Value(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSharedOlderTokenDoesNotMarkTheRecord: a token kept from an earlier
// failure, older than the record's, is refused by the vendor; it dooms
// nothing, so the record must not be marked superseded (which would make
// every replica drop a valid ticket).
func TestSharedOlderTokenDoesNotMarkTheRecord(t *testing.T) {
	rs := newCluster(t, clusterOptions{replicas: 2, refreshInterval: 20 * time.Minute, checkInterval: 100 * time.Millisecond})
	first, err := rs.caches[0].Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past MinForcedInterval
	rs.shared[1].Vendor = func(ctx context.Context) (Ticket, error) {
		var failed Ticket
		failed.OldTokenSupersededAt = first.FetchedAt.Add(-time.Minute)
		return failed, wrapf(ErrUnreachable, "kept token refused")
	}
	if _, err := rs.shared[1].Fetch(context.Background(), first, first.Value); err == nil {
		t.Fatal("the scripted vendor failure was not returned")
	}
	raw, _, _ := rs.store.Get(context.Background(), rs.prefix+":record")
	var rec record
	if json.Unmarshal([]byte(raw), &rec) != nil || rec.SupersededAtMilli != 0 || rec.Ticket != first.Value {
		t.Fatalf("record %s: marked superseded by a token older than its own", raw)
	}
}

// TestSharedStoredTicketNeverOverridesANewerRecord: a replica whose clock
// runs ahead holds a ticket that has been in the store (it has a version);
// a record written later by another replica, with an earlier wall-clock
// time, must win, or the replicas would keep overwriting each other.
func TestSharedStoredTicketNeverOverridesANewerRecord(t *testing.T) {
	rs := newCluster(t, clusterOptions{replicas: 2, refreshInterval: 20 * time.Minute, checkInterval: 100 * time.Millisecond})
	first, err := rs.caches[0].Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ahead := Ticket{Value: "skewed-ticket", FetchedAt: time.Now().Add(time.Minute), Lifetime: 2 * time.Hour, Version: first.Version}
	got, err := rs.shared[1].Fetch(context.Background(), ahead, "")
	if err != nil || got.Value != first.Value {
		t.Fatalf("Fetch = %q, %v; want the record's ticket", got.Value, err)
	}
	raw, _, _ := rs.store.Get(context.Background(), rs.prefix+":record")
	if !strings.Contains(raw, first.Value) {
		t.Fatalf("record %s: overwritten by a stored ticket with a later clock", raw)
	}
}
