package faceidsigner

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kycgate/faceidsigner/redisclient"
	"github.com/kycgate/faceidsigner/ticketcache"
)

// Process-wide state of the shared-store mode. Like the ticket cache, it
// outlives configuration reloads: one Redis client per server and one
// Shared source per (credentials, store) pair, so reloads neither leak
// connections nor forget which ticket this replica holds.
var (
	sharedMu      sync.Mutex
	redisClients  = map[string]*redisclient.Client{}
	sharedSources = map[string]*ticketcache.Shared{}
	replicaOnce   sync.Once
	replicaID     string
)

// replica returns a random identifier of this Traefik process, used as the
// lease owner and recorded as the writer of ticket records.
func replica() string {
	replicaOnce.Do(func() {
		replicaID = uuid.NewString()
	})
	return replicaID
}

// sharedSource returns the Shared ticket source for s (which has redis
// settings), creating it and its Redis client on first use.
func sharedSource(s *settings, vendor *ticketcache.Client, log *eventLog) *ticketcache.Shared {
	r := s.redis
	clientKey := r.address + "\n" + r.username + "\n" + r.password + "\n" + strconv.Itoa(r.db) + "\n" + strconv.FormatBool(r.tls) + "\n" + r.timeout.String()
	base := r.keyPrefix + s.appID + ":" + s.identity()[:16]
	sourceKey := clientKey + "\n" + base + "\n" + s.refreshInterval.String() + "\n" + r.checkInterval.String() + "\n" +
		strconv.FormatBool(r.fetchLocally) + "\n" + s.forcedRefresh.String() + "\n" + s.timeout.String()

	sharedMu.Lock()
	defer sharedMu.Unlock()
	if src, ok := sharedSources[sourceKey]; ok {
		return src
	}
	client, ok := redisClients[clientKey]
	if !ok {
		client = redisclient.New(redisclient.Options{
			Address: r.address, Username: r.username, Password: r.password,
			DB: r.db, TLS: r.tls, Timeout: r.timeout,
		})
		redisClients[clientKey] = client
	}
	src := &ticketcache.Shared{
		Store:                      client,
		RecordKey:                  base + ":record",
		LeaseKey:                   base + ":lease",
		Owner:                      replica(),
		Vendor:                     func(ctx context.Context) (ticketcache.Ticket, error) { return vendor.Fetch(ctx) },
		RefreshInterval:            s.refreshInterval,
		CheckInterval:              r.checkInterval,
		LeaseTTL:                   fetchTimeout(s) + 2*r.timeout,
		MinForcedInterval:          s.forcedRefresh,
		FetchLocallyOnStoreFailure: r.fetchLocally,
		Log:                        log.cacheLogger(),
	}
	sharedSources[sourceKey] = src
	return src
}

// fetchTimeout bounds one whole refresh: a token call and a ticket call.
func fetchTimeout(s *settings) time.Duration {
	return 2*s.timeout + time.Second
}
