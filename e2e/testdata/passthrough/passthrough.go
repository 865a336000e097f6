// Package passthrough is the baseline plugin for benchmarks and harness
// tests: a Yaegi middleware that only calls the next handler. It measures the
// cost of the interpreter hop that every Traefik plugin pays.
package passthrough

import (
	"context"
	"net/http"
)

// Config is empty: the plugin has no settings.
type Config struct{}

// CreateConfig returns the (empty) default configuration.
func CreateConfig() *Config { return &Config{} }

type passthrough struct{ next http.Handler }

// New returns a handler that forwards every request unchanged.
func New(_ context.Context, next http.Handler, _ *Config, _ string) (http.Handler, error) {
	return &passthrough{next: next}, nil
}

func (p *passthrough) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	p.next.ServeHTTP(rw, req)
}
