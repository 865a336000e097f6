package faceidsigner

import (
	"bytes"
	"encoding/base64"
	"io"
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

// TestCompressedAnswersAreStillInspected: an app that accepts gzip must not
// blind the stale-ticket retry.
func TestCompressedAnswersAreStillInspected(t *testing.T) {
	g := newGateway(t, nil)
	g.do(t, http.MethodPost, queryBody, nil)
	g.emu.RevokeTokens(testAppID)
	a := g.do(t, http.MethodPost, queryBody, map[string]string{"Accept-Encoding": "gzip"})
	if a.body["code"] != "0" || g.emu.TokenCalls() != 2 {
		t.Fatalf("with Accept-Encoding gzip: %s (token calls %d)", a.raw, g.emu.TokenCalls())
	}
	for _, r := range g.emu.Requests() {
		if r.Header.Get("Accept-Encoding") != "" && r.Header.Get("Accept-Encoding") != "gzip" {
			t.Fatalf("forwarded Accept-Encoding %q", r.Header.Get("Accept-Encoding"))
		}
	}
}

// TestAnswersThatMayCarryFilesAreNotHeldWhole: queryphotoinfo always returns
// a photo; a numeric getFile asks for files too. Such answers stream.
func TestAnswersThatMayCarryFilesAreNotHeldWhole(t *testing.T) {
	photo := bytes.Repeat([]byte{0x89, 0x50}, 300000)
	for _, c := range []struct{ api, body string }{
		{"queryphotoinfo", `{"orderNo":"big2"}`},
		{"queryfacerecord", `{"orderNo":"big2","getFile":1}`},
	} {
		g := newGateway(t, func(cfg *Config) { cfg.API = c.api })
		g.emu.AddResult(testAppID, "big2", faceidtest.Result{Photo: photo, Video: photo})
		start := time.Now()
		resp, err := http.Post(g.srv.URL, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 16)
		_, _ = io.ReadFull(resp.Body, head)
		firstByte := time.Since(start)
		rest, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if c.api == "queryphotoinfo" && !strings.Contains(string(rest), base64.StdEncoding.EncodeToString(photo[:3000])) {
			t.Fatalf("%s: photo damaged", c.api)
		}
		if !strings.Contains(string(head)+string(rest), `"code":`) || firstByte > time.Second {
			t.Fatalf("%s: answer %d bytes after %s", c.api, len(rest), firstByte)
		}
	}
}

func TestResultCodesCannotBeRetryCodes(t *testing.T) {
	for _, code := range []string{"66660011", "0", "400604"} {
		cfg := CreateConfig()
		cfg.AppID = testAppID
		cfg.Secret = testSecret
		cfg.RetryCodes = []string{"400101", code}
		if _, err := New(t.Context(), http.NotFoundHandler(), cfg, "t"); err == nil || !strings.Contains(err.Error(), "retryCodes") {
			t.Errorf("retryCodes with %s: %v", code, err)
		}
	}
}
