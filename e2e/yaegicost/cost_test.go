package yaegicost

import (
	"testing"

	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"
)

// costSource holds the constructs measured, one case of Run each.
const costSource = `package p

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type S struct{ a, b int; mu sync.Mutex; n int64; s string }

func empty() {}
func tenLocals() int { a := 1; b := a + 1; c := b + 1; d := c + 1; e := d + 1; f := e + 1; g := f + 1; h := g + 1; i := h + 1; return i }
func (s *S) meth() {}
func args3(a, b, c string) string { return a }
func slots10(a, b, c string) int { if a == "x" { return len(b + c + a + b) }; return len(a) + len(b) + len(c) }

var re = regexp.MustCompile(` + "`" + `^\s*\{\s*"orderNo"\s*:\s*"([0-9A-Za-z]{1,32})"\s*\}\s*$` + "`" + `)
var body = []byte(` + "`" + `{"orderNo":"orderNo596551"}` + "`" + `)
var req, _ = http.NewRequest("POST", "http://x/y", nil)
var hdr = http.Header{"Content-Type": {"application/json"}, "Content-Length": {"200"}, "Date": {"x"}}

func Run(which string, n int) int {
	s := &S{}
	buf := &bytes.Buffer{}
	x := 0
	switch which {
	case "loop":
		for i := 0; i < n; i++ { x++ }
	case "empty":
		for i := 0; i < n; i++ { empty() }
	case "tenLocals":
		for i := 0; i < n; i++ { x += tenLocals() }
	case "method":
		for i := 0; i < n; i++ { s.meth() }
	case "args3":
		for i := 0; i < n; i++ { args3("a", "b", "c") }
	case "nativeUpper":
		for i := 0; i < n; i++ { strings.ToUpper("a") }
	case "nativeMethod":
		for i := 0; i < n; i++ { x += buf.Len() }
	case "lockUnlock":
		for i := 0; i < n; i++ { s.mu.Lock(); s.mu.Unlock() }
	case "timeNow":
		for i := 0; i < n; i++ { x += int(time.Now().UnixNano()) }
	case "atomicAdd":
		for i := 0; i < n; i++ { atomic.AddInt64(&s.n, 1) }
	case "fieldSet":
		for i := 0; i < n; i++ { req.ContentLength = 5 }
	case "fieldGet":
		for i := 0; i < n; i++ { x += int(req.ContentLength) }
	case "concat5":
		for i := 0; i < n; i++ { s.s = "a" + s.s[:0] + "b" + "c" + s.s[:0] + "d" }
	case "join5":
		for i := 0; i < n; i++ { s.s = strings.Join([]string{"a", "b", "c", "d", "e"}, "") }
	case "regexp":
		for i := 0; i < n; i++ { m := re.FindSubmatch(body); x += len(m) }
	case "jsonMap":
		for i := 0; i < n; i++ { var f map[string]json.RawMessage; json.Unmarshal(body, &f); x += len(f) }
	case "nonce":
		for i := 0; i < n; i++ { b := make([]byte, 16); rand.Read(b); s.s = hex.EncodeToString(b) }
	case "sha1":
		for i := 0; i < n; i++ { sum := sha1.Sum([]byte("abcdefabcdefabcdefabcdef")); s.s = hex.EncodeToString(sum[:]) }
	case "sha1fmt":
		for i := 0; i < n; i++ { s.s = fmt.Sprintf("%X", sha1.Sum([]byte("abcdefabcdefabcdefabcdef"))) }
	case "sort5":
		for i := 0; i < n; i++ { v := []string{"e", "d", "c", "b", "a"}; sort.Strings(v) }
	case "recorder":
		for i := 0; i < n; i++ { r := httptest.NewRecorder(); x += r.Code }
	case "hdrCopy":
		h := http.Header{}
		for i := 0; i < n; i++ { for k, v := range hdr { h[k] = v } }
	case "hdrSet":
		for i := 0; i < n; i++ { req.Header.Set("Content-Type", "application/json") }
	case "hdrDel":
		for i := 0; i < n; i++ { delete(req.Header, "Content-Length") }
	case "closureGetBody":
		for i := 0; i < n; i++ { str := "x"; req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(str)), nil } }
	case "bodyReader":
		for i := 0; i < n; i++ { req.Body = io.NopCloser(strings.NewReader("abc")) }
	case "readAll":
		for i := 0; i < n; i++ { b, _ := io.ReadAll(bytes.NewReader(body)); x += len(b) }
	case "hasPrefix":
		for i := 0; i < n; i++ { if bytes.HasPrefix(body, body[:3]) { x++ } }
	case "strCmp":
		a, b := "orderNo1", "orderNo2"
		for i := 0; i < n; i++ { if a < b { x++ } }
	case "mapLookup":
		m := map[string]int{"a": 1}
		for i := 0; i < n; i++ { x += m["a"] }
	case "newReqGetBody":
		for i := 0; i < n; i++ { r2, _ := http.NewRequest("POST", "", strings.NewReader("abcdef")); req.Body = r2.Body; req.GetBody = r2.GetBody; req.ContentLength = r2.ContentLength }
	case "atomicValue":
		var av atomic.Value
		av.Store("ticket")
		for i := 0; i < n; i++ { v, _ := av.Load().(string); x += len(v) }
	case "nativeHandler":
		h := http.NotFoundHandler()
		rec := httptest.NewRecorder()
		for i := 0; i < n; i++ { h.ServeHTTP(rec, req) }
	case "readFull":
		for i := 0; i < n; i++ { b := make([]byte, 27); io.ReadFull(bytes.NewReader(body), b); x += len(b) }
	case "fullSign":
		for i := 0; i < n; i++ {
			v := []string{"IDAXXXXX", "1.0.0", "ticketticketticketticket", "nonce0123456789abcdef0123456789ab", "orderNo596551"}
			sort.Strings(v)
			sum := sha1.Sum([]byte(v[0] + v[1] + v[2] + v[3] + v[4]))
			s.s = strings.ToUpper(hex.EncodeToString(sum[:]))
		}
	case "sha1Only":
		for i := 0; i < n; i++ { sum := sha1.Sum([]byte("abcdefabcdefabcdefabcdef")); x += int(sum[0]) }
	case "bytesToString":
		for i := 0; i < n; i++ { s.s = string(body[2:9]) }
	case "urlSet":
		for i := 0; i < n; i++ { req.URL.Path = "/a/b"; req.URL.RawQuery = "orderNo=1" }
	case "fn3args10slots":
		for i := 0; i < n; i++ { x += slots10("a", "b", "c") }
	}
	return x
}
`

