package faceidsigner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kycgate/faceidsigner/redisclient"
	"github.com/kycgate/faceidsigner/ticketcache"
)

// Process-wide clients: one vendor client per credentials and one Redis
// client per server and settings, so that configuration reloads keep their
// state and do not open new connection pools. (A reload that changes these
// settings leaves the old client in the map; such reloads are rare.)
var (
	vendorMu      sync.Mutex
	vendorClients = map[string]*ticketcache.Client{}
	redisMu       sync.Mutex
	redisClients  = map[string]*redisclient.Client{}
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

// vendorClient returns the process-wide vendor client for s's credentials,
// so that a token kept after a failed ticket call survives configuration
// reloads (New runs again on every reload).
func vendorClient(s *settings) *ticketcache.Client {
	key := s.identity() + "\n" + s.oauthAppIDParam + "\n" + s.timeout.String()
	vendorMu.Lock()
	defer vendorMu.Unlock()
	client, ok := vendorClients[key]
	if !ok {
		client = &ticketcache.Client{
			Endpoint:   s.endpoint,
			AppID:      s.appID,
			Secret:     s.secret,
			AppIDParam: s.oauthAppIDParam,
			Timeout:    s.timeout,
		}
		vendorClients[key] = client
	}
	return client
}

// redisClient returns the process-wide client for r.
func redisClient(r *redisSettings) *redisclient.Client {
	key := r.address + "\n" + r.username + "\n" + r.password + "\n" + strconv.Itoa(r.db) + "\n" + strconv.FormatBool(r.tls) + "\n" + r.timeout.String()
	redisMu.Lock()
	defer redisMu.Unlock()
	client, ok := redisClients[key]
	if !ok {
		client = redisclient.New(redisclient.Options{
			Address: r.address, Username: r.username, Password: r.password,
			DB: r.db, TLS: r.tls, Timeout: r.timeout,
		})
		redisClients[key] = client
	}
	return client
}

// sharedSource returns the ticket source that coordinates replicas through
// Redis. It keeps no state, so each New makes its own.
func sharedSource(s *settings, vendor *ticketcache.Client, log *eventLog) *ticketcache.Shared {
	r := s.redis
	// Keyed by endpoint and app id, not by the secret: a rotated secret
	// kills every token anyway, and no hash of the secret sits in Redis.
	endpointSum := sha256.Sum256([]byte(s.endpoint))
	base := r.keyPrefix + s.appID + ":" + hex.EncodeToString(endpointSum[:6])
	return &ticketcache.Shared{
		Store:                      redisClient(r),
		RecordKey:                  base + ":record",
		LeaseKey:                   base + ":lease",
		Owner:                      replica(),
		Vendor:                     func(ctx context.Context) (ticketcache.Ticket, error) { return vendor.Fetch(ctx) },
		RefreshInterval:            s.refreshInterval,
		CheckInterval:              r.checkInterval,
		LeaseTTL:                   fetchTimeout(s) + 2*r.timeout,
		StoreTimeout:               r.timeout,
		MinForcedInterval:          s.forcedRefresh,
		FetchLocallyOnStoreFailure: r.fetchLocally,
		Log:                        log.cacheLogger(),
	}
}

// fetchTimeout bounds one whole refresh: a token call and a ticket call.
func fetchTimeout(s *settings) time.Duration {
	return 2*s.timeout + time.Second
}
