package faceidsigner

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/kycgate/faceidsigner/signer"
	"github.com/kycgate/faceidsigner/ticketcache"
)

// The fast path serves the common request of queryfacerecord and the APIs
// signed the same way: a POST whose JSON body has a valid orderNo, none of
// the fields the gateway owns (appId, version, nonce, sign), and no getFile.
// Anything else falls through to the general path (serveFields), which
// applies the same rules in full; FuzzServeHTTP and the tests check that
// both produce the same signed request.
//
// Why a separate path: under yaegi, calling an interpreted function
// allocates every local and temporary it declares, taken branches or not
// (about 0.1 µs each), and a method call costs about 2 µs more than a call
// of a plain function. These are therefore plain functions that hold only
// what the common request needs; every rare case is a call of its own.

// serveFast signs and forwards a POST request of an order-only API.
func serveFast(m *Signer, rw http.ResponseWriter, req *http.Request) {
	body, fields, rej := readJSONObject(req, m.settings.maxBodyBytes)
	if rej != nil {
		m.reject(rw, rej)
		return
	}
	orderNo := plainOrderNo(fields)
	if orderNo == "" {
		m.serveFields(rw, req, body, fields)
		return
	}
	ticket, err := ticketcache.Value(m.tickets, req.Context())
	if err != nil {
		m.ticketUnavailable(rw, req, err)
		return
	}
	rest := string(bytes.TrimSpace(body)[1:])
	signPlain(m, req, orderNo, rest, ticket)
	m.counts.signed.Add(1)
	if len(m.settings.retryCodes) == 0 {
		m.next.ServeHTTP(rw, req)
		return
	}
	rec := httptest.NewRecorder()
	m.next.ServeHTTP(rec, req)
	if !bytes.HasPrefix(rec.Body.Bytes(), successPrefix) {
		rec = m.afterHeldAnswer(req, rec, &signedCall{orderNo: orderNo, rest: rest}, ticket)
	}
	sendRecorded(rw, rec)
}

// plainOrderNo returns the request's order number when the fast path can
// sign it: orderNo is 1 to 32 letters and digits, the request has none of
// the fields the gateway owns, and getFile is absent or "0" (no files).
// Otherwise it returns "".
func plainOrderNo(fields map[string]json.RawMessage) string {
	_, appID := fields["appId"]
	_, version := fields["version"]
	_, nonce := fields["nonce"]
	_, sign := fields["sign"]
	getFile := fields["getFile"]
	raw := fields["orderNo"]
	if appID || version || nonce || sign || (getFile != nil && string(getFile) != `"0"`) || !orderNoJSON.Match(raw) {
		return ""
	}
	return string(raw[1 : len(raw)-1])
}

// signPlain writes the signed request: the gateway's fields before the
// app's own (rest is the app's object without its opening brace), the
// recipe's path and ?orderNo=. Traefik's proxy builds the upstream URL from
// RequestURI, so it is set along with URL. The outgoing Content-Length
// comes from ContentLength; a stale header is removed. GetBody lets an
// HTTP/2 transport resend the body after a GOAWAY. Accept-Encoding is
// removed so that the answer arrives uncompressed for inspection (Go's
// transport asks for gzip itself and decompresses).
func signPlain(m *Signer, req *http.Request, orderNo, rest, ticket string) {
	nonce, _ := signer.NewNonce()
	sign := signer.Sign(m.settings.appID, orderNo, m.settings.version, ticket, nonce)
	body := m.head + `"nonce":"` + nonce + `","sign":"` + sign + `",` + rest
	req.Body = io.NopCloser(strings.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
	req.ContentLength = int64(len(body))
	req.TransferEncoding = nil
	header := req.Header
	header.Set("Content-Type", "application/json")
	header.Del("Content-Length")
	header.Del("Accept-Encoding")
	path := m.settings.recipe.Path
	req.URL.Path = path
	req.URL.RawPath = ""
	req.URL.RawQuery = "orderNo=" + orderNo
	req.RequestURI = path + "?orderNo=" + orderNo
}
