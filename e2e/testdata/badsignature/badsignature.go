// Package badsignature is a yaegihost test fixture: it imports cleanly, but
// New takes its Config by value instead of *Config, which the plugin catalog
// rejects and which Traefik cannot call with the *Config CreateConfig returns.
package badsignature

import (
	"context"
	"net/http"
)

// Config is empty.
type Config struct{}

// CreateConfig returns the default configuration.
func CreateConfig() *Config { return &Config{} }

// New has the wrong signature on purpose: config should be *Config.
func New(_ context.Context, next http.Handler, _ Config, _ string) (http.Handler, error) {
	return next, nil
}
