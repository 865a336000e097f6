// Package faceidtest runs an emulator of the Tencent Cloud FaceID server APIs
// on a loopback port, in the style of net/http/httptest: the access token and
// SIGN ticket endpoints, and the signed query APIs (queryfacerecord and the
// others of SPEC.md section 8), with the vendor's lifetime rules (a superseded
// token and its tickets live on for a short overlap, a ticket dies with its
// token), an injectable clock, injectable faults, and counters and records
// that tests can assert on. It is real HTTP: start it with NewServer, point a
// client at Server.URL, and Close it when done. Every method is safe for
// concurrent use.
package faceidtest

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kycgate/faceidsigner/signer"
)

// Vendor codes the emulator answers with.
const (
	// CodeOK is the vendor's success code.
	CodeOK = "0"
	// CodeIllegalRequest is the vendor's "illegal request": the emulator
	// answers it for every failed check of a signed request (bad appId,
	// version, nonce, orderNo, sign, dead ticket, wrong ?orderNo=, body).
	CodeIllegalRequest = "400101"
	// CodeNoResult is the vendor's "no such result" for an unknown order.
	CodeNoResult = "66660011"
	// CodeOAuthRejected is the emulator's own choice for every failure of
	// the access token and ticket endpoints (unknown app, wrong secret,
	// wrong grant_type, type or version, dead or unknown token). The vendor's
	// code for these is not public; a client should treat any code other
	// than "0" as a failure.
	CodeOAuthRejected = "400102"
	// MsgOK is the vendor's success message.
	MsgOK = "请求成功"
)

// Defaults of the lifetime settings (SPEC.md sections 2 and 3).
const (
	DefaultTokenLifetime  = 7200 * time.Second
	DefaultTicketLifetime = 3600 * time.Second
	DefaultOverlap        = 60 * time.Second
	// ResultRetention is how long a registered result can be queried
	// (the vendor keeps results 3 days).
	ResultRetention = 72 * time.Hour
	// MaxRecordedRequests is how many signed-API requests Requests keeps
	// at least (the most recent ones); counters stay exact beyond it.
	MaxRecordedRequests = 10000
	// maxSignedBody is the largest signed-API request body read.
	maxSignedBody = 1 << 20
)

// Paths of the OAuth endpoints.
const (
	TokenPath  = "/api/oauth2/access_token"
	TicketPath = "/api/oauth2/api_ticket"
)

// Server is a FaceID emulator. Create it with NewServer (started) or
// NewUnstartedServer; the zero value is not usable.
type Server struct {
	// URL is the base URL, "http://127.0.0.1:port", set by Start.
	URL string

	handler   http.Handler
	hs        *httptest.Server
	startOnce sync.Once
	closeOnce sync.Once
	closed    chan struct{}

	tokenCalls  atomic.Int64
	ticketCalls atomic.Int64
	queryCalls  atomic.Int64

	mu                sync.Mutex
	clock             func() time.Time
	overlap           time.Duration
	tokenLifetime     time.Duration
	ticketLifetime    time.Duration
	expireInNumber    bool
	requireOrderQuery bool
	apps              map[string]*app
	tokens            map[string]*token
	issuedTokens      []string
	issuedTickets     []string
	nextTokens        []string
	nextTickets       []string
	results           map[resultKey]*storedResult
	faults            map[Endpoint]*Fault
	tokenHook         func(map[string]any)
	ticketHook        func(map[string]any)
	codeCounts        map[string]int
	requests          []Request
}

// Request is one signed-API request as the emulator received it, and what it
// answered.
type Request struct {
	API      string // recipe name, e.g. "queryfacerecord"
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
	Time     time.Time // emulator clock at arrival
	Status   int       // HTTP status answered; 0 if nothing was answered
	Code     string    // vendor code answered; "" for a non-JSON answer
	Msg      string    // vendor msg answered (says which check failed)
}

type app struct {
	id      string
	secret  string
	current *token
	tickets []*ticket
}

type token struct {
	value      string
	appID      string
	expiresAt  time.Time
	superseded time.Time // zero while it is the app's newest token
	revoked    bool
}

