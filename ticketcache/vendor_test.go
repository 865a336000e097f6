package ticketcache

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kycgate/faceidsigner/faceidtest"
)

const (
	testAppID  = "IDAXXXXX"
	testSecret = "s3cr3t-value-for-tests-0123456789"
)

func newVendor(t *testing.T) (*faceidtest.Server, *Client) {
	t.Helper()
	emu := faceidtest.NewServer()
	t.Cleanup(emu.Close)
	emu.AddApp(testAppID, testSecret)
	return emu, &Client{Endpoint: emu.URL, AppID: testAppID, Secret: testSecret, Timeout: 2 * time.Second}
}

func TestClientFetch(t *testing.T) {
	emu, client := newVendor(t)
	before := time.Now()
	ticket, err := client.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	issued := emu.IssuedTickets()
	if len(issued) != 1 || ticket.Value != issued[0] {
		t.Fatalf("got a ticket the emulator did not issue (issued %d)", len(issued))
	}
	if ticket.Lifetime != time.Hour {
		t.Errorf("lifetime = %s, want 1h (the shorter of token 7200 s and ticket 3600 s)", ticket.Lifetime)
	}
	if ticket.FetchedAt.Before(before) || ticket.FetchedAt.After(time.Now()) {
		t.Errorf("FetchedAt %s not stamped before the token call", ticket.FetchedAt)
	}
	if emu.TokenCalls() != 1 || emu.TicketCalls() != 1 {
		t.Errorf("calls: token %d ticket %d, want 1 and 1", emu.TokenCalls(), emu.TicketCalls())
	}
}

func TestClientFetchNumericExpireIn(t *testing.T) {
	emu, client := newVendor(t)
	emu.SetExpireInAsNumber(true)
	emu.SetLifetimes(600*time.Second, 300*time.Second)
	ticket, err := client.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ticket.Lifetime != 300*time.Second {
		t.Errorf("lifetime = %s, want 5m", ticket.Lifetime)
	}
}

// assertNoCredential fails when err's text contains the secret or any token
// or ticket the emulator issued.
func assertNoCredential(t *testing.T, emu *faceidtest.Server, err error) {
	t.Helper()
	text := err.Error()
	for _, s := range append([]string{testSecret}, emu.Secrets()...) {
		if s != "" && strings.Contains(text, s) {
			t.Fatalf("error text leaks a credential: %q", text)
		}
	}
}

func TestClientErrors(t *testing.T) {
	cases := []struct {
		name  string
		setup func(emu *faceidtest.Server, c *Client)
		want  error
	}{
		{"wrong secret", func(emu *faceidtest.Server, c *Client) { c.Secret = "wrong-" + testSecret }, ErrRefused},
		{"token 502", func(emu *faceidtest.Server, c *Client) {
			emu.SetFault(faceidtest.TokenEndpoint, faceidtest.Fault{Status: 502})
		}, ErrUnreachable},
		{"ticket code", func(emu *faceidtest.Server, c *Client) {
			emu.SetFault(faceidtest.TicketEndpoint, faceidtest.Fault{Code: "400103", Msg: "ticket error"})
		}, ErrRefused},
		{"token html", func(emu *faceidtest.Server, c *Client) {
			emu.SetFault(faceidtest.TokenEndpoint, faceidtest.Fault{Body: "<html>" + c.Secret + "</html>"})
		}, ErrMalformed},
		{"ticket empty body", func(emu *faceidtest.Server, c *Client) {
			emu.SetFault(faceidtest.TicketEndpoint, faceidtest.Fault{RawBody: true})
		}, ErrMalformed},
		{"token slow", func(emu *faceidtest.Server, c *Client) {
			c.Timeout = 100 * time.Millisecond
			emu.SetFault(faceidtest.TokenEndpoint, faceidtest.Fault{Delay: 2 * time.Second})
		}, ErrTimeout},
		{"connection closed", func(emu *faceidtest.Server, c *Client) {
			emu.SetFault(faceidtest.TokenEndpoint, faceidtest.Fault{CloseConn: true})
		}, ErrUnreachable},
		{"tickets missing", func(emu *faceidtest.Server, c *Client) {
			emu.SetTicketResponseHook(func(m map[string]any) { delete(m, "tickets") })
		}, ErrMalformed},
		{"expire_in negative", func(emu *faceidtest.Server, c *Client) {
			emu.SetTicketResponseHook(func(m map[string]any) {
				m["tickets"] = []any{map[string]any{"value": "T", "expire_in": -5}}
			})
		}, ErrMalformed},
	}
	for _, tc := range cases {
		tc := tc
		t.Run(tc.name, func(t *testing.T) {
			emu, client := newVendor(t)
			tc.setup(emu, client)
			_, err := client.Fetch(context.Background())
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			assertNoCredential(t, emu, err)
		})
	}
}

func TestClientConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	client := &Client{Endpoint: "http://" + addr, AppID: testAppID, Secret: testSecret, Timeout: time.Second}
	_, err = client.Fetch(context.Background())
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), "secret=") {
		t.Fatalf("error text leaks the URL: %q", err)
	}
}

func TestParseLifetime(t *testing.T) {
	cases := []struct {
		raw     string
		want    time.Duration
		wantErr bool
	}{
		{`"3600"`, time.Hour, false},
		{`3600`, time.Hour, false},
		{`"120"`, 2 * time.Minute, false},
		{`1.5`, 1500 * time.Millisecond, false},
		{``, time.Hour, false},      // missing: documented lifetime
		{`null`, time.Hour, false},  // null: documented lifetime
		{`"abc"`, time.Hour, false}, // unreadable: documented lifetime
		{`1e300`, time.Hour, false}, // huge: capped
		{`"99999999999"`, time.Hour, false},
		{`0`, 0, true},
		{`"-1"`, 0, true},
	}
	for _, c := range cases {
		got, err := parseLifetime([]byte(c.raw), time.Hour)
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("parseLifetime(%s) = %s, %v; want %s, err %v", c.raw, got, err, c.want, c.wantErr)
		}
	}
}

func TestParseResponses(t *testing.T) {
	good := []struct{ body, value string }{
		{`{"code":"0","access_token":"A","expire_in":"7200"}`, "A"},
		{`{"code":0,"access_token":"A","expire_in":7200}`, "A"},
		{`{"code":"0","access_token":"A"}`, "A"},
	}
	for _, g := range good {
		tok, err := ParseTokenResponse([]byte(g.body))
		if err != nil || tok.Value != g.value {
			t.Errorf("ParseTokenResponse(%s) = %+v, %v", g.body, tok, err)
		}
	}
	bad := map[string]error{
		``:                                   ErrMalformed,
		`not json`:                           ErrMalformed,
		`<html><body>502</body></html>`:      ErrMalformed,
		`[]`:                                 ErrMalformed,
		`{}`:                                 ErrMalformed,
		`{"code":"0"}`:                       ErrMalformed,
		`{"code":"66660004","msg":"secret"}`: ErrRefused,
		`{"code":true,"access_token":"A"}`:   ErrMalformed,
		`{"code":"0","access_token":"A","expire_in":"0"}`: ErrMalformed,
	}
	for body, want := range bad {
		if _, err := ParseTokenResponse([]byte(body)); !errors.Is(err, want) {
			t.Errorf("ParseTokenResponse(%q) err = %v, want %v", body, err, want)
		}
	}
	tickets := map[string]error{
		`{"code":"0","tickets":[]}`:                                  ErrMalformed,
		`{"code":"0"}`:                                               ErrMalformed,
		`{"code":"0","tickets":[{"value":""}]}`:                      ErrMalformed,
		`{"code":"0","tickets":null}`:                                ErrMalformed,
		`{"code":"0","tickets":{"value":"x"}}`:                       ErrMalformed,
		`{"code":"1","tickets":[{"value":"x"}]}`:                     ErrRefused,
		`{"code":"0","tickets":[{"value":"x","expire_in":"-3600"}]}`: ErrMalformed,
	}
	for body, want := range tickets {
		if _, err := ParseTicketResponse([]byte(body)); !errors.Is(err, want) {
			t.Errorf("ParseTicketResponse(%q) err = %v, want %v", body, err, want)
		}
	}
	tk, err := ParseTicketResponse([]byte(`{"code":"0","tickets":[{"value":"V","expire_in":3600},{"value":"W"}]}`))
	if err != nil || tk.Value != "V" || tk.Lifetime != time.Hour {
		t.Errorf("ticket = %+v, %v", tk, err)
	}
}

