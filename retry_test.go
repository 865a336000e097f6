package faceidsigner

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kycgate/faceidsigner/faceidtest"
)

const queryBody = `{"orderNo":"` + testOrder + `"}`

func TestStaleTicketIsRefreshedAndRetriedOnce(t *testing.T) {
	g := newGateway(t, nil)
	if a := g.do(t, http.MethodPost, queryBody, nil); a.body["code"] != "0" {
		t.Fatalf("first: %s", a.raw)
	}
	g.emu.RevokeTokens(testAppID) // e.g. another server fetched a token long ago
	a := g.do(t, http.MethodPost, queryBody, nil)
	if a.body["code"] != "0" {
		t.Fatalf("after revocation: %s", a.raw)
	}
	if g.emu.TokenCalls() != 2 || g.emu.CodeCount(faceidtest.CodeIllegalRequest) != 1 || g.emu.QueryCalls() != 3 {
		t.Fatalf("token calls %d, 400101 answers %d, queries %d; want 2, 1, 3",
			g.emu.TokenCalls(), g.emu.CodeCount(faceidtest.CodeIllegalRequest), g.emu.QueryCalls())
	}
	assertNoLeak(t, g.emu, "logs", g.logs.String())
}

func TestSecondStaleAnswerPassesThrough(t *testing.T) {
	for _, status := range []int{200, 500} {
		g := newGateway(t, nil)
		g.emu.SetFault(faceidtest.QueryEndpoint, faceidtest.Fault{Status: status, Code: "400101", Msg: "illegal request"})
		a := g.do(t, http.MethodPost, queryBody, nil)
		if a.status != status || a.body["code"] != "400101" {
			t.Fatalf("status %d: app got %d %s, want the vendor's answer", status, a.status, a.raw)
		}
		if g.emu.QueryCalls() != 2 || g.emu.TokenCalls() != 2 {
			t.Fatalf("status %d: queries %d token calls %d; want 2 and 2 (one retry, one forced refresh)", status, g.emu.QueryCalls(), g.emu.TokenCalls())
		}
		// Within forcedRefreshInterval another rejection is not retried.
		a = g.do(t, http.MethodPost, queryBody, nil)
		if a.body["code"] != "400101" || g.emu.QueryCalls() != 3 || g.emu.TokenCalls() != 2 {
			t.Fatalf("rate limit: queries %d token calls %d", g.emu.QueryCalls(), g.emu.TokenCalls())
		}
	}
}

func TestResultCodesNeverRefresh(t *testing.T) {
	g := newGateway(t, nil)
	for _, code := range []string{"66660011", "66660016", "66660017", "66660018", "400604"} {
		g.emu.SetFault(faceidtest.QueryEndpoint, faceidtest.Fault{Code: code, Msg: "x"})
		if a := g.do(t, http.MethodPost, queryBody, nil); a.body["code"] != code {
			t.Fatalf("%s: %s", code, a.raw)
		}
	}
	if g.emu.TokenCalls() != 1 || g.emu.QueryCalls() != 5 {
		t.Fatalf("token calls %d queries %d; want 1 and 5", g.emu.TokenCalls(), g.emu.QueryCalls())
	}
}

func TestConfiguredRetryCodes(t *testing.T) {
	g := newGateway(t, func(c *Config) { c.RetryCodes = []string{"400101", "400999"} })
	g.emu.SetFault(faceidtest.QueryEndpoint, faceidtest.Fault{Code: "400999", Msg: "ticket expired", Times: 1})
	if a := g.do(t, http.MethodPost, queryBody, nil); a.body["code"] != "0" {
		t.Fatalf("answer %s", a.raw)
	}
	if g.emu.TokenCalls() != 2 {
		t.Fatalf("token calls %d, want 2", g.emu.TokenCalls())
	}
}

func TestLargeAnswerStreamsUninspected(t *testing.T) {
	photo := bytes.Repeat([]byte{0xFF, 0xD8, 0x01}, 200000)
	g := newGateway(t, nil)
	g.emu.AddResult(testAppID, "big1", faceidtest.Result{Photo: photo, Video: photo})
	a := g.do(t, http.MethodPost, `{"orderNo":"big1","getFile":"1"}`, nil)
	result, _ := a.body["result"].(map[string]any)
	if a.body["code"] != "0" || result["photo"] != base64.StdEncoding.EncodeToString(photo) {
		t.Fatalf("large answer damaged (%d bytes)", len(a.raw))
	}
}

func TestLateMediaIsPolled(t *testing.T) {
	g := newGateway(t, func(c *Config) { c.MediaRetryDelay = "150ms" })
	g.emu.AddResult(testAppID, "late1", faceidtest.Result{Photo: []byte("P"), Video: []byte("V"), MediaAfter: 250 * time.Millisecond})
	start := time.Now()
	a := g.do(t, http.MethodPost, `{"orderNo":"late1","getFile":"1"}`, nil)
	result, _ := a.body["result"].(map[string]any)
	if a.body["code"] != "0" || result["photo"] == nil || result["video"] == nil {
		t.Fatalf("media not polled: %s", a.raw)
	}
	if q := g.emu.QueryCalls(); q < 2 || q > 3 {
		t.Fatalf("queries %d, want 2 or 3", q)
	}
	if time.Since(start) < 250*time.Millisecond {
		t.Fatal("answered before the media existed")
	}
	// Every poll was freshly signed.
	nonces := map[string]bool{}
	for _, r := range g.emu.Requests() {
		nonces[string(r.Body)] = true
	}
	if len(nonces) != g.emu.QueryCalls() {
		t.Fatal("a poll reused a signed body")
	}
}

func TestLateMediaGivesUpAfterRetries(t *testing.T) {
	g := newGateway(t, func(c *Config) { c.MediaRetries = 2; c.MediaRetryDelay = "20ms" })
	g.emu.AddResult(testAppID, "never1", faceidtest.Result{Photo: []byte("P"), MediaAfter: time.Hour})
	a := g.do(t, http.MethodPost, `{"orderNo":"never1","getFile":"2"}`, nil)
	if a.body["code"] != "0" || g.emu.QueryCalls() != 3 {
		t.Fatalf("queries %d answer %s; want 3 and the last answer", g.emu.QueryCalls(), a.raw)
	}
	// No getFile, or mediaRetries 0: one query.
	g.emu.ResetCounters()
	g.do(t, http.MethodPost, `{"orderNo":"never1"}`, nil)
	if g.emu.QueryCalls() != 1 {
		t.Fatalf("queries %d without getFile", g.emu.QueryCalls())
	}
}

func TestLateMediaRespectsDeadline(t *testing.T) {
	g := newGateway(t, func(c *Config) { c.MediaRetryDelay = "10s" })
	g.emu.AddResult(testAppID, "late2", faceidtest.Result{Photo: []byte("P"), MediaAfter: time.Hour})
	req, _ := http.NewRequest(http.MethodPost, g.srv.URL, strings.NewReader(`{"orderNo":"late2","getFile":"2"}`))
	start := time.Now()
	client := &http.Client{Timeout: 500 * time.Millisecond}
	resp, err := client.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	time.Sleep(100 * time.Millisecond)
	if time.Since(start) > 2*time.Second || g.emu.QueryCalls() != 1 {
		t.Fatalf("kept polling after the client left: queries %d", g.emu.QueryCalls())
	}
}
