// Package configecho is a yaegihost test fixture: its handler answers every
// request with the configuration New received (as decoded by the host), the
// middleware name, a process-wide instance counter and one environment
// variable, so that two loaders can be compared field by field.
package configecho

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// Upstream is a nested section.
type Upstream struct {
	URL     string
	Retries int
}

// Config covers the field kinds a plugin configuration uses.
type Config struct {
	Name       string
	Count      int
	Enabled    bool
	Ratio      float64
	Tags       []string
	Interval   time.Duration
	Timeout    string
	Headers    map[string]string
	Upstream   Upstream
	SecretFile string `json:"secret_file"`
	FailWith   string
}

// CreateConfig returns the defaults.
func CreateConfig() *Config {
	return &Config{Name: "default-name", Count: 1, Timeout: "20s", Headers: map[string]string{}}
}

// instances counts New calls in this interpreter ("process").
var instances int64

type echo struct {
	body []byte
}

// New fails with FailWith when it is set, else returns the echo handler.
func New(_ context.Context, _ http.Handler, config *Config, name string) (http.Handler, error) {
	if config.FailWith != "" {
		return nil, errors.New(config.FailWith)
	}
	n := atomic.AddInt64(&instances, 1)
	fmt.Println("configecho: stdout: New", name, n)
	log.Printf("configecho: stderr: New %s %d", name, n)
	view := map[string]interface{}{
		"name":     name,
		"instance": n,
		"env":      os.Getenv("YAEGIHOST_PROBE"),
		"config": map[string]interface{}{
			"Name":        config.Name,
			"Count":       config.Count,
			"Enabled":     config.Enabled,
			"Ratio":       config.Ratio,
			"Tags":        config.Tags,
			"Interval":    config.Interval.String(),
			"Timeout":     config.Timeout,
			"Headers":     config.Headers,
			"UpstreamURL": config.Upstream.URL,
			"Retries":     config.Upstream.Retries,
			"SecretFile":  config.SecretFile,
		},
	}
	body, err := json.Marshal(view)
	if err != nil {
		return nil, fmt.Errorf("configecho: marshal: %w", err)
	}
	return &echo{body: body}, nil
}

func (e *echo) ServeHTTP(rw http.ResponseWriter, _ *http.Request) {
	rw.Header().Set("Content-Type", "application/json")
	_, _ = rw.Write(e.body)
}
