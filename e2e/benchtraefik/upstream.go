package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/kycgate/faceidsigner/faceidtest"
	"github.com/kycgate/faceidsigner/signer"
)

// fastAnswer is what the trivial upstream answers: a small vendor-like
// success, the size of a real queryfacerecord answer without files.
const fastAnswer = `{"code":"0","msg":"请求成功","bizSeqNo":"22041520001184442415491408594474","result":{"orderNo":"orderNo596551","liveRate":"99","similarity":"97.0"},"transactionTime":"20220415154914"}`

// probeHeader marks a request whose arrival the trivial upstream records,
// to check once that the plugin route really signs.
const probeHeader = "X-Bench-Probe"

// fastUpstream answers every request with fastAnswer after draining its
// body: the least an upstream can cost, so that the figures show the
// gateway's own cost.
type fastUpstream struct {
	*httptest.Server

	mu    sync.Mutex
	probe string // "<path>?<query> <body>" of the last probe request
}

func newFastUpstream() *fastUpstream {
	u := &fastUpstream{}
	answer := []byte(fastAnswer)
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(probeHeader) != "" {
			body, _ := io.ReadAll(r.Body)
			u.mu.Lock()
			u.probe = r.URL.RequestURI() + " " + string(body)
			u.mu.Unlock()
		} else {
			_, _ = io.Copy(io.Discard, r.Body)
		}
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{fmt.Sprint(len(answer))}
		_, _ = w.Write(answer)
	}))
	return u
}

// lastProbe returns what the last probe request looked like upstream.
func (u *fastUpstream) lastProbe() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.probe
}

// emulatorUpstream serves the FaceID emulator's signed APIs behind a
// router prefix: everything before "/api/" in the path is dropped, so
// /emu/bare/api/v2/base/queryfacerecord reaches the emulator's
// queryfacerecord like the plugin's rewritten /api/v2/base/queryfacerecord.
func emulatorUpstream(emu *faceidtest.Server) *httptest.Server {
	h := emu.Handler()
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := strings.Index(r.URL.Path, "/api/"); i > 0 {
			r.URL.Path = r.URL.Path[i:]
			r.URL.RawPath = ""
		}
		h.ServeHTTP(w, r)
	}))
}

// presigned is a queryfacerecord request signed by the app itself, as an
// app would send it without the gateway: the body the bare and
// pass-through routes send to the emulator, and its path after the prefix.
func presigned(appID, ticket, orderNo, getFile string) (pathAndQuery string, body []byte, err error) {
	recipe, _ := signer.RecipeFor(signer.DefaultAPI)
	nonce, err := signer.NewNonce()
	if err != nil {
		return "", nil, err
	}
	fields := map[string]string{
		recipe.AppIDField: appID, recipe.VersionField: "1.0.0", recipe.NonceField: nonce,
		recipe.OrderField: orderNo,
	}
	fields[recipe.SignField] = signer.Sign(appID, orderNo, "1.0.0", ticket, nonce)
	if getFile != "" {
		fields["getFile"] = getFile
	}
	body, err = json.Marshal(fields)
	return recipe.Path + "?orderNo=" + orderNo, body, err
}

// pluginTicket returns the SIGN ticket the plugin holds for appID: of the
// tickets the emulator issued, the one that signs a request the emulator
// accepts (the emulator does not say which app a ticket belongs to).
func pluginTicket(emu *faceidtest.Server, emuURL, appID, orderNo string) (string, error) {
	issued := emu.IssuedTickets()
	for i := len(issued) - 1; i >= 0; i-- {
		path, body, err := presigned(appID, issued[i], orderNo, "")
		if err != nil {
			return "", err
		}
		resp, err := http.Post(emuURL+path, "application/json", bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if vendorCode(answer) == faceidtest.CodeOK {
			return issued[i], nil
		}
	}
	return "", fmt.Errorf("none of the %d tickets the emulator issued signs a request for %s", len(issued), appID)
}

// vendorCode returns the "code" of a vendor answer, "" if there is none in
// its first 100 bytes (where the emulator writes it).
func vendorCode(answer []byte) string {
	const key = `"code":"`
	head := answer
	if len(head) > 100 {
		head = head[:100]
	}
	i := bytes.Index(head, []byte(key))
	if i < 0 {
		return ""
	}
	rest := head[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}