func FuzzParseTokenResponse(f *testing.F) {
	for _, seed := range []string{`{"code":"0","access_token":"A","expire_in":"7200"}`, `{"code":0,"expire_in":1e99}`, `<html>`, ``, `{"code":"0","access_token":"A","expire_in":-1}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := ParseTokenResponse(body)
		if err == nil && (tok.Value == "" || tok.Lifetime <= 0 || tok.Lifetime > DefaultTokenLifetime) {
			t.Fatalf("accepted %q as %+v", body, tok)
		}
	})
}

func FuzzParseTicketResponse(f *testing.F) {
	for _, seed := range []string{`{"code":"0","tickets":[{"value":"V","expire_in":"3600"}]}`, `{"code":"0","tickets":[]}`, `{"tickets":[{}]}`, `null`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tk, err := ParseTicketResponse(body)
		if err == nil && (tk.Value == "" || tk.Lifetime <= 0 || tk.Lifetime > DefaultTicketLifetime) {
			t.Fatalf("accepted %q as %+v", body, tk)
		}
	})
}

// TestTicketFailureAfterNewTokenKeepsTheToken: the token call succeeds and
// the ticket call fails. The old token dies a minute later anyway, so the
// error says since when, and the retry asks for a ticket with the new token
// instead of killing it with another.
func TestTicketFailureAfterNewTokenKeepsTheToken(t *testing.T) {
	emu, client := newVendor(t)
	emu.SetFault(faceidtest.TicketEndpoint, faceidtest.Fault{Status: 502, Times: 1})
	before := time.Now()
	failed, err := client.Fetch(context.Background())
	if !errors.Is(err, ErrUnreachable) || failed.OldTokenSupersededAt.Before(before) {
		t.Fatalf("Fetch = %+v, %v; want the failure with OldTokenSupersededAt", failed, err)
	}
	ticket, err := client.Fetch(context.Background())
	if err != nil || ticket.Value == "" {
		t.Fatal(err)
	}
	if emu.TokenCalls() != 1 || emu.TicketCalls() != 2 {
		t.Fatalf("token calls %d ticket calls %d; want 1 and 2", emu.TokenCalls(), emu.TicketCalls())
	}
	if ticket.FetchedAt.After(failed.OldTokenSupersededAt) {
		t.Fatal("the ticket's lifetime must count from its token's fetch")
	}
}

func TestOAuthCallsUseFixedVersionAndConfiguredAppIDParam(t *testing.T) {
	emu, client := newVendor(t)
	client.AppIDParam = "appId"
	if _, err := client.Fetch(context.Background()); err != nil {
		t.Fatalf("with appId as the parameter name: %v", err)
	}
	_ = emu
}

func TestRefusedTokenIsNotKept(t *testing.T) {
	emu, client := newVendor(t)
	emu.SetFault(faceidtest.TicketEndpoint, faceidtest.Fault{Code: "400103", Msg: "token invalid", Times: 1})
	if _, err := client.Fetch(context.Background()); !errors.Is(err, ErrRefused) {
		t.Fatalf("err = %v", err)
	}
	if _, err := client.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	if emu.TokenCalls() != 2 {
		t.Fatalf("token calls %d: a refused token must not be reused", emu.TokenCalls())
	}
}
