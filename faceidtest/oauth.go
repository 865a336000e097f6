package faceidtest

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// serveToken answers GET /api/oauth2/access_token (SPEC.md section 2).
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	s.tokenCalls.Add(1)
	if fault := s.applyFault(r, TokenEndpoint); fault.handled {
		fault.write(w)
		return
	}
	if r.Method != http.MethodGet {
		writeMethodNotAllowed(w)
		return
	}
	q := r.URL.Query()
	appID := appIDParam(q.Get("app_id"), q.Get("appId"))

	s.mu.Lock()
	now := s.clock()
	a := s.apps[appID]
	var problem string
	switch {
	case appID == "":
		problem = "app_id is missing"
	case a == nil:
		problem = "app_id is not registered"
	case subtle.ConstantTimeCompare([]byte(q.Get("secret")), []byte(a.secret)) != 1:
		problem = "secret is wrong"
	case q.Get("grant_type") != "client_credential":
		problem = "grant_type must be client_credential"
	case q.Get("version") != "1.0.0":
		problem = "version must be 1.0.0"
	}
	if problem != "" {
		s.mu.Unlock()
		writeOAuthError(w, problem, now)
		return
	}
	tok := s.issueTokenLocked(a, now)
	lifetime := s.tokenLifetime
	number := s.expireInNumber
	hook := s.tokenHook
	s.mu.Unlock()

	m := map[string]any{
		"code":            CodeOK,
		"msg":             MsgOK,
		"transactionTime": vendorTime(now),
		"access_token":    tok.value,
		"expire_time":     vendorTime(tok.expiresAt),
		"expire_in":       expireIn(lifetime, number),
	}
	if hook != nil {
		hook(m)
	}
	writeJSON(w, http.StatusOK, m)
}

// issueTokenLocked issues a new token for a; the app's previous newest token
// becomes superseded at now.
func (s *Server) issueTokenLocked(a *app, now time.Time) *token {
	if a.current != nil && a.current.superseded.IsZero() {
		a.current.superseded = now
	}
	value := randomSecret()
	if len(s.nextTokens) > 0 {
		value = s.nextTokens[0]
		s.nextTokens = s.nextTokens[1:]
	}
	t := &token{value: value, appID: a.id, expiresAt: now.Add(s.tokenLifetime)}
	a.current = t
	s.tokens[value] = t
	s.issuedTokens = append(s.issuedTokens, value)
	return t
}

// serveTicket answers GET /api/oauth2/api_ticket (SPEC.md section 3).
func (s *Server) serveTicket(w http.ResponseWriter, r *http.Request) {
	s.ticketCalls.Add(1)
	if fault := s.applyFault(r, TicketEndpoint); fault.handled {
		fault.write(w)
		return
	}
	if r.Method != http.MethodGet {
		writeMethodNotAllowed(w)
		return
	}
	q := r.URL.Query()
	appID := appIDParam(q.Get("app_id"), q.Get("appId"))

	s.mu.Lock()
	now := s.clock()
	a := s.apps[appID]
	tok := s.tokens[q.Get("access_token")]
	var problem string
	switch {
	case appID == "":
		problem = "app_id is missing"
	case a == nil:
		problem = "app_id is not registered"
	case q.Get("type") != "SIGN":
		problem = "type must be SIGN (NONCE tickets are not emulated)"
	case q.Get("version") != "1.0.0":
		problem = "version must be 1.0.0"
	case tok == nil || tok.appID != appID:
		problem = "access_token is not valid for this app_id"
	case !s.tokenAliveLocked(tok, now):
		problem = "access_token has expired or was superseded"
	}
	if problem != "" {
		s.mu.Unlock()
		writeOAuthError(w, problem, now)
		return
	}
	value := randomSecret()
	if len(s.nextTickets) > 0 {
		value = s.nextTickets[0]
		s.nextTickets = s.nextTickets[1:]
	}
	k := &ticket{value: value, tok: tok, expiresAt: now.Add(s.ticketLifetime)}
	a.tickets = append(a.tickets, k)
	s.issuedTickets = append(s.issuedTickets, value)
	lifetime := s.ticketLifetime
	number := s.expireInNumber
	hook := s.ticketHook
	s.mu.Unlock()

	m := map[string]any{
		"code":            CodeOK,
		"msg":             MsgOK,
		"transactionTime": vendorTime(now),
		"tickets": []any{map[string]any{
			"value":       value,
			"expire_in":   expireIn(lifetime, number),
			"expire_time": vendorTime(k.expiresAt),
		}},
	}
	if hook != nil {
		hook(m)
	}
	writeJSON(w, http.StatusOK, m)
}

// appIDParam accepts the app id as app_id or, as one kyc1 page spells it,
// appId.
func appIDParam(snake, camel string) string {
	if snake != "" {
		return snake
	}
	return camel
}

func writeOAuthError(w http.ResponseWriter, msg string, now time.Time) {
	writeJSON(w, http.StatusOK, map[string]any{
		"code":            CodeOAuthRejected,
		"msg":             msg,
		"transactionTime": vendorTime(now),
	})
}

func writeMethodNotAllowed(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusMethodNotAllowed)
	_, _ = w.Write([]byte("method not allowed\n"))
}

// writeJSON writes m as the vendor does: UTF-8 JSON, HTML characters not
// escaped.
func writeJSON(w http.ResponseWriter, status int, m map[string]any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		// Only a hook can put something unencodable in m.
		http.Error(w, "faceidtest: cannot encode answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	body := bytes.TrimRight(buf.Bytes(), "\n")
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// expireIn is a lifetime in whole seconds, as a string like the vendor's
// examples or as a number.
func expireIn(d time.Duration, number bool) any {
	secs := int64(d / time.Second)
	if number {
		return secs
	}
	return strconv.FormatInt(secs, 10)
}

// vendorZone is the vendor's clock zone (China Standard Time).
var vendorZone = time.FixedZone("CST", 8*3600)

// vendorTime formats t as the vendor's yyyyMMddHHmmss.
func vendorTime(t time.Time) string {
	return t.In(vendorZone).Format("20060102150405")
}

// randomSecret returns 64 random hex characters (from two UUIDs), the
// length of the vendor's example ticket.
func randomSecret() string {
	return strings.ReplaceAll(uuid.NewString()+uuid.NewString(), "-", "")
}

// newBizSeqNo returns a 32-digit business sequence number like the
// vendor's: the time, then random digits.
func newBizSeqNo(now time.Time) string {
	u := uuid.New()
	var b strings.Builder
	b.WriteString(now.In(vendorZone).Format("0601021504"))
	for i := 0; i < 11; i++ {
		fmt.Fprintf(&b, "%02d", int(u[i])%100)
	}
	return b.String()
}
