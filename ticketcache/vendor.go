package ticketcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Errors returned by the vendor client and the cache. They are sentinels,
// wrapped with a description that never contains the secret, the token or
// the ticket, so that callers can test them with errors.Is and show the text.
var (
	// ErrUnreachable: the vendor could not be reached or answered with an
	// HTTP error status.
	ErrUnreachable = errors.New("FaceID OAuth endpoint unreachable")
	// ErrTimeout: the vendor did not answer within the configured timeout.
	ErrTimeout = errors.New("FaceID OAuth endpoint timed out")
	// ErrRefused: the vendor answered with a code other than "0" (wrong
	// app id or secret, rotated secret, rate limit...).
	ErrRefused = errors.New("FaceID OAuth endpoint refused the request")
	// ErrMalformed: the vendor's answer could not be understood.
	ErrMalformed = errors.New("FaceID OAuth endpoint sent a malformed answer")
	// ErrNoTicket: no valid ticket is cached and the last refresh failed
	// recently; the cache is backing off before it asks the vendor again.
	ErrNoTicket = errors.New("no valid SIGN ticket: refresh is backing off after a failure")
)

// Documented lifetimes (SPEC.md sections 2 and 3). A vendor answer without a
// readable expire_in gets these; a larger expire_in is capped to them.
const (
	DefaultTokenLifetime  = 7200 * time.Second
	DefaultTicketLifetime = 3600 * time.Second
)

// maxOAuthResponseBytes bounds what is read from the token and ticket
// endpoints; their answers are a few hundred bytes.
const maxOAuthResponseBytes = 64 << 10

// OAuthVersion is the `version` parameter of the token and ticket calls.
const OAuthVersion = "1.0.0"

// DefaultAppIDParam is the name of the app id parameter of the token and
// ticket calls on miniprogram-kyc (SPEC.md section 2; one kyc1 page spells
// it appId).
const DefaultAppIDParam = "app_id"

// Client fetches access tokens and SIGN tickets from the vendor. Caching and
// scheduling belong to Cache; the only state a Client keeps is a token whose
// ticket call failed, so that the retry asks for a ticket with it instead of
// killing it with yet another token.
type Client struct {
	// Endpoint is the vendor base URL, e.g. https://miniprogram-kyc.tencentcloudapi.com.
	Endpoint string
	AppID    string
	Secret   string
	// AppIDParam names the app id query parameter; empty means app_id.
	AppIDParam string
	// Timeout bounds each HTTP call.
	Timeout time.Duration
	// HTTP is the client used; nil means a client with its own transport.
	HTTP *http.Client
	// Now is the clock that stamps FetchedAt; nil means time.Now.
	Now func() time.Time

	mu              sync.Mutex
	unusedToken     Token
	unusedTokenFrom time.Time
}

// Token is an access token and how long the vendor said it lives.
type Token struct {
	Value    string
	Lifetime time.Duration
}

// FetchToken asks for a new access token. Every successful call makes the
// previous token of this app id die about a minute later (SPEC.md section 2):
// never call it concurrently for one app id.
func (c *Client) FetchToken(ctx context.Context) (Token, error) {
	q := url.Values{}
	q.Set(c.appIDParam(), c.AppID)
	q.Set("secret", c.Secret)
	q.Set("grant_type", "client_credential")
	q.Set("version", OAuthVersion)
	body, err := c.get(ctx, "/api/oauth2/access_token", q, "access_token")
	if err != nil {
		return Token{}, err
	}
	return ParseTokenResponse(body)
}

// FetchTicket asks for a SIGN ticket issued by token.
func (c *Client) FetchTicket(ctx context.Context, token string) (Ticket, error) {
	q := url.Values{}
	q.Set(c.appIDParam(), c.AppID)
	q.Set("access_token", token)
	q.Set("type", "SIGN")
	q.Set("version", OAuthVersion)
	body, err := c.get(ctx, "/api/oauth2/api_ticket", q, "api_ticket")
	if err != nil {
		return Ticket{}, err
	}
	return ParseTicketResponse(body)
}

