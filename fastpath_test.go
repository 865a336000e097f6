package faceidsigner

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kycgate/faceidsigner/faceidtest"
	"github.com/kycgate/faceidsigner/signer"
	"github.com/kycgate/faceidsigner/ticketcache"
)

func TestFastBodyPattern(t *testing.T) {
	re := fastBodyPattern("orderNo", "getFile")
	for body, want := range map[string]string{
		`{"orderNo":"abc123"}`:                                "abc123",
		"{ \"orderNo\" :\t\"A1\"\r\n}\n":                      "A1",
		`{"orderNo":"` + strings.Repeat("x", 32) + `"}`:       strings.Repeat("x", 32),
		`{"orderNo":"abc","getFile":"0"}`:                     "abc",
		`{"orderNo":"abc" , "getFile" : "0" }`:                "abc",
		`{"orderNo":"` + strings.Repeat("x", 33) + `"}`:       "",
		`{"orderNo":""}`:                                      "",
		`{"orderNo":"ab-c"}`:                                  "",
		`{"orderNo":"ab\u0063"}`:                              "", // an escape: the general path decodes it
		`{"orderNo":"abc","getFile":"1"}`:                     "",
		`{"orderNo":"abc","getFile":"0","x":1}`:               "",
		`{"getFile":"0","orderNo":"abc"}`:                     "",
		`{"orderNo":"abc","sign":"X"}`:                        "",
		`{"orderNo":"abc"}x`:                                  "",
		` {"orderNo":"abc"}`:                                  "",
		"{\"orderNo\":\"abc\"\f}":                             "", // not JSON whitespace
		`{"orderNo":"abc"}{"orderNo":"def"}`:                  "",
		`{"orderNo":"abc","getFile":"0","getFile":"1"}`:       "",
		`{"orderNo":"abc","orderNo":"def"}`:                   "",
		`{"orderNo":"abc", "getFile":"0"}` + " \t\r\n":        "abc",
		`{"orderNo":"abc","getFile":0}`:                       "",
		`{"orderNo":"abc","getFile":"0",}`:                    "",
		`{"orderNo":"abc",}`:                                  "",
		`{"orderNo":"abc","getFile":"0"}` + "\x00":            "",
		"{\"orderNo\":\"abc\"}\u00a0":                         "",
		`{"orderNo":"abc"` + strings.Repeat(" ", 100) + `}`:   "abc",
		`{"orderNo":["abc"]}`:                                 "",
		`{"orderNo":"abc\"}`:                                  "",
		`{"orderno":"abc"}`:                                   "",
		`{"orderNo":"abc","getFile":"0"}` + "\n":              "abc",
		`{"orderNo":"ABCxyz0123456789"}`:                      "ABCxyz0123456789",
		`{"orderNo":"abc","getFile":"00"}`:                    "",
		`{"orderNo":"abc","getFile":"0" ,"getFile":"0"}`:      "",
		`{"orderNo":"abc","getFile":null}`:                    "",
		`{"orderNo":"abc","getfile":"0"}`:                     "",
		`{"orderNo":"abc","getFile":"0"` + "\n" + `}`:         "abc",
		`{"orderNo":"abc"}` + strings.Repeat("\n", 10):        "abc",
		`{"orderNo":"ä"}`:                                     "",
		`{"orderNo":"abc","getFile":"0"}` + `{"getFile":"1"}`: "",
	} {
		got := ""
		if m := re.FindSubmatch([]byte(body)); m != nil {
			got = string(m[1])
		}
		if got != want {
			t.Errorf("%q: order number %q, want %q", body, got, want)
		}
	}
	if re := fastBodyPattern("orderNo", ""); re.MatchString(`{"orderNo":"abc","getFile":"0"}`) {
		t.Error("a recipe without a file field took getFile on the fast path")
	}
}

// TestRetryStartsFromTheHeadersBeforeTheAnswer: the held answer's headers
// are written into the client's header map directly; when a stale-ticket
// answer is retried, the retry's answer must replace the first answer's
// headers, and headers set before the plugin ran must stay.
func TestRetryStartsFromTheHeadersBeforeTheAnswer(t *testing.T) {
	for _, preset := range []bool{false, true} {
		var calls atomic.Int64
		next := http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
			_, _ = io.Copy(io.Discard, req.Body)
			n := calls.Add(1)
			rw.Header().Add("X-Answer", strings.Repeat("I", int(n)))
			rw.Header().Set("Content-Type", "application/json")
			if n == 2 { // the first answer after the warm-up request
				rw.Header().Set("X-First-Only", "yes")
				rw.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(rw, `{"code":"400101","msg":"illegal request"}`)
				return
			}
			_, _ = io.WriteString(rw, `{"code":"0","msg":"ok"}`)
		})
		h := signerBefore(t, next)
		warm := httptest.NewRecorder()
		h.ServeHTTP(warm, httptest.NewRequest(http.MethodPost, "/faceid/query", strings.NewReader(queryBody)))
		if warm.Code != 200 || ticketcache.Hot(h.(*Signer).tickets) == "" {
			t.Fatalf("warm-up: %d %s; want a ticket ready for the fast path", warm.Code, warm.Body)
		}
		rec := httptest.NewRecorder()
		if preset {
			rec.Header().Set("X-Before", "kept")
		}
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/faceid/query", strings.NewReader(queryBody)))
		got := rec.Result()
		if calls.Load() != 3 || got.StatusCode != 200 || rec.Body.String() != `{"code":"0","msg":"ok"}` {
			t.Fatalf("preset %v: %d calls, answer %d %s; want the retry's answer", preset, calls.Load(), got.StatusCode, rec.Body)
		}
		if v := got.Header.Values("X-Answer"); len(v) != 1 || v[0] != "III" || got.Header.Get("X-First-Only") != "" {
			t.Fatalf("preset %v: answer headers %v: the first answer's headers leaked into the retry's", preset, got.Header)
		}
		if preset && got.Header.Get("X-Before") != "kept" {
			t.Fatalf("headers set before the plugin were lost: %v", got.Header)
		}
	}
}

