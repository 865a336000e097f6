package pluginyaegi

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kycgate/faceidsigner/e2e/yaegihost"
	"github.com/kycgate/faceidsigner/faceidtest"
)

// benchAnswer is a small vendor answer written by the benchmark's next
// handler, which stands in for Traefik's proxy.
const benchAnswer = `{"code":"0","msg":"请求成功","bizSeqNo":"22041520001184442415491408594474","result":{"orderNo":"orderNo596551","liveRate":"99","similarity":"97.0"},"transactionTime":"20220415154914"}`

type discardWriter struct{ header http.Header }

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// answerNext drains the request and writes benchAnswer, as an upstream
// reached through Traefik's proxy would.
var answerNext = http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
	}
	rw.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(rw, benchAnswer)
})

// benchmarkRequests sends the same small request through h b.N times.
func benchmarkRequests(b *testing.B, h http.Handler) {
	body := `{"orderNo":"orderNo596551","getFile":"0"}`
	reader := strings.NewReader(body)
	req, _ := http.NewRequest(http.MethodPost, "http://gateway/faceid/queryfacerecord", reader)
	rw := &discardWriter{header: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		reader.Reset(body)
		req.Body = io.NopCloser(reader)
		req.ContentLength = int64(len(body))
		h.ServeHTTP(rw, req)
	}
}

// BenchmarkSignYaegi is the plugin's whole per-request work under yaegi:
// read and check the body, get the cached ticket, sign, rewrite, forward,
// inspect the answer.
func BenchmarkSignYaegi(b *testing.B) {
	p := loadPlugin(b)
	emu := faceidtest.NewServer()
	b.Cleanup(emu.Close)
	emu.AddApp(appID, secret)
	h, err := p.New(context.Background(), answerNext, map[string]any{
		"appId": appID, "secret": secret, "endpoint": emu.URL, "logLevel": "error",
	}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	benchmarkRequests(b, h) // the first request fetches the ticket
}

// BenchmarkPassthroughYaegi is the baseline: the interpreter hop alone.
func BenchmarkPassthroughYaegi(b *testing.B) {
	benchmarkRequests(b, baselinePlugin(b, "passthrough"))
}

// BenchmarkSignFloorYaegi is the least work of any signing plugin
// (e2e/testdata/signfloor): what interpretation costs before faceidsigner's
// own checks, ticket cache and held answer.
func BenchmarkSignFloorYaegi(b *testing.B) {
	benchmarkRequests(b, baselinePlugin(b, "signfloor"))
}

// baselinePlugin loads the settings-free baseline plugin
// e2e/testdata/<name> under yaegi and returns its handler over answerNext.
func baselinePlugin(b *testing.B, name string) http.Handler {
	p, err := yaegihost.Load(repoRoot(b)+"/e2e/testdata/"+name, yaegihost.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	h, err := p.New(context.Background(), answerNext, nil, name)
	if err != nil {
		b.Fatal(err)
	}
	return h
}