type ticket struct {
	value     string
	tok       *token
	expiresAt time.Time
}

// NewServer returns a started emulator listening on 127.0.0.1:0. Close it
// when done.
func NewServer() *Server {
	s := NewUnstartedServer()
	s.Start()
	return s
}

// NewUnstartedServer returns an emulator that does not listen yet: configure
// it, then call Start, or serve Handler on an address of your choice.
func NewUnstartedServer() *Server {
	s := &Server{
		closed:            make(chan struct{}),
		clock:             time.Now,
		overlap:           DefaultOverlap,
		tokenLifetime:     DefaultTokenLifetime,
		ticketLifetime:    DefaultTicketLifetime,
		requireOrderQuery: true,
		apps:              map[string]*app{},
		tokens:            map[string]*token{},
		results:           map[resultKey]*storedResult{},
		faults:            map[Endpoint]*Fault{},
		codeCounts:        map[string]int{},
	}
	s.handler = s.newMux()
	return s
}

// Start starts listening on 127.0.0.1:0 and sets URL. Calling it again does
// nothing.
func (s *Server) Start() {
	s.startOnce.Do(func() {
		s.hs = httptest.NewServer(s.handler)
		s.URL = s.hs.URL
	})
}

// Close stops the server: pending fault delays end at once, then it waits
// for in-flight requests like httptest.Server.Close.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
	if s.hs != nil {
		s.hs.Close()
	}
}

// Client returns an HTTP client for the started server (httptest's).
func (s *Server) Client() *http.Client {
	if s.hs == nil {
		return http.DefaultClient
	}
	return s.hs.Client()
}

// Handler returns the emulator's HTTP handler, to serve it on a fixed
// address (see cmd/faceid-emulator).
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) newMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(TokenPath, s.serveToken)
	mux.HandleFunc(TicketPath, s.serveTicket)
	for _, name := range signer.APIs() {
		recipe, _ := signer.RecipeFor(name)
		mux.HandleFunc(recipe.Path, func(w http.ResponseWriter, r *http.Request) {
			s.serveSigned(w, r, recipe)
		})
	}
	return mux
}

// AddApp registers app credentials; several apps may be registered.
// Registering a known app with a different secret acts like changing the
// secret in the vendor console: every token and ticket of the app dies.
func (s *Server) AddApp(appID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.apps[appID]; ok {
		if a.secret != secret {
			a.secret = secret
			s.revokeLocked(a)
		}
		return
	}
	s.apps[appID] = &app{id: appID, secret: secret}
}

// RevokeTokens kills every token and ticket of appID now, as a secret change
// in the vendor console does. Signed requests with its tickets then get
// 400101 until the client fetches a new token and ticket.
func (s *Server) RevokeTokens(appID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.apps[appID]; ok {
		s.revokeLocked(a)
	}
}

func (s *Server) revokeLocked(a *app) {
	for _, t := range s.tokens {
		if t.appID == a.id {
			t.revoked = true
		}
	}
	a.current = nil
}

// SetClock sets the clock used for every lifetime decision and every time
// the emulator reports; nil restores time.Now. Fault delays use real time.
func (s *Server) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = now
}

// SetOverlap sets how long a superseded token, and the tickets it issued,
// stay valid after a newer token of the same app is issued (default 60s).
// It applies to tokens already superseded too.
func (s *Server) SetOverlap(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.overlap = d
}

// SetLifetimes sets the lifetimes of tokens and tickets issued from now on
// (defaults 7200s and 3600s), reported in whole seconds as expire_in.
func (s *Server) SetLifetimes(token, ticket time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenLifetime = token
	s.ticketLifetime = ticket
}

// SetExpireInAsNumber makes expire_in a JSON number (7200) instead of the
// string the vendor's examples show ("7200").
func (s *Server) SetExpireInAsNumber(number bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireInNumber = number
}

// SetRequireOrderNoQuery says whether a POST signed request without the
// `?orderNo=` query parameter is rejected (default true). A present
// parameter that differs from the body's orderNo is always rejected.
func (s *Server) SetRequireOrderNoQuery(require bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requireOrderQuery = require
}

