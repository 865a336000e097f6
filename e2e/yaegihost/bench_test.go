package yaegihost

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmarks
// measure the middleware hop and not the recorder.
type discardWriter struct{ header http.Header }

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

var noopNext = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

func benchmarkHandler(b *testing.B, h http.Handler) {
	b.Helper()
	rw := &discardWriter{header: http.Header{}}
	req := httptest.NewRequest(http.MethodPost, "/v1/check?orderNo=42", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.ServeHTTP(rw, req)
	}
}

// BenchmarkPassthroughYaegi is the per-request cost of the interpreter hop:
// one request through the interpreted pass-through plugin to a no-op next.
// It is the baseline for the performance ratios of the real plugin.
func BenchmarkPassthroughYaegi(b *testing.B) {
	interpreted(b)
	p := load(b, passthroughDir, Options{})
	h, err := p.New(context.Background(), noopNext, p.TestData(), "passthrough@file")
	if err != nil {
		b.Fatal(err)
	}
	benchmarkHandler(b, h)
}

// nativePassthrough is the pass-through fixture compiled natively.
type nativePassthrough struct{ next http.Handler }

func (p *nativePassthrough) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	p.next.ServeHTTP(rw, req)
}

// BenchmarkPassthroughNative is the same middleware compiled: the ratio to
// BenchmarkPassthroughYaegi is the interpreter's overhead.
func BenchmarkPassthroughNative(b *testing.B) {
	benchmarkHandler(b, &nativePassthrough{next: noopNext})
}
