// Package faceidsigner is a Traefik middleware that signs Tencent Cloud
// FaceID server-side calls. Internal services send an unsigned request (for
// queryfacerecord: {"orderNo": "..."}); the plugin adds appId, version, a
// fresh nonce and the SHA-1 sign made with a cached SIGN ticket, sets
// ?orderNo=, and forwards the request to the vendor. The secret, the access
// token and the ticket stay inside Traefik.
package faceidsigner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/kycgate/faceidsigner/signer"
	"github.com/kycgate/faceidsigner/ticketcache"
)

// orderNoJSON matches an order number as a JSON string: 1 to 32 letters or
// digits, no escapes (the general path's check; the fast path's is
// fastBodyPattern).
var orderNoJSON = regexp.MustCompile(`^"[0-9A-Za-z]{1,32}"$`)

// Signer is the middleware built by New.
type Signer struct {
	next     http.Handler
	name     string
	settings *settings
	tickets  *ticketcache.Cache
	log      *eventLog
	counts   *counters

	// head opens every signed body: {"appId":...,"version":..., computed once.
	head string
	// For the fast path (fastpath.go), ready to read without going through
	// settings: fastBody matches the bodies it signs, of up to fastMaxBytes
	// (0 when the recipe has no fast path); statusPaths are the paths it
	// leaves to the status handler. bodyFormat is head followed by the
	// nonce, the SHA-1 sum (%X: the sign) and the app's fields, for
	// fmt.Fprintf; targetPrefix is the vendor path and "?orderNo=".
	fastBody     *regexp.Regexp
	fastMaxBytes int64
	statusPaths  map[string]bool
	appID        string
	version      string
	path         string
	bodyFormat   string
	targetPrefix string
}

