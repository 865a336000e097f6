// Package faceidsigner is a Traefik middleware that signs Tencent Cloud
// FaceID server-side calls. Internal services send an unsigned request (for
// queryfacerecord: {"orderNo": "..."}); the plugin adds appId, version, a
// fresh nonce and the SHA-1 sign made with a cached SIGN ticket, sets
// ?orderNo=, and forwards the request to the vendor. The secret, the access
// token and the ticket stay inside Traefik.
package faceidsigner

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/kycgate/faceidsigner/signer"
	"github.com/kycgate/faceidsigner/ticketcache"
)

// Signer is the middleware built by New.
type Signer struct {
	next     http.Handler
	name     string
	settings *settings
	tickets  *ticketcache.Cache
	log      *eventLog

	// JSON fragments computed once in New.
	appIDJSON   json.RawMessage
	versionJSON json.RawMessage
}

// New validates the configuration and returns the middleware. It does no
// network I/O: the first ticket is fetched on the first request.
func New(ctx context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	s, err := parseConfig(config)
	if err != nil {
		return nil, err
	}
	log := newEventLog(s.logLevel, name)

	vendor := &ticketcache.Client{
		Endpoint: s.endpoint,
		AppID:    s.appID,
		Secret:   s.secret,
		Version:  s.version,
		Timeout:  s.timeout,
	}
	cacheSettings := ticketcache.Settings{
		RefreshInterval:   s.refreshInterval,
		FetchTimeout:      fetchTimeout(s),
		MinForcedInterval: s.forcedRefresh,
		Log:               log.cacheLogger(),
	}
	fetch := func(fctx context.Context, rejected string) (ticketcache.Ticket, error) {
		return vendor.Fetch(fctx)
	}
	if s.redis != nil {
		shared := sharedSource(s, vendor, log)
		fetch = func(fctx context.Context, rejected string) (ticketcache.Ticket, error) {
			return shared.Fetch(fctx, rejected)
		}
		// Retry soon after a store failure: the record may change meanwhile.
		cacheSettings.MaxBackoff = s.redis.checkInterval
		if cacheSettings.MaxBackoff < ticketcache.DefaultMinBackoff {
			cacheSettings.MinBackoff = cacheSettings.MaxBackoff
		}
	}
	tickets := ticketcache.For(s.endpoint, s.appID)
	tickets.Configure(s.identity(), fetch, cacheSettings)

	log.log(levelDebug, "middleware configured", map[string]interface{}{
		"appId": s.appID, "endpoint": s.endpoint, "version": s.version, "api": s.recipe.API,
		"refreshInterval": s.refreshInterval.String(), "timeout": s.timeout.String(),
		"maxBodyBytes": s.maxBodyBytes, "secret": "[redacted]", "sharedStore": s.redis != nil,
	})

	return &Signer{
		next:        next,
		name:        name,
		settings:    s,
		tickets:     tickets,
		log:         log,
		appIDJSON:   jsonString(s.appID),
		versionJSON: jsonString(s.version),
	}, nil
}

// ServeHTTP validates the app's request, signs it and forwards it. Requests
// that cannot be signed are answered here and never forwarded.
func (m *Signer) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	if req.Method != m.settings.recipe.Method {
		rw.Header().Set("Allow", m.settings.recipe.Method)
		m.reject(rw, http.StatusMethodNotAllowed, codeMethodNotAllowed, "use "+m.settings.recipe.Method)
		return
	}
	fields, rej := readJSONObject(req, m.settings.maxBodyBytes)
	if rej != nil {
		m.reject(rw, rej.status, rej.code, rej.msg)
		return
	}
	values, rej := callerValues(m.settings.recipe, fields)
	if rej != nil {
		m.reject(rw, rej.status, rej.code, rej.msg)
		return
	}
	ticket, err := m.tickets.Get(req.Context())
	if err != nil {
		m.ticketUnavailable(rw, err)
		return
	}
	if err := m.sign(req, fields, values, ticket.Value); err != nil {
		m.reject(rw, http.StatusInternalServerError, codeInternal, err.Error())
		return
	}
	if len(m.settings.retryCodes) == 0 && (m.settings.mediaRetries == 0 || wantedMedia(fields) == 0) {
		m.next.ServeHTTP(rw, req)
		return
	}
	m.forwardInspected(rw, req, fields, values, ticket.Value)
}

// forwardInspected forwards the signed request and holds back small answers
// to apply the retry rules: an answer with one of retryCodes refreshes the
// ticket and is retried once, re-signed; a code-0 answer that lacks the
// media asked for is queried again up to mediaRetries times.
func (m *Signer) forwardInspected(rw http.ResponseWriter, req *http.Request, fields map[string]json.RawMessage, values map[string]string, ticket string) {
	media := wantedMedia(fields)
	staleRetried := false
	mediaTries := 0
	for {
		capture := newResponseCapture(rw, m.settings.maxInspectBytes)
		m.next.ServeHTTP(capture, req)
		if !capture.held() {
			return // too large to hold: already streamed to the client
		}
		verdict := m.inspect(capture.body.Bytes(), media)
		next := ""
		switch {
		case verdict == verdictStaleTicket && !staleRetried:
			staleRetried = true
			fresh, err := m.tickets.Invalidate(req.Context(), ticket)
			if err != nil {
				m.log.log(levelWarn, "vendor rejected the ticket; not retrying", map[string]interface{}{"reason": err.Error()})
				break
			}
			ticket = fresh.Value
			next = "stale ticket"
		case verdict == verdictMediaMissing && mediaTries < m.settings.mediaRetries:
			if !sleepWithin(req.Context(), m.settings.mediaRetryDelay) {
				break
			}
			mediaTries++
			fresh, err := m.tickets.Get(req.Context())
			if err != nil {
				break
			}
			ticket = fresh.Value
			next = "media missing"
		}
		if next == "" {
			capture.commit()
			return
		}
		if err := m.sign(req, fields, values, ticket); err != nil {
			capture.commit()
			return
		}
		m.log.log(levelInfo, "retrying vendor call", map[string]interface{}{"reason": next, "mediaTries": mediaTries})
	}
}

// sign sets the gateway fields and the signature in fields and rewrites req
// to carry them.
func (m *Signer) sign(req *http.Request, fields map[string]json.RawMessage, values map[string]string, ticket string) error {
	r := m.settings.recipe
	nonce := ""
	if r.NonceField != "" {
		n, err := signer.NewNonce()
		if err != nil {
			return err
		}
		nonce = n
		fields[r.NonceField] = jsonString(nonce)
	}
	fields[r.AppIDField] = m.appIDJSON
	fields[r.VersionField] = m.versionJSON
	fields[r.SignField] = jsonString(r.SignValues(values, m.settings.appID, m.settings.version, ticket, nonce))
	return writeSignedRequest(req, r, fields, values[r.OrderField])
}

// ticketUnavailable answers when no ticket can be had: 504 when the vendor
// timed out, 503 while backing off, 502 for anything the vendor said.
func (m *Signer) ticketUnavailable(rw http.ResponseWriter, err error) {
	status, code := ticketErrorStatus(err)
	rw.Header().Set("Retry-After", strconv.Itoa(m.tickets.RetryAfterSeconds()))
	m.reject(rw, status, code, "cannot get a SIGN ticket from FaceID: "+err.Error())
}

func (m *Signer) reject(rw http.ResponseWriter, status int, code, msg string) {
	m.log.log(levelWarn, "request rejected", map[string]interface{}{"status": status, "code": code, "reason": msg})
	writeError(rw, status, code, msg)
}
