package faceidsigner

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kycgate/faceidsigner/faceidtest"
)

// benchAnswer is a small vendor answer, written by the fake next handler.
const benchAnswer = `{"code":"0","msg":"请求成功","bizSeqNo":"22041520001184442415491408594474","result":{"orderNo":"orderNo596551","liveRate":"99","similarity":"97.0"},"transactionTime":"20220415154914"}`

// newBenchSigner returns the middleware with a warm ticket and a next
// handler that drains the body and answers benchAnswer, so that only the
// plugin's own work is measured.
func newBenchSigner(b *testing.B, configure func(*Config)) http.Handler {
	emu := faceidtest.NewServer()
	b.Cleanup(emu.Close)
	emu.AddApp(testAppID, testSecret)
	next := http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		rw.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(rw, benchAnswer)
	})
	cfg := CreateConfig()
	cfg.AppID = testAppID
	cfg.Secret = testSecret
	cfg.Endpoint = emu.URL
	if configure != nil {
		configure(cfg)
	}
	h, err := New(context.Background(), next, cfg, "bench")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := h.(*Signer).tickets.Get(context.Background()); err != nil {
		b.Fatal(err)
	}
	return h
}

func benchmarkServe(b *testing.B, h http.Handler, body string) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/faceid", strings.NewReader(body))
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
	}
}

// BenchmarkSignNative is the plugin's per-request work compiled natively
// (the yaegi figures are in e2e/yaegihost).
func BenchmarkSignNative(b *testing.B) {
	benchmarkServe(b, newBenchSigner(b, nil), `{"orderNo":"orderNo596551","getFile":"0"}`)
}

// BenchmarkPassthroughNative is the baseline: a request and recorder with no
// middleware work at all.
func BenchmarkPassthroughNative(b *testing.B) {
	next := http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		_, _ = io.WriteString(rw, benchAnswer)
	})
	benchmarkServe(b, next, `{"orderNo":"orderNo596551","getFile":"0"}`)
}