// New validates the configuration and returns the middleware. It does no
// network I/O: the first ticket is fetched on the first request.
func New(ctx context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	s, err := parseConfig(config)
	if err != nil {
		return nil, err
	}
	log := newEventLog(s.logLevel, name)

	vendor := vendorClient(s)
	cacheSettings := ticketcache.Settings{
		RefreshInterval:   s.refreshInterval,
		FetchTimeout:      fetchTimeout(s),
		MinForcedInterval: s.forcedRefresh,
		Log:               log.cacheLogger(),
	}
	fetch := func(fctx context.Context, current ticketcache.Ticket, rejected string) (ticketcache.Ticket, error) {
		return vendor.Fetch(fctx)
	}
	if s.redis != nil {
		shared := sharedSource(s, vendor, log)
		fetch = func(fctx context.Context, current ticketcache.Ticket, rejected string) (ticketcache.Ticket, error) {
			return shared.Fetch(fctx, current, rejected)
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

	r := s.recipe
	head := "{" + string(jsonString(r.AppIDField)) + ":" + string(jsonString(s.appID)) + "," + string(jsonString(r.VersionField)) + ":" + string(jsonString(s.version)) + ","
	m := &Signer{
		next:         next,
		name:         name,
		settings:     s,
		tickets:      tickets,
		log:          log,
		counts:       countersFor(name),
		head:         head,
		statusPaths:  map[string]bool{},
		appID:        s.appID,
		version:      s.version,
		path:         r.Path,
		targetPrefix: r.Path + "?orderNo=",
	}
	if s.signsOrderOnly && r.Method == http.MethodPost && !r.AlwaysFiles && r.NonceField != "" {
		m.fastBody = fastBodyPattern(r.OrderField, r.FileField)
		m.fastMaxBytes = fastMaxBodyBytes // not min(): yaegi v0.16.1 lacks the Go 1.21 builtins
		if s.maxBodyBytes < m.fastMaxBytes {
			m.fastMaxBytes = s.maxBodyBytes
		}
	}
	if s.statusPath != "" {
		m.statusPaths[s.statusPath] = true
		m.statusPaths[s.statusPath+"/metrics"] = true
	}
	m.bodyFormat = strings.ReplaceAll(head, "%", "%%") + string(jsonString(r.NonceField)) + `:"%s",` + string(jsonString(r.SignField)) + `:"%X",%s`
	return m, nil
}

// serveGeneral handles every request the fast path does not: the status
// path, wrong methods, GET APIs, and the full rules for POST APIs.
func (m *Signer) serveGeneral(rw http.ResponseWriter, req *http.Request) {
	if m.statusPaths[req.URL.Path] {
		m.serveStatus(rw, req)
		return
	}
	if req.Method != m.settings.recipe.Method {
		rw.Header().Set("Allow", m.settings.recipe.Method)
		m.reject(rw, &rejection{status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed, msg: "use " + m.settings.recipe.Method})
		return
	}
	if m.settings.recipe.Method == http.MethodGet {
		m.serveQueryAPI(rw, req)
		return
	}
	body, rej := readBody(req, m.settings.maxBodyBytes)
	if rej != nil {
		m.reject(rw, rej)
		return
	}
	m.serveBody(rw, req, body)
}

// serveRead continues a request the fast path read but cannot sign: its
// body could not be read (err), is not the fast path's shape, or no ticket
// is ready.
func (m *Signer) serveRead(rw http.ResponseWriter, req *http.Request, body []byte, err error) {
	if err != nil {
		m.reject(rw, bodyRejection(true, 0))
		return
	}
	m.serveBody(rw, req, body)
}

// serveBody decodes a POST API request's body, then signs and forwards it.
func (m *Signer) serveBody(rw http.ResponseWriter, req *http.Request, body []byte) {
	fields, rej := decodeJSONObject(body)
	if rej != nil {
		m.reject(rw, rej)
		return
	}
	m.serveFields(rw, req, body, fields)
}

// serveFields signs and forwards a POST API request whose body has been
// read and decoded.
func (m *Signer) serveFields(rw http.ResponseWriter, req *http.Request, body []byte, fields map[string]json.RawMessage) {
	var call signedCall
	if rej := m.prepare(&call, body, fields); rej != nil {
		m.reject(rw, rej)
		return
	}
	m.signAndForward(rw, req, &call)
}

// serveQueryAPI handles recipes called with GET (getOcrResult): the app's
// fields and the gateway's travel in the query string.
func (m *Signer) serveQueryAPI(rw http.ResponseWriter, req *http.Request) {
	query := req.URL.Query()
	fields := make(map[string]json.RawMessage, len(query))
	for k, v := range query {
		if len(v) > 0 {
			fields[k] = jsonString(v[0])
		}
	}
	var call signedCall
	if rej := m.prepare(&call, nil, fields); rej != nil {
		m.reject(rw, rej)
		return
	}
	r := m.settings.recipe
	query.Del(r.AppIDField)
	query.Del(r.VersionField)
	query.Del(r.NonceField)
	query.Del(r.SignField)
	call.query = query
	m.signAndForward(rw, req, &call)
}

// signAndForward gets the ticket, signs and forwards, with the retry rules
// that apply to the request.
func (m *Signer) signAndForward(rw http.ResponseWriter, req *http.Request, call *signedCall) {
	ticket, err := m.tickets.Value(req.Context())
	if err != nil {
		m.ticketUnavailable(rw, req, err)
		return
	}
	m.sign(req, call, ticket)
	m.counts.signed.Add(1)
	switch {
	case len(m.settings.retryCodes) == 0 && (call.media == 0 || m.settings.mediaRetries == 0 || !m.settings.recipe.PollsMedia):
		m.next.ServeHTTP(rw, req)
	case call.media == 0:
		forwardHeld(m, rw, req, call, ticket)
	default:
		m.forwardInspected(rw, req, call, ticket)
	}
}

// signedCall is what is needed to sign one app request, and to sign it
// again with a new nonce (and ticket) for a retry.
type signedCall struct {
	orderNo string
	// rest is the app's JSON object without its opening brace.
	rest string
	// values are the caller's signed values by field name (recipes that
	// sign more than the order number).
	values map[string]string
	// media is what getFile asks for (mediaPhoto, mediaVideo bits).
	media int
	// query holds the app's query parameters for APIs called with GET.
	query url.Values
}

// prepare checks the app's fields against the recipe and fills call.
func (m *Signer) prepare(call *signedCall, body []byte, fields map[string]json.RawMessage) *rejection {
	r := m.settings.recipe
	if m.settings.signsOrderOnly {
		raw := fields[r.OrderField]
		if !orderNoJSON.Match(raw) {
			_, rej := callerValues(r, fields) // says precisely what is wrong
			if rej == nil {
				rej = badRequest(codeBadField, r.OrderField+" must be 1 to 32 letters or digits")
			}
			return rej
		}
		call.orderNo = string(raw[1 : len(raw)-1])
	} else {
		values, rej := callerValues(r, fields)
		if rej != nil {
			return rej
		}
		call.values = values
		call.orderNo = values[r.OrderField]
	}
	call.media = wantedFiles(r, fields)
	if body == nil {
		return nil // a GET API: the fields travel in the query
	}
	rest, err := bodyRest(r, body, fields)
	if err != nil {
		return &rejection{status: http.StatusInternalServerError, code: codeInternal, msg: err.Error()}
	}
	call.rest = rest
	return nil
}

// sign writes the signed request into req: the gateway's fields and the
// signature before the app's own fields, the recipe's path and ?orderNo=.
func (m *Signer) sign(req *http.Request, call *signedCall, ticket string) {
	r := m.settings.recipe
	if call.values == nil && call.query == nil {
		// An order-only POST API: the same signed request as the fast path.
		signOrderOnly(m, req, call, ticket)
		return
	}
	// The answer may be inspected: it must arrive uncompressed (Go's
	// transport then asks for gzip itself and decompresses it).
	req.Header.Del("Accept-Encoding")
	nonce := ""
	head := m.head
	if r.NonceField != "" {
		nonce, _ = signer.NewNonce() // crypto/rand.Read cannot fail since Go 1.24: it crashes instead
		head = head + `"` + r.NonceField + `":"` + nonce + `",`
	}
	values := call.values
	if values == nil { // an order-only API called with GET
		values = map[string]string{r.OrderField: call.orderNo}
	}
	sign := r.SignValues(values, m.settings.appID, m.settings.version, ticket, nonce)
	if call.query != nil {
		q := url.Values{}
		for k, v := range call.query {
			q[k] = v
		}
		q.Set(r.AppIDField, m.settings.appID)
		q.Set(r.VersionField, m.settings.version)
		q.Set(r.NonceField, nonce)
		q.Set(r.SignField, sign)
		req.URL.Path = r.Path
		req.URL.RawPath = ""
		req.URL.RawQuery = q.Encode()
		req.RequestURI = req.URL.RequestURI()
		return
	}
	setBody(req, head+`"`+r.SignField+`":"`+sign+`",`+call.rest)
	setTarget(req, r.Path, call.orderNo)
}

// afterHeldAnswer handles a held answer that does not start with code "0":
// for a stale-ticket code it refreshes the ticket and retries once,
// re-signed, into a new recorder over rw's headers as they were before the
// first attempt (before, nil when there were none); it counts the vendor
// code. It returns the answer to send.
func (m *Signer) afterHeldAnswer(rw http.ResponseWriter, req *http.Request, held *httptest.ResponseRecorder, before http.Header, call *signedCall, ticket string) *httptest.ResponseRecorder {
	if m.inspect(held.Body.Bytes(), 0) == verdictStaleTicket {
		if fresh, ok := m.refreshRejected(req, ticket); ok {
			m.sign(req, call, fresh)
			m.retried("stale ticket", 0)
			sent := rw.Header()
			for k := range sent {
				delete(sent, k)
			}
			for k, v := range before {
				sent[k] = v
			}
			held = &httptest.ResponseRecorder{HeaderMap: sent, Body: new(bytes.Buffer), Code: http.StatusOK}
			m.next.ServeHTTP(held, req)
		}
	}
	m.countVendorCode(held.Body.Bytes())
	return held
}

// refreshRejected replaces a ticket the vendor rejected, unless a forced
// refresh happened too recently.
func (m *Signer) refreshRejected(req *http.Request, rejected string) (string, bool) {
	fresh, err := m.tickets.Invalidate(req.Context(), rejected)
	if err != nil {
		m.log.log(levelWarn, "vendor rejected the ticket; not retrying", map[string]interface{}{"reason": err.Error()})
		return "", false
	}
	return fresh.Value, true
}

// forwardInspected forwards a request that asks for files. Small answers
// are held back to apply the retry rules: an answer with one of retryCodes
// refreshes the ticket and is retried once, re-signed; a code-0 answer that
// lacks the files asked for is queried again up to mediaRetries times.
// Larger answers (the files themselves, often megabytes) stream through.
func (m *Signer) forwardInspected(rw http.ResponseWriter, req *http.Request, call *signedCall, ticket string) {
	staleRetried := false
	mediaTries := 0
	pollMedia := 0
	if m.settings.recipe.PollsMedia {
		pollMedia = call.media
	}
	for {
		capture := newResponseCapture(rw, m.settings.maxInspectBytes)
		m.next.ServeHTTP(capture, req)
		if !capture.held() {
			return // too large to hold: already streamed to the client
		}
		verdict := m.inspect(capture.body.Bytes(), pollMedia)
		reason := ""
		switch {
		case verdict == verdictStaleTicket && !staleRetried:
			staleRetried = true
			if fresh, ok := m.refreshRejected(req, ticket); ok {
				ticket = fresh
				reason = "stale ticket"
			}
		case verdict == verdictMediaMissing && mediaTries < m.settings.mediaRetries:
			if !sleepWithin(req.Context(), m.settings.mediaRetryDelay) {
				break
			}
			mediaTries++
			fresh, err := m.tickets.Value(req.Context())
			if err != nil {
				break
			}
			ticket = fresh
			reason = "media missing"
		}
		if reason == "" {
			m.countVendorCode(capture.body.Bytes())
			capture.commit()
			return
		}
		m.sign(req, call, ticket)
		m.retried(reason, mediaTries)
	}
}

// ticketUnavailable answers when no ticket can be had: 504 when the vendor
// timed out, 503 while backing off, 502 for anything the vendor said.
func (m *Signer) ticketUnavailable(rw http.ResponseWriter, req *http.Request, err error) {
	if errors.Is(req.Context().Err(), context.Canceled) {
		return // the app gave up: nobody to answer, and not the vendor's fault
	}
	status, code := ticketErrorStatus(err)
	rw.Header().Set("Retry-After", strconv.Itoa(m.tickets.RetryAfterSeconds()))
	m.reject(rw, &rejection{status: status, code: code, msg: "cannot get a SIGN ticket from FaceID: " + err.Error()})
}

// retried counts and logs a repeated vendor call.
func (m *Signer) retried(reason string, mediaTries int) {
	m.counts.add(m.counts.retries, reason)
	m.log.log(levelInfo, "retrying vendor call", map[string]interface{}{"reason": reason, "mediaTries": mediaTries})
}

// countVendorCode counts a held answer's vendor code when it is not "0".
// Vendor answers start with the code, so a prefix test settles the common
// case without decoding.
func (m *Signer) countVendorCode(body []byte) {
	if bytes.HasPrefix(body, successPrefix) {
		return
	}
	var a vendorAnswer
	if json.Unmarshal(body, &a) != nil {
		m.counts.add(m.counts.vendorErrors, "unreadable")
		return
	}
	if code := answerCode(a.Code); code != "0" {
		m.counts.add(m.counts.vendorErrors, code)
	}
}

var successPrefix = []byte(`{"code":"0"`)

func (m *Signer) reject(rw http.ResponseWriter, rej *rejection) {
	m.counts.add(m.counts.rejected, rej.code)
	m.log.log(levelWarn, "request rejected", map[string]interface{}{"status": rej.status, "code": rej.code, "reason": rej.msg})
	writeError(rw, rej.status, rej.code, rej.msg)
}
