// Package yaegiredis proves that redisclient works when interpreted by
// yaegi v0.16.1 exactly as Traefik loads plugins (stdlib symbols only, code
// found through a GOPATH), against real redis-servers. It has no code of
// its own: see yaegiredis_test.go and the interpreted program in
// testdata/redisprobe.
package yaegiredis