// TestSignOrderOnlyMatchesSigner: the hot path's written-out signature and
// nonce are signer.Sign's and signer.NewNonce's (which the vendor vectors
// check), for order numbers that sort before, between and after the
// gateway's values.
func TestSignOrderOnlyMatchesSigner(t *testing.T) {
	cfg := CreateConfig()
	cfg.AppID, cfg.Secret, cfg.Endpoint = testAppID, testSecret, "http://127.0.0.1:1"
	h, err := New(context.Background(), http.NotFoundHandler(), cfg, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	m := h.(*Signer)
	const ticket = "kHoSxvLZGxSoFsjxlbzEoUzh5PAnTU7T"
	for _, orderNo := range []string{"0", "1a", "IDAXXXXX0", "Zz", "kHoSzzz", "zzzz", strings.Repeat("9", 32)} {
		req := httptest.NewRequest(http.MethodPost, "/x?y=1", nil)
		req.Header.Set("Content-Length", "99")
		req.Header.Set("Accept-Encoding", "gzip")
		signOrderOnly(m, req, &signedCall{orderNo: orderNo, rest: `"orderNo":"` + orderNo + `"}`}, ticket)
		raw, _ := io.ReadAll(req.Body)
		var body map[string]string
		if err := json.Unmarshal(raw, &body); err != nil || int64(len(raw)) != req.ContentLength {
			t.Fatalf("%s: body %s (%v), ContentLength %d", orderNo, raw, err, req.ContentLength)
		}
		nonce := body["nonce"]
		if len(nonce) != signer.NonceLength || !signer.IsAlphanumeric(nonce, signer.NonceLength) || strings.ToLower(nonce) != nonce {
			t.Fatalf("nonce %q is not 32 lower-case hex characters", nonce)
		}
		if want := signer.Sign(testAppID, DefaultVersion, ticket, nonce, orderNo); body["sign"] != want {
			t.Fatalf("%s: sign %s, signer.Sign says %s", orderNo, body["sign"], want)
		}
		if body["appId"] != testAppID || body["version"] != DefaultVersion || body["orderNo"] != orderNo || len(body) != 5 {
			t.Fatalf("%s: body %s", orderNo, raw)
		}
		if req.RequestURI != "/api/v2/base/queryfacerecord?orderNo="+orderNo || req.URL.RawQuery != "orderNo="+orderNo ||
			req.Header.Get("Content-Length") != "" || req.Header.Get("Accept-Encoding") != "" || req.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: target %s, header %v", orderNo, req.RequestURI, req.Header)
		}
	}
}

// headerWatcher is a ResponseWriter that records WriteHeader calls, as
// Traefik's own wrappers (access log, headers middleware) observe them.
type headerWatcher struct {
	header  http.Header
	written []int
}

func (w *headerWatcher) Header() http.Header         { return w.header }
func (w *headerWatcher) Write(p []byte) (int, error) { return len(p), nil }
func (w *headerWatcher) WriteHeader(code int)        { w.written = append(w.written, code) }

// TestEmptyAnswerStillWritesTheStatus: an upstream answer with no body (a
// 200 with nothing, or only headers) is held like any other; the client's
// writer must still see WriteHeader, or Traefik's wrappers outside the
// plugin would record no status.
func TestEmptyAnswerStillWritesTheStatus(t *testing.T) {
	h := signerBefore(t, http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
	}))
	for i := 0; i < 2; i++ { // the first fetches the ticket (general path), the second takes the fast path
		w := &headerWatcher{header: http.Header{}}
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/faceid/query", strings.NewReader(queryBody)))
		if len(w.written) != 1 || w.written[0] != http.StatusOK {
			t.Fatalf("request %d: WriteHeader calls %v, want [200]", i+1, w.written)
		}
	}
}

// signerBefore returns the middleware in front of next, fetching its tickets
// from an emulator of its own: a new endpoint, so a new ticket cache with
// no forced-refresh limit carried over from another test.
func signerBefore(t *testing.T, next http.Handler) http.Handler {
	t.Helper()
	emu := faceidtest.NewServer()
	t.Cleanup(emu.Close)
	emu.AddApp(testAppID, testSecret)
	cfg := CreateConfig()
	cfg.AppID, cfg.Secret, cfg.Endpoint = testAppID, testSecret, emu.URL
	h, err := New(context.Background(), next, cfg, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	return h
}