// Fetch gets a new access token and a SIGN ticket from it. The ticket's
// lifetime is the shorter of the two, counted from before the token call.
//
// When the token call succeeds and the ticket call fails, the vendor has
// already doomed the previous token and its tickets: the error comes with
// a Ticket whose OldTokenSupersededAt says since when, and the new token is
// kept for the next Fetch, which asks only for a ticket.
func (c *Client) Fetch(ctx context.Context) (Ticket, error) {
	started := c.now()
	token, tokenFrom, reused := c.takeUnusedToken(started)
	if !reused {
		fresh, err := c.FetchToken(ctx)
		if err != nil {
			return Ticket{}, err
		}
		token = fresh
		tokenFrom = started
	}
	ticket, err := c.FetchTicket(ctx, token.Value)
	if err != nil {
		// Keep the token for the retry only when the failure was on the
		// way (timeout, unreachable): a refused token is dead.
		if errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnreachable) {
			c.keepUnusedToken(token, tokenFrom)
		}
		var failed Ticket
		failed.OldTokenSupersededAt = tokenFrom
		return failed, err
	}
	// Counted from the token's fetch: the ticket ends with its token or at
	// its own expire_in from the ticket call, whichever comes first.
	lifetime := started.Sub(tokenFrom) + ticket.Lifetime
	if token.Lifetime < lifetime {
		lifetime = token.Lifetime
	}
	ticket.Lifetime = lifetime
	ticket.FetchedAt = tokenFrom
	return ticket, nil
}

// takeUnusedToken returns a token kept from a failed ticket call if it
// still has at least a minute to live.
func (c *Client) takeUnusedToken(now time.Time) (Token, time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	token := c.unusedToken
	from := c.unusedTokenFrom
	c.unusedToken = Token{}
	if token.Value == "" || now.Sub(from) > token.Lifetime-time.Minute {
		return Token{}, time.Time{}, false
	}
	return token, from, true
}

func (c *Client) keepUnusedToken(token Token, from time.Time) {
	c.mu.Lock()
	c.unusedToken = token
	c.unusedTokenFrom = from
	c.mu.Unlock()
}

func (c *Client) appIDParam() string {
	if c.AppIDParam != "" {
		return c.AppIDParam
	}
	return DefaultAppIDParam
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// get performs one GET and returns the body. Errors name the endpoint by its
// short name only: the URL carries the secret or the token.
func (c *Client) get(ctx context.Context, path string, query url.Values, name string) ([]byte, error) {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.Endpoint, "/")+path+"?"+query.Encode(), nil)
	if err != nil {
		return nil, wrapf(ErrUnreachable, name+": cannot build request to "+c.Endpoint)
	}
	httpClient := c.HTTP
	if httpClient == nil {
		httpClient = defaultHTTPClient
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, describeTransportError(name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxOAuthResponseBytes))
	if err != nil {
		return nil, describeTransportError(name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, wrapf(ErrUnreachable, name+": HTTP status "+strconv.Itoa(resp.StatusCode))
	}
	return body, nil
}

var defaultHTTPClient = &http.Client{Transport: &http.Transport{
	Proxy:               http.ProxyFromEnvironment,
	MaxIdleConnsPerHost: 2,
	IdleConnTimeout:     90 * time.Second,
	TLSHandshakeTimeout: 10 * time.Second,
}}

// describeTransportError turns an http.Client error into one of the
// sentinels. *url.Error would print the full URL, secret included, so only
// its inner error is used.
func describeTransportError(name string, err error) error {
	inner := err
	if ue, ok := err.(*url.Error); ok {
		inner = ue.Err
		if ue.Timeout() {
			return wrapf(ErrTimeout, name)
		}
	}
	if errors.Is(inner, context.DeadlineExceeded) {
		return wrapf(ErrTimeout, name)
	}
	if errors.Is(inner, context.Canceled) {
		return wrapf(ErrUnreachable, name+": request cancelled")
	}
	return wrapf(ErrUnreachable, name+": "+inner.Error())
}

// oauthResponse is the common shape of the token and ticket answers. Codes
// and lifetimes are read leniently: string or number.
type oauthResponse struct {
	Code        json.RawMessage `json:"code"`
	Msg         string          `json:"msg"`
	AccessToken string          `json:"access_token"`
	ExpireIn    json.RawMessage `json:"expire_in"`
	Tickets     []ticketEntry   `json:"tickets"`
}

