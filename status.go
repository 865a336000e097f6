package faceidsigner

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// counters are one middleware's event counts. They are kept per middleware
// name for the life of the process, so that a configuration reload does not
// reset them (Prometheus would see a counter reset).
type counters struct {
	signed atomic.Int64 // the one counter on the hot path: no lock

	mu           sync.Mutex
	rejected     map[string]int64 // by the plugin's error code
	vendorErrors map[string]int64 // by vendor code, for answers other than "0" the plugin inspected
	retries      map[string]int64 // by reason: stale ticket, media missing
}

var (
	countersMu     sync.Mutex
	countersByName = map[string]*counters{}
)

// countersFor returns the process-wide counters of the middleware name.
func countersFor(name string) *counters {
	countersMu.Lock()
	defer countersMu.Unlock()
	c, ok := countersByName[name]
	if !ok {
		c = &counters{rejected: map[string]int64{}, vendorErrors: map[string]int64{}, retries: map[string]int64{}}
		countersByName[name] = c
	}
	return c
}

// maxCounterKeys bounds the distinct keys of one counter map (vendor codes
// come from the upstream): further keys are counted as "other", so that
// memory and the metrics' label values stay bounded.
const maxCounterKeys = 64

func (c *counters) add(m map[string]int64, key string) {
	c.mu.Lock()
	if _, seen := m[key]; !seen && len(m) >= maxCounterKeys {
		key = "other"
	}
	m[key]++
	c.mu.Unlock()
}

// snapshot copies the counters.
func (c *counters) snapshot() (int64, map[string]int64, map[string]int64, map[string]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.signed.Load(), copyCounts(c.rejected), copyCounts(c.vendorErrors), copyCounts(c.retries)
}

func copyCounts(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// statusReport is what the status path shows. It never holds the secret,
// the token or the ticket.
type statusReport struct {
	Middleware  string       `json:"middleware"`
	AppID       string       `json:"appId"`
	Endpoint    string       `json:"endpoint"`
	API         string       `json:"api"`
	SharedStore bool         `json:"sharedStore"`
	Ticket      ticketReport `json:"ticket"`
	Counters    countReport  `json:"counters"`
}

type ticketReport struct {
	Valid            bool    `json:"valid"`
	AgeSeconds       float64 `json:"ageSeconds"`
	ExpiresInSeconds float64 `json:"expiresInSeconds"`
	LastRefresh      string  `json:"lastRefresh,omitempty"`
	LastRefreshOK    bool    `json:"lastRefreshOK"`
	LastRefreshError string  `json:"lastRefreshError,omitempty"`
}

type countReport struct {
	Signed          int64            `json:"signed"`
	Rejected        map[string]int64 `json:"rejected"`
	VendorErrors    map[string]int64 `json:"vendorErrors"`
	Retries         map[string]int64 `json:"retries"`
	Refreshes       int64            `json:"refreshes"`
	RefreshFailures int64            `json:"refreshFailures"`
	ForcedRefreshes int64            `json:"forcedRefreshes"`
}

// serveStatus answers GET statusPath with JSON, and GET statusPath/metrics
// (or ?format=prometheus) with the Prometheus text format.
func (m *Signer) serveStatus(rw http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		rw.Header().Set("Allow", "GET, HEAD")
		writeError(rw, http.StatusMethodNotAllowed, codeMethodNotAllowed, "the status path answers GET")
		return
	}
	report := m.statusReport()
	rw.Header().Set("Cache-Control", "no-store")
	if strings.HasSuffix(req.URL.Path, "/metrics") || req.URL.Query().Get("format") == "prometheus" {
		rw.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = rw.Write([]byte(prometheusText(report)))
		return
	}
	body, _ := json.MarshalIndent(report, "", "  ")
	rw.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = rw.Write(body)
}

