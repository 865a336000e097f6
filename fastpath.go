package faceidsigner

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"

	"github.com/kycgate/faceidsigner/ticketcache"
)

// The fast path serves the request nearly every caller sends to
// queryfacerecord (and getWillFaceResult): a POST whose body is exactly
// {"orderNo":"..."}, optionally with "getFile":"0", while a ticket is cached
// and not due. Anything else takes the general path (serveGeneral), which
// applies the same rules in full; TestFastAndGeneralPathsAgree and
// FuzzServeHTTP check that both forward the same signed request.
//
// Why it is written the way it is: the plugin runs interpreted by yaegi, where
// the cost is not the work but the interpreter's bookkeeping. Measured with
// e2e/yaegicost (figures in BENCHMARKS.md): every call of an interpreted
// function allocates a frame slot for each expression of its code (taken
// branches or not), a method call costs about 2 µs more than a plain
// function call, each call of compiled code (the standard library) about
// 0.5 µs, and turning an interpreted closure into a compiled func value (a
// req.GetBody closure, a callback) about 20 µs. So the fast path is a short
// function whose work is a short list of standard library calls (read,
// match, load the ticket, nonce, sort, hash, write the body, forward), every
// rare case is a call of its own, it makes no closures, and it shares
// signOrderOnly and forwardHeld with the general path.

// fastMaxBodyBytes bounds the bodies the fast path reads: a matching body
// is a few dozen bytes, and a larger Content-Length must not make it
// allocate up to maxBodyBytes before a byte has arrived.
const fastMaxBodyBytes = 4096

// fastBodyPattern returns the pattern of the bodies the fast path signs: the
// order field with 1 to 32 letters and digits (the vendor's rule), then
// optionally the file field with "0", nothing else; JSON whitespace allowed
// between tokens. Submatch 1 is the order number.
func fastBodyPattern(orderField, fileField string) *regexp.Regexp {
	const ws = `[ \t\r\n]*`
	expr := `^\{` + ws + `"` + regexp.QuoteMeta(orderField) + `"` + ws + `:` + ws + `"([0-9A-Za-z]{1,32})"` + ws
	if fileField != "" {
		expr += `(?:,` + ws + `"` + regexp.QuoteMeta(fileField) + `"` + ws + `:` + ws + `"0"` + ws + `)?`
	}
	return regexp.MustCompile(expr + `\}` + ws + `$`)
}

// ServeHTTP validates the app's request, signs it and forwards it. Requests
// that cannot be signed are answered here and never forwarded.
func (m *Signer) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	size := req.ContentLength
	if size <= 0 || size > m.fastMaxBytes || req.Method != http.MethodPost || m.statusPaths[req.URL.Path] {
		m.serveGeneral(rw, req)
		return
	}
	body := make([]byte, size)
	_, err := io.ReadFull(req.Body, body)
	match := m.fastBody.FindSubmatchIndex(body)
	ticket := ticketcache.Hot(m.tickets)
	if err != nil || match == nil || ticket == "" {
		m.serveRead(rw, req, body, err)
		return
	}
	call := &signedCall{orderNo: string(body[match[2]:match[3]]), rest: string(body[1:])}
	signOrderOnly(m, req, call, ticket)
	m.counts.signed.Add(1)
	forwardHeld(m, rw, req, call, ticket)
}

// forwardHeld forwards a request that asks for no files, whose answer is
// small: the answer is held (by a compiled httptest.ResponseRecorder,
// which costs far less under yaegi than an interpreted ResponseWriter),
// checked for a stale-ticket code, retried once if so, then sent on. The
// recorder writes the answer's headers straight into rw's (no copying);
// headers rw already had are kept aside in case a retry must start over.
func forwardHeld(m *Signer, rw http.ResponseWriter, req *http.Request, call *signedCall, ticket string) {
	if len(m.settings.retryCodes) == 0 {
		m.next.ServeHTTP(rw, req) // nothing to retry: no reason to hold
		return
	}
	sent := rw.Header()
	var before http.Header
	if len(sent) != 0 {
		before = sent.Clone()
	}
	held := &httptest.ResponseRecorder{HeaderMap: sent, Body: new(bytes.Buffer), Code: http.StatusOK}
	m.next.ServeHTTP(held, req)
	if !bytes.HasPrefix(held.Body.Bytes(), successPrefix) {
		held = m.afterHeldAnswer(rw, req, held, before, call, ticket)
	}
	rw.WriteHeader(held.Code) // even for an empty 200: Traefik's wrappers act on it
	_, _ = held.Body.WriteTo(rw)
}

// signOrderOnly writes the signed request of an order-only POST API: the
// gateway's fields and the signature before the app's own (call.rest, the
// app's object without its opening brace), the recipe's path and ?orderNo=.
//
// Traefik's proxy builds the upstream URL from RequestURI, so it is set
// along with URL. The outgoing Content-Length comes from ContentLength; a
// stale header is removed. Accept-Encoding is removed so that the answer
// arrives uncompressed for inspection (Go's transport asks for gzip itself
// and decompresses). GetBody is cleared, as on every request Go's server
// hands to Traefik: a closure per request would cost about 20 µs under
// yaegi. What that gives up is the HTTP/2 transport's resend of a request
// whose body was partly written when the connection got a GOAWAY (the
// client then gets a 502, as it would without the plugin).
//
// The signature is signer.Sign written out (the values sorted,
// concatenated, SHA-1, upper-case hex) and the nonce is signer.NewNonce's:
// under yaegi each call saved is worth about a microsecond. Tests check
// both against the vendor vectors and the emulator.
func signOrderOnly(m *Signer, req *http.Request, call *signedCall, ticket string) {
	random := make([]byte, 16)
	_, _ = rand.Read(random) // cannot fail since Go 1.24: it crashes instead
	nonce := hex.EncodeToString(random)
	values := []string{m.appID, m.version, ticket, nonce, call.orderNo}
	sort.Strings(values)
	signed := new(bytes.Buffer)
	size, _ := fmt.Fprintf(signed, m.bodyFormat, nonce, sha1.Sum([]byte(strings.Join(values, ""))), call.rest)
	req.Body = io.NopCloser(signed)
	req.ContentLength = int64(size)
	req.GetBody = nil // a middleware before this one may have set it for the unsigned body
	req.TransferEncoding = nil
	header := req.Header
	header["Content-Type"] = []string{"application/json"}
	delete(header, "Content-Length")
	delete(header, "Accept-Encoding")
	target := req.URL
	target.Path = m.path
	target.RawPath = ""
	target.RawQuery = "orderNo=" + call.orderNo
	req.RequestURI = m.targetPrefix + call.orderNo
}