// SetNextTokenValue queues a value for the next access token issued (to
// any app) instead of a random one. Each call queues one more value.
func (s *Server) SetNextTokenValue(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextTokens = append(s.nextTokens, v)
}

// SetNextTicketValue queues a value for the next SIGN ticket issued instead
// of a random one, e.g. the ticket of a vendor signature vector.
func (s *Server) SetNextTicketValue(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextTickets = append(s.nextTickets, v)
}

// SetTokenResponseHook sets a function that may edit the JSON object of
// every successful access token answer before it is written (nil removes
// it). Keys: code, msg, transactionTime, access_token, expire_time,
// expire_in. The issued token is valid whatever the hook writes.
func (s *Server) SetTokenResponseHook(hook func(map[string]any)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenHook = hook
}

// SetTicketResponseHook sets a function that may edit the JSON object of
// every successful ticket answer before it is written (nil removes it), to
// emulate malformed answers. m["tickets"] is a []any holding one
// map[string]any with keys value, expire_in and expire_time, e.g.
// m["tickets"].([]any)[0].(map[string]any)["expire_in"] = "-1", or
// m["tickets"] = []any{} or delete(m, "tickets").
func (s *Server) SetTicketResponseHook(hook func(map[string]any)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ticketHook = hook
}

// TokenCalls returns how many requests reached the access token endpoint,
// faulted ones included.
func (s *Server) TokenCalls() int { return int(s.tokenCalls.Load()) }

// TicketCalls returns how many requests reached the ticket endpoint,
// faulted ones included.
func (s *Server) TicketCalls() int { return int(s.ticketCalls.Load()) }

// QueryCalls returns how many requests reached any signed-API endpoint,
// faulted ones included.
func (s *Server) QueryCalls() int { return int(s.queryCalls.Load()) }

// CodeCount returns how many signed-API answers carried the vendor code
// (e.g. "400101"), injected fault codes included.
func (s *Server) CodeCount(code string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.codeCounts[code]
}

// Requests returns the recorded signed-API requests, oldest first (at least
// the last MaxRecordedRequests). A request is recorded before its answer is
// written.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	copy(out, s.requests)
	return out
}

// IssuedTokens returns every access token value issued, oldest first.
func (s *Server) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issuedTokens...)
}

// IssuedTickets returns every SIGN ticket value issued, oldest first.
func (s *Server) IssuedTickets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issuedTickets...)
}

// Secrets returns every value that must never leak out of a gateway: the
// registered app secrets and every token and ticket issued.
func (s *Server) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.apps)+len(s.issuedTokens)+len(s.issuedTickets))
	for _, a := range s.apps {
		out = append(out, a.secret)
	}
	out = append(out, s.issuedTokens...)
	return append(out, s.issuedTickets...)
}

// ResetCounters zeroes the call counters and code counts and forgets the
// recorded requests. Apps, tokens, tickets, results and faults stay.
func (s *Server) ResetCounters() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenCalls.Store(0)
	s.ticketCalls.Store(0)
	s.queryCalls.Store(0)
	s.codeCounts = map[string]int{}
	s.requests = nil
}

// record appends a signed-API request record and counts its code.
func (s *Server) record(rec Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec.Code != "" {
		s.codeCounts[rec.Code]++
	}
	if len(s.requests) >= 2*MaxRecordedRequests {
		n := copy(s.requests, s.requests[len(s.requests)-MaxRecordedRequests:])
		clear(s.requests[n:])
		s.requests = s.requests[:n]
	}
	s.requests = append(s.requests, rec)
}

// alive reports whether t can still be used at now.
func (s *Server) tokenAliveLocked(t *token, now time.Time) bool {
	if t == nil || t.revoked || !now.Before(t.expiresAt) {
		return false
	}
	return t.superseded.IsZero() || now.Before(t.superseded.Add(s.overlap))
}

func (s *Server) ticketAliveLocked(k *ticket, now time.Time) bool {
	return now.Before(k.expiresAt) && s.tokenAliveLocked(k.tok, now)
}
