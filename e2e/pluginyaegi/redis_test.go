package pluginyaegi

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kycgate/faceidsigner/e2e/yaegihost"
	"github.com/kycgate/faceidsigner/faceidtest"
	"github.com/kycgate/faceidsigner/redisclient/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

var prefixSeq atomic.Int64

// prefixRun tells this test process's keys from those of earlier runs
// against the same Redis (FACEIDSIGNER_REDIS_ADDR outlives a run).
var prefixRun = strconv.FormatInt(time.Now().UnixNano(), 36)

// cluster is three Traefik "processes": three interpreters, each with its
// own package state, serving the plugin against one emulator.
type cluster struct {
	emu     *faceidtest.Server
	plugins []*yaegihost.Plugin
	servers []*httptest.Server
}

func newCluster(t *testing.T, replicas int, extra map[string]any) *cluster {
	t.Helper()
	c := &cluster{emu: newEmulator(t)}
	c.emu.SetOverlap(500 * time.Millisecond)
	for i := 0; i < replicas; i++ {
		p := loadPlugin(t)
		h := newHandler(t, p, proxyTo(c.emu, nil), config(c.emu, extra), "faceid@file")
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		c.plugins = append(c.plugins, p)
		c.servers = append(c.servers, srv)
		// Replicas start at different times, as real ones do.
		send(t, srv.URL, http.MethodPost, `{"orderNo":"`+order+`"}`)
		time.Sleep(300 * time.Millisecond)
	}
	return c
}