// BenchmarkConstruct runs each construct of costSource b.N times inside one
// interpreted loop; subtract "loop" (the loop itself) to get the construct.
func BenchmarkConstruct(b *testing.B) {
	for _, which := range []string{"loop", "empty", "tenLocals", "method", "args3", "nativeUpper", "nativeMethod", "lockUnlock", "timeNow", "atomicAdd", "fieldSet", "fieldGet", "concat5", "join5", "regexp", "jsonMap", "nonce", "sha1", "sha1fmt", "sort5", "recorder", "hdrCopy", "hdrSet", "hdrDel", "closureGetBody", "bodyReader", "readAll", "hasPrefix", "strCmp", "mapLookup", "newReqGetBody", "atomicValue", "nativeHandler", "readFull", "fullSign", "sha1Only", "bytesToString", "urlSet", "fn3args10slots"} {
		i := interp.New(interp.Options{})
		i.Use(stdlib.Symbols)
		if _, err := i.Eval(costSource); err != nil {
			b.Fatal(err)
		}
		v, err := i.Eval("p.Run")
		if err != nil {
			b.Fatal(err)
		}
		run := v.Interface().(func(string, int) int)
		b.Run(which, func(b *testing.B) {
			b.ReportAllocs()
			run(which, b.N)
		})
	}
}
