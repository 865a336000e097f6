package ticketcache

import (
	gocache "github.com/patrickmn/go-cache"
)

// registry holds one Cache per (endpoint, app id) for the life of the
// process, so that every router using the middleware, and every instance
// Traefik builds on a configuration reload, shares one token and ticket.
// It is created once, with no janitor: under yaegi finalizers never run, so
// a janitor goroutine would never stop.
var registry = gocache.New(gocache.NoExpiration, 0)

// For returns the process-wide cache for endpoint and appID, creating it on
// first use.
func For(endpoint, appID string) *Cache {
	key := endpoint + "\n" + appID
	if v, found := registry.Get(key); found {
		return v.(*Cache)
	}
	c := New(nil)
	if err := registry.Add(key, c, gocache.NoExpiration); err != nil {
		// Another instance added it first: use theirs.
		v, _ := registry.Get(key)
		return v.(*Cache)
	}
	return c
}