func (m *Signer) statusReport() statusReport {
	now := time.Now()
	stats := m.tickets.Stats()
	signed, rejected, vendorErrors, retries := m.counts.snapshot()
	var r statusReport
	r.Middleware = m.name
	r.AppID = m.settings.appID
	r.Endpoint = m.settings.endpoint
	r.API = m.settings.recipe.API
	r.SharedStore = m.settings.redis != nil
	r.Ticket.Valid = stats.HasTicket
	if !stats.FetchedAt.IsZero() {
		r.Ticket.AgeSeconds = roundSeconds(now.Sub(stats.FetchedAt))
		r.Ticket.ExpiresInSeconds = roundSeconds(stats.ExpiresAt.Sub(now))
	}
	if !stats.LastRefresh.IsZero() {
		r.Ticket.LastRefresh = stats.LastRefresh.UTC().Format(time.RFC3339)
		r.Ticket.LastRefreshOK = stats.LastRefreshErr == ""
		r.Ticket.LastRefreshError = stats.LastRefreshErr
	}
	r.Counters.Signed = signed
	r.Counters.Rejected = rejected
	r.Counters.VendorErrors = vendorErrors
	r.Counters.Retries = retries
	r.Counters.Refreshes = stats.Refreshes
	r.Counters.RefreshFailures = stats.Failures
	r.Counters.ForcedRefreshes = stats.Forced
	return r
}

func roundSeconds(d time.Duration) float64 {
	return float64(d.Milliseconds()) / 1000
}

// prometheusText renders the report in the Prometheus text format.
func prometheusText(r statusReport) string {
	var b strings.Builder
	base := `middleware="` + promEscape(r.Middleware) + `",app_id="` + promEscape(r.AppID) + `"`
	metric := func(name, kind, help string) {
		b.WriteString("# HELP faceidsigner_" + name + " " + help + "\n# TYPE faceidsigner_" + name + " " + kind + "\n")
	}
	sample := func(name, labels string, value string) {
		b.WriteString("faceidsigner_" + name + "{" + base + labels + "} " + value + "\n")
	}
	byKey := func(name, kind, help, label string, counts map[string]int64) {
		metric(name, kind, help)
		keys := make([]string, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i := 0; i < len(keys); i++ {
			sample(name, ","+label+`="`+promEscape(keys[i])+`"`, strconv.FormatInt(counts[keys[i]], 10))
		}
	}
	metric("signed_total", "counter", "Requests signed and forwarded to the vendor.")
	sample("signed_total", "", strconv.FormatInt(r.Counters.Signed, 10))
	byKey("rejected_total", "counter", "Requests answered by the plugin without forwarding, by error code.", "code", r.Counters.Rejected)
	byKey("vendor_errors_total", "counter", "Inspected vendor answers with a code other than 0, by vendor code.", "code", r.Counters.VendorErrors)
	byKey("retries_total", "counter", "Vendor calls repeated, by reason.", "reason", r.Counters.Retries)
	metric("ticket_refreshes_total", "counter", "New tickets fetched (process-wide for this endpoint and app id).")
	sample("ticket_refreshes_total", "", strconv.FormatInt(r.Counters.Refreshes, 10))
	metric("ticket_refresh_failures_total", "counter", "Failed ticket refreshes.")
	sample("ticket_refresh_failures_total", "", strconv.FormatInt(r.Counters.RefreshFailures, 10))
	metric("ticket_forced_refreshes_total", "counter", "Refreshes forced by a vendor rejection.")
	sample("ticket_forced_refreshes_total", "", strconv.FormatInt(r.Counters.ForcedRefreshes, 10))
	metric("ticket_valid", "gauge", "1 when a valid ticket is cached.")
	valid := "0"
	if r.Ticket.Valid {
		valid = "1"
	}
	sample("ticket_valid", "", valid)
	metric("ticket_age_seconds", "gauge", "Age of the cached ticket.")
	sample("ticket_age_seconds", "", strconv.FormatFloat(r.Ticket.AgeSeconds, 'f', -1, 64))
	metric("ticket_expires_in_seconds", "gauge", "Time until the cached ticket expires.")
	sample("ticket_expires_in_seconds", "", strconv.FormatFloat(r.Ticket.ExpiresInSeconds, 'f', -1, 64))
	return b.String()
}

func promEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