// load sends requests through every replica for d and returns how many the
// app saw accepted and rejected.
func (c *cluster) load(t *testing.T, d time.Duration) (ok, failed int64) {
	var okN, failN atomic.Int64
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := 0; i < len(c.servers)*3; i++ {
		url := c.servers[i%len(c.servers)].URL
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if a := send(t, url, http.MethodPost, `{"orderNo":"`+order+`"}`); a.body["code"] == "0" {
					okN.Add(1)
				} else {
					failN.Add(1)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return okN.Load(), failN.Load()
}

func redisConfig(t *testing.T) map[string]any {
	return map[string]any{
		"refreshInterval":    "1s",
		"redisAddress":       redistest.Shared(t),
		"redisKeyPrefix":     "pluginyaegi:" + prefixRun + ":" + strconv.FormatInt(prefixSeq.Add(1), 10) + ":",
		"redisCheckInterval": "100ms",
		"redisTimeout":       "500ms",
	}
}

// TestThreeReplicasShareOneTicket: three interpreters, a 500 ms overlap and
// a 1 s refresh interval, under load for six periods. Every replica must
// switch to a new ticket within redisCheckInterval (100 ms) of the record
// changing, well inside the overlap, so the vendor never rejects a ticket.
func TestThreeReplicasShareOneTicket(t *testing.T) {
	c := newCluster(t, 3, redisConfig(t))
	c.emu.ResetCounters()
	start := time.Now()
	ok, failed := c.load(t, 6*time.Second)
	periods := time.Since(start).Seconds()
	if n := c.emu.CodeCount(faceidtest.CodeIllegalRequest); n != 0 {
		t.Fatalf("the vendor rejected %d signatures (ok %d)", n, ok)
	}
	if failed != 0 || ok < 300 {
		t.Fatalf("accepted %d, failed %d", ok, failed)
	}
	if calls := float64(c.emu.TokenCalls()); calls < periods-1.5 || calls > periods+1.5 {
		t.Fatalf("%v token calls in %.1f s: want one per refresh period for the whole cluster", calls, periods)
	}
	for i, p := range c.plugins {
		assertNoLeak(t, c.emu, "replica "+strconv.Itoa(i)+" output", p.Output().String())
	}
}

// TestThreeReplicasWithoutRedisBreakEachOther is the control: the same
// scenario without the shared store makes the vendor reject signatures.
func TestThreeReplicasWithoutRedisBreakEachOther(t *testing.T) {
	c := newCluster(t, 3, map[string]any{"refreshInterval": "1s"})
	c.emu.ResetCounters()
	c.load(t, 4*time.Second)
	if n := c.emu.CodeCount(faceidtest.CodeIllegalRequest); n == 0 {
		t.Fatal("replicas without a shared store caused no 400101: the scenario would not catch a broken store")
	}
}

// TestRedisKilledAndRestarted: Redis dies under load and comes back; the
// replicas keep serving from their copy and recover without a restart.
func TestRedisKilledAndRestarted(t *testing.T) {
	srv := redistest.Start(t)
	cfg := redisConfig(t)
	cfg["redisAddress"] = srv.Addr()
	cfg["refreshInterval"] = "20m"
	c := newCluster(t, 2, cfg)
	srv.Kill()
	ok, failed := c.load(t, time.Second)
	if failed != 0 || ok == 0 {
		t.Fatalf("with Redis down and a valid ticket: ok %d failed %d", ok, failed)
	}
	srv.Restart()
	ok, failed = c.load(t, time.Second)
	if failed != 0 || ok == 0 {
		t.Fatalf("after Redis restarted: ok %d failed %d", ok, failed)
	}
	if n := c.emu.CodeCount(faceidtest.CodeIllegalRequest); n != 0 {
		t.Fatalf("%d rejected signatures", n)
	}
}

// TestSupersededRecordUnderYaegi: two interpreters share a record with a
// 20-minute refresh interval. The vendor rejects a request of replica 0
// (400101), then issues it a new token but no ticket, which dooms the
// record's ticket: replica 0 marks the record superseded. Once the vendor
// answers again, the marked record is renewed for the cluster at the next
// check, long before its 20 minutes; unmarked, every replica would go on
// reading the doomed ticket from it.
func TestSupersededRecordUnderYaegi(t *testing.T) {
	cfg := redisConfig(t)
	cfg["refreshInterval"] = "20m"
	cfg["forcedRefreshInterval"] = "100ms"
	c := newCluster(t, 2, cfg)
	// The vendor's real overlap: the doomed ticket keeps working for a
	// minute, so nothing but the mark can make the replicas renew it now.
	c.emu.SetOverlap(time.Minute)
	c.emu.SetFault(faceidtest.QueryEndpoint, faceidtest.Fault{Code: faceidtest.CodeIllegalRequest, Msg: "illegal request", Times: 1})
	c.emu.SetFault(faceidtest.TicketEndpoint, faceidtest.Fault{Code: "400102", Msg: "ticket refused"})
	tokens, tickets := c.emu.TokenCalls(), c.emu.TicketCalls()
	send(t, c.servers[0].URL, http.MethodPost, `{"orderNo":"`+order+`"}`)
	if c.emu.TokenCalls() != tokens+1 || c.emu.TicketCalls() != tickets+1 {
		t.Fatalf("token calls +%d, ticket calls +%d after the rejection; want +1, +1 (a forced refresh whose ticket call fails)",
			c.emu.TokenCalls()-tokens, c.emu.TicketCalls()-tickets)
	}
	c.emu.ClearFaults()
	// Traffic continues (refreshes start on requests): replica 1 only.
	deadline := time.Now().Add(5 * time.Second)
	for c.emu.TicketCalls() < tickets+2 {
		if time.Now().After(deadline) {
			t.Fatal("the superseded record was not renewed: the replicas keep a doomed ticket")
		}
		if a := send(t, c.servers[1].URL, http.MethodPost, `{"orderNo":"`+order+`"}`); a.body["code"] != "0" {
			t.Fatalf("replica 1 while the record is renewed: %s", a.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // every replica's next check
	c.emu.ResetCounters()
	for i, srv := range c.servers {
		if a := send(t, srv.URL, http.MethodPost, `{"orderNo":"`+order+`"}`); a.body["code"] != "0" {
			t.Fatalf("replica %d after the renewal: %s", i, a.raw)
		}
	}
	if n := c.emu.CodeCount(faceidtest.CodeIllegalRequest); n != 0 {
		t.Fatalf("%d requests were signed with a dead ticket after the renewal", n)
	}
}
