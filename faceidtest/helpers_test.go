package faceidtest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/kycgate/faceidsigner/faceidtest"
	"github.com/kycgate/faceidsigner/signer"
)

// Vendor vector of SPEC.md section 4, first row.
const (
	vecApp    = "IDAXXXXX"
	vecOrder  = "orderNo596551"
	vecNonce  = "kHoSxvLZGxSoFsjxlbzEoUzh5PAnTU7T"
	vecTicket = "XO99Qfxlti9iTVgHAjwvJdAZKN3nMuUhrsPdPlPVKlcyS50N6tlLnfuFBPIucaMS"
	vecSign   = "6CD5F0DBCFA1155E2A66754B33C2E67DD358393B"
	secret    = "s3cr3t-value"
)

// fakeClock is an injectable clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// client is a minimal vendor client for the tests: it fetches tokens and
// tickets and signs requests the way SPEC.md section 4 says.
type client struct {
	t     testing.TB
	s     *faceidtest.Server
	hc    *http.Client
	appID string
}

func newClient(t testing.TB, s *faceidtest.Server, appID string) *client {
	return &client{t: t, s: s, hc: s.Client(), appID: appID}
}

// getJSON does a GET and decodes a JSON object answer.
func (c *client) getJSON(path string, q url.Values) map[string]any {
	c.t.Helper()
	resp, err := c.hc.Get(c.s.URL + path + "?" + q.Encode())
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	return decodeObject(c.t, resp)
}

func decodeObject(t testing.TB, resp *http.Response) map[string]any {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d: %s", resp.StatusCode, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("answer is not a JSON object: %v: %.200s", err, body)
	}
	return m
}

func (c *client) tokenAnswer(secret string) map[string]any {
	c.t.Helper()
	return c.getJSON(faceidtest.TokenPath, url.Values{
		"app_id": {c.appID}, "secret": {secret}, "grant_type": {"client_credential"}, "version": {"1.0.0"},
	})
}

func (c *client) token() string {
	c.t.Helper()
	m := c.tokenAnswer(secret)
	if m["code"] != "0" {
		c.t.Fatalf("token: %v", m)
	}
	return m["access_token"].(string)
}

func (c *client) ticketAnswer(token string) map[string]any {
	c.t.Helper()
	return c.getJSON(faceidtest.TicketPath, url.Values{
		"app_id": {c.appID}, "access_token": {token}, "type": {"SIGN"}, "version": {"1.0.0"},
	})
}

func (c *client) ticket(token string) string {
	c.t.Helper()
	m := c.ticketAnswer(token)
	if m["code"] != "0" {
		c.t.Fatalf("ticket: %v", m)
	}
	return m["tickets"].([]any)[0].(map[string]any)["value"].(string)
}

// signed returns the body fields of a signed request for api: the caller's
// fields plus appId, version, nonce and sign.
func (c *client) signed(api, ticket, nonce string, fields map[string]string) map[string]string {
	c.t.Helper()
	recipe, ok := signer.RecipeFor(api)
	if !ok {
		c.t.Fatalf("no recipe %q", api)
	}
	out := map[string]string{}
	for k, v := range fields {
		out[k] = v
	}
	out[recipe.AppIDField] = c.appID
	out[recipe.VersionField] = "1.0.0"
	if recipe.NonceField != "" {
		out[recipe.NonceField] = nonce
	}
	out[recipe.SignField] = recipe.SignValues(out, c.appID, "1.0.0", ticket, nonce)
	return out
}

// post sends body as JSON to path?orderNo=queryOrder.
func (c *client) post(path, queryOrder string, body any) map[string]any {
	c.t.Helper()
	resp := c.postRaw(path, url.Values{"orderNo": {queryOrder}}.Encode(), "application/json", mustJSON(c.t, body))
	defer resp.Body.Close()
	return decodeObject(c.t, resp)
}

func (c *client) postRaw(path, rawQuery, ctype string, body []byte) *http.Response {
	c.t.Helper()
	resp, err := c.hc.Post(c.s.URL+path+"?"+rawQuery, ctype, bytes.NewReader(body))
	if err != nil {
		c.t.Fatalf("POST %s: %v", path, err)
	}
	return resp
}

// query signs and sends a queryfacerecord request.
func (c *client) query(ticket, order string, extra map[string]string) map[string]any {
	c.t.Helper()
	fields := map[string]string{"orderNo": order}
	for k, v := range extra {
		fields[k] = v
	}
	return c.post("/api/v2/base/queryfacerecord", order, c.signed("queryfacerecord", ticket, newNonce(c.t), fields))
}

func newNonce(t testing.TB) string {
	n, err := signer.NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantCode fails unless the answer carries code.
func wantCode(t testing.TB, m map[string]any, code string) {
	t.Helper()
	if m["code"] != code {
		t.Fatalf("code = %v (msg %v), want %s", m["code"], m["msg"], code)
	}
}

// newEmulator starts an emulator with the vector app registered.
func newEmulator(t testing.TB) (*faceidtest.Server, *client) {
	s := faceidtest.NewServer()
	t.Cleanup(s.Close)
	s.AddApp(vecApp, secret)
	return s, newClient(t, s, vecApp)
}

func result(m map[string]any) map[string]any {
	r, _ := m["result"].(map[string]any)
	return r
}