type ticketEntry struct {
	Value    string          `json:"value"`
	ExpireIn json.RawMessage `json:"expire_in"`
}

// ParseTokenResponse reads an access_token answer.
func ParseTokenResponse(body []byte) (Token, error) {
	var r oauthResponse
	if err := decodeOAuth(body, &r, "access_token"); err != nil {
		return Token{}, err
	}
	if r.AccessToken == "" {
		return Token{}, wrapf(ErrMalformed, "access_token: code 0 but no access_token")
	}
	lifetime, err := parseLifetime(r.ExpireIn, DefaultTokenLifetime)
	if err != nil {
		return Token{}, wrapf(ErrMalformed, "access_token: "+err.Error())
	}
	var t Token
	t.Value = r.AccessToken
	t.Lifetime = lifetime
	return t, nil
}

// ParseTicketResponse reads an api_ticket answer; the ticket is tickets[0].
// FetchedAt is left zero for the caller to set.
func ParseTicketResponse(body []byte) (Ticket, error) {
	var r oauthResponse
	if err := decodeOAuth(body, &r, "api_ticket"); err != nil {
		return Ticket{}, err
	}
	if len(r.Tickets) == 0 || r.Tickets[0].Value == "" {
		return Ticket{}, wrapf(ErrMalformed, "api_ticket: code 0 but no ticket in tickets[0].value")
	}
	lifetime, err := parseLifetime(r.Tickets[0].ExpireIn, DefaultTicketLifetime)
	if err != nil {
		return Ticket{}, wrapf(ErrMalformed, "api_ticket: "+err.Error())
	}
	var t Ticket
	t.Value = r.Tickets[0].Value
	t.Lifetime = lifetime
	return t, nil
}

func decodeOAuth(body []byte, r *oauthResponse, name string) error {
	if err := json.Unmarshal(body, r); err != nil {
		return wrapf(ErrMalformed, name+": answer is not the expected JSON object ("+describeBody(body)+")")
	}
	code := codeString(r.Code)
	if code == "" {
		return wrapf(ErrMalformed, name+": answer has no code")
	}
	if code != "0" {
		return wrapf(ErrRefused, name+": vendor code "+code+" msg "+strconv.Quote(truncate(r.Msg, 200)))
	}
	return nil
}

// CodeString returns a vendor code given as a JSON string or number as a
// string, or "" when raw is absent or of another type.
func codeString(raw json.RawMessage) string {
	s := strings.TrimSpace(string(raw))
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		var unquoted string
		if json.Unmarshal(raw, &unquoted) == nil {
			return strings.TrimSpace(unquoted)
		}
		return ""
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return s
	}
	return ""
}

var errLifetime = errors.New("expire_in is zero or negative: the vendor says the credential is already dead")

// parseLifetime reads expire_in (seconds, string or number). Absent or
// unreadable values take def; values above def are capped to def; zero or
// negative values are an error.
func parseLifetime(raw json.RawMessage, def time.Duration) (time.Duration, error) {
	s := codeString(raw)
	if s == "" {
		return def, nil
	}
	secs, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return def, nil
	}
	if secs <= 0 {
		return 0, errLifetime
	}
	if secs >= def.Seconds() {
		return def, nil
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// describeBody says what kind of non-JSON body arrived without quoting it
// (an HTML error page could echo the request URL).
func describeBody(body []byte) string {
	trimmed := strings.TrimSpace(string(body))
	switch {
	case trimmed == "":
		return "empty body"
	case strings.HasPrefix(trimmed, "<"):
		return "HTML or XML, " + strconv.Itoa(len(body)) + " bytes"
	default:
		return strconv.Itoa(len(body)) + " bytes"
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// wrapf returns an error that Is sentinel and reads "sentinel: detail".
// (fmt.Errorf with a sentinel error variable is what yaegi handles; custom
// error types with Unwrap are not.)
func wrapf(sentinel error, detail string) error {
	return fmt.Errorf("%w: %s", sentinel, detail)
}
