// Package signfloor is a benchmark baseline, not a product: the least work
// any Yaegi plugin must do per request to sign a FaceID query, with nothing
// else. It takes the order number from a body of a fixed shape without
// checking it, makes a nonce, signs with a constant ticket, rewrites the
// body and path, and calls the next handler. No validation, no ticket
// cache, no answer held for the stale-ticket retry, no counters.
//
// e2e/benchtraefik runs it beside faceidsigner: its throughput against the
// pass-through plugin is the ceiling that interpretation leaves to any
// signing plugin, faceidsigner included.
package signfloor

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
)

// Config is empty: the plugin has no settings.
type Config struct{}

// CreateConfig returns the (empty) default configuration.
func CreateConfig() *Config { return &Config{} }

type signfloor struct{ next http.Handler }

// New returns the minimal signing handler.
func New(_ context.Context, next http.Handler, _ *Config, _ string) (http.Handler, error) {
	return &signfloor{next: next}, nil
}

// bodyFormat is the signed body: appId, version, nonce, sign, orderNo.
const bodyFormat = `{"appId":"IDAFLOOR","version":"1.0.0","nonce":"%s","sign":"%X","orderNo":"%s"}`

func (p *signfloor) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	body := make([]byte, req.ContentLength)
	_, _ = io.ReadFull(req.Body, body)
	orderNo := string(body[12 : len(body)-2]) // {"orderNo":"...."}
	random := make([]byte, 16)
	_, _ = rand.Read(random)
	nonce := hex.EncodeToString(random)
	values := []string{"IDAFLOOR", "1.0.0", "floorticketfloorticketfloorticke", nonce, orderNo}
	sort.Strings(values)
	signed := new(bytes.Buffer)
	size, _ := fmt.Fprintf(signed, bodyFormat, nonce, sha1.Sum([]byte(strings.Join(values, ""))), orderNo)
	req.Body = io.NopCloser(signed)
	req.ContentLength = int64(size)
	req.URL.RawQuery = "orderNo=" + orderNo
	req.RequestURI = "/api/v2/base/queryfacerecord?orderNo=" + orderNo
	p.next.ServeHTTP(rw, req)
}
