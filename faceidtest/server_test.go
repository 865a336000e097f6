package faceidtest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycgate/faceidsigner/faceidtest"
)

func TestVendorVectorAccepted(t *testing.T) {
	s, c := newEmulator(t)
	s.SetNextTicketValue(vecTicket)
	s.AddResult(vecApp, vecOrder, faceidtest.Result{})
	if got := c.ticket(c.token()); got != vecTicket {
		t.Fatalf("forced ticket = %q", got)
	}
	body := map[string]string{"appId": vecApp, "orderNo": vecOrder, "nonce": vecNonce, "version": "1.0.0", "sign": vecSign}
	m := c.post("/api/v2/base/queryfacerecord", vecOrder, body)
	wantCode(t, m, "0")
	if m["msg"] != faceidtest.MsgOK || result(m)["orderNo"] != vecOrder || result(m)["appId"] != vecApp {
		t.Errorf("answer = %v", m)
	}

	body["sign"] = strings.ToLower(vecSign) // case is not significant
	wantCode(t, c.post("/api/v2/base/queryfacerecord", vecOrder, body), "0")

	body["sign"] = vecSign[:39] + "C" // one character changed
	m = c.post("/api/v2/base/queryfacerecord", vecOrder, body)
	wantCode(t, m, faceidtest.CodeIllegalRequest)
	if !strings.Contains(m["msg"].(string), "sign") {
		t.Errorf("msg %q does not name the sign check", m["msg"])
	}
	if s.CodeCount("0") != 2 || s.CodeCount("400101") != 1 || s.QueryCalls() != 3 {
		t.Errorf("counts: 0=%d 400101=%d calls=%d", s.CodeCount("0"), s.CodeCount("400101"), s.QueryCalls())
	}
}

func TestTokenEndpoint(t *testing.T) {
	s, c := newEmulator(t)
	m := c.tokenAnswer(secret)
	wantCode(t, m, "0")
	for _, k := range []string{"msg", "transactionTime", "access_token", "expire_time"} {
		if v, _ := m[k].(string); v == "" {
			t.Errorf("%s missing in %v", k, m)
		}
	}
	if m["expire_in"] != "7200" {
		t.Errorf("expire_in = %#v, want \"7200\"", m["expire_in"])
	}
	if len(m["transactionTime"].(string)) != 14 {
		t.Errorf("transactionTime = %v", m["transactionTime"])
	}

	good := url.Values{"app_id": {vecApp}, "secret": {secret}, "grant_type": {"client_credential"}, "version": {"1.0.0"}}
	bad := map[string]func(url.Values){
		"wrong secret":  func(q url.Values) { q.Set("secret", "nope") },
		"unknown app":   func(q url.Values) { q.Set("app_id", "IDAOTHER") },
		"no app":        func(q url.Values) { q.Del("app_id") },
		"grant_type":    func(q url.Values) { q.Set("grant_type", "CLIENT_CREDENTIAL") },
		"wrong version": func(q url.Values) { q.Set("version", "2.0.0") },
	}
	for name, edit := range bad {
		q := url.Values{}
		for k, v := range good {
			q[k] = append([]string(nil), v...)
		}
		edit(q)
		m := c.getJSON(faceidtest.TokenPath, q)
		if m["code"] != faceidtest.CodeOAuthRejected || m["msg"] == "" || m["access_token"] != nil {
			t.Errorf("%s: answer %v", name, m)
		}
		if strings.Contains(m["msg"].(string), secret) {
			t.Errorf("%s: msg leaks the secret", name)
		}
	}

	// One kyc1 page spells the parameter appId.
	q := url.Values{"appId": {vecApp}, "secret": {secret}, "grant_type": {"client_credential"}, "version": {"1.0.0"}}
	wantCode(t, c.getJSON(faceidtest.TokenPath, q), "0")

	if got := len(s.IssuedTokens()); got != 2 || s.TokenCalls() != 7 {
		t.Errorf("issued %d tokens in %d calls, want 2 in 7", got, s.TokenCalls())
	}
	resp, err := c.hc.Post(s.URL+faceidtest.TokenPath, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST token: HTTP %d", resp.StatusCode)
	}
}

func TestTicketEndpoint(t *testing.T) {
	s, c := newEmulator(t)
	s.AddApp("IDAOTHER", "other")
	tok := c.token()
	m := c.ticketAnswer(tok)
	wantCode(t, m, "0")
	tickets := m["tickets"].([]any)
	if len(tickets) != 1 {
		t.Fatalf("tickets = %v", tickets)
	}
	k := tickets[0].(map[string]any)
	if k["expire_in"] != "3600" || len(k["value"].(string)) != 64 || len(k["expire_time"].(string)) != 14 {
		t.Errorf("ticket = %v", k)
	}

	base := url.Values{"app_id": {vecApp}, "access_token": {tok}, "type": {"SIGN"}, "version": {"1.0.0"}}
	bad := map[string]func(url.Values){
		"NONCE type":   func(q url.Values) { q.Set("type", "NONCE") },
		"bad token":    func(q url.Values) { q.Set("access_token", "nope") },
		"other app":    func(q url.Values) { q.Set("app_id", "IDAOTHER") },
		"no version":   func(q url.Values) { q.Del("version") },
		"unknown app":  func(q url.Values) { q.Set("app_id", "IDANONE") },
		"lower `sign`": func(q url.Values) { q.Set("type", "sign") },
	}
	for name, edit := range bad {
		q := url.Values{}
		for k, v := range base {
			q[k] = append([]string(nil), v...)
		}
		edit(q)
		if m := c.getJSON(faceidtest.TicketPath, q); m["code"] != faceidtest.CodeOAuthRejected || m["tickets"] != nil {
			t.Errorf("%s: answer %v", name, m)
		}
	}
	if s.TicketCalls() != 7 || len(s.IssuedTickets()) != 1 {
		t.Errorf("ticket calls %d, issued %d", s.TicketCalls(), len(s.IssuedTickets()))
	}
}

func TestTokenSupersessionOverlap(t *testing.T) {
	s, c := newEmulator(t)
	clock := newFakeClock()
	s.SetClock(clock.Now)
	s.AddResult(vecApp, vecOrder, faceidtest.Result{})

	oldToken := c.token()
	oldTicket := c.ticket(oldToken)
	clock.Advance(10 * time.Second)
	newToken := c.token() // supersedes oldToken now
	newTicket := c.ticket(newToken)

	clock.Advance(59 * time.Second)
	wantCode(t, c.query(oldTicket, vecOrder, nil), "0")
	c.ticket(oldToken) // the old token still issues tickets within the overlap

	clock.Advance(time.Second) // exactly 60 s after supersession
	wantCode(t, c.query(oldTicket, vecOrder, nil), faceidtest.CodeIllegalRequest)
	if m := c.ticketAnswer(oldToken); m["code"] != faceidtest.CodeOAuthRejected {
		t.Errorf("superseded token still issues tickets: %v", m)
	}
	wantCode(t, c.query(newTicket, vecOrder, nil), "0")

	// A third token: the second one lives 60 s from now, not from before.
	clock.Advance(30 * time.Second)
	c.token()
	clock.Advance(59 * time.Second)
	wantCode(t, c.query(newTicket, vecOrder, nil), "0")
	clock.Advance(time.Second)
	wantCode(t, c.query(newTicket, vecOrder, nil), faceidtest.CodeIllegalRequest)

	// A longer overlap applies to tokens already superseded.
	s.SetOverlap(5 * time.Minute)
	wantCode(t, c.query(newTicket, vecOrder, nil), "0")
}

func TestTicketAndTokenExpiry(t *testing.T) {
	s, c := newEmulator(t)
	clock := newFakeClock()
	s.SetClock(clock.Now)
	s.AddResult(vecApp, vecOrder, faceidtest.Result{})
	tok := c.token()
	ticket := c.ticket(tok)

	clock.Advance(3599 * time.Second)
	wantCode(t, c.query(ticket, vecOrder, nil), "0")
	clock.Advance(time.Second)
	m := c.query(ticket, vecOrder, nil)
	wantCode(t, m, faceidtest.CodeIllegalRequest)
	if !strings.Contains(m["msg"].(string), "ticket") {
		t.Errorf("msg %q does not mention the ticket", m["msg"])
	}

	second := c.ticket(tok) // the token lives 7200 s
	wantCode(t, c.query(second, vecOrder, nil), "0")
	clock.Advance(3600 * time.Second) // token expired: its young ticket dies with it
	wantCode(t, c.query(second, vecOrder, nil), faceidtest.CodeIllegalRequest)
	if m := c.ticketAnswer(tok); m["code"] != faceidtest.CodeOAuthRejected {
		t.Errorf("expired token issues tickets: %v", m)
	}

	s.SetLifetimes(10*time.Minute, 5*time.Minute)
	m = c.tokenAnswer(secret)
	if m["expire_in"] != "600" {
		t.Errorf("expire_in = %v", m["expire_in"])
	}
	k := c.ticketAnswer(m["access_token"].(string))["tickets"].([]any)[0].(map[string]any)
	if k["expire_in"] != "300" {
		t.Errorf("ticket expire_in = %v", k["expire_in"])
	}
	clock.Advance(5 * time.Minute)
	wantCode(t, c.query(k["value"].(string), vecOrder, nil), faceidtest.CodeIllegalRequest)
}

func TestRevokeTokensAndSecretChange(t *testing.T) {
	s, c := newEmulator(t)
	s.AddResult(vecApp, vecOrder, faceidtest.Result{})
	ticket := c.ticket(c.token())
	wantCode(t, c.query(ticket, vecOrder, nil), "0")
	s.RevokeTokens(vecApp)
	wantCode(t, c.query(ticket, vecOrder, nil), faceidtest.CodeIllegalRequest)

	ticket = c.ticket(c.token())
	s.AddApp(vecApp, secret) // same secret: nothing changes
	wantCode(t, c.query(ticket, vecOrder, nil), "0")
	s.AddApp(vecApp, "rotated")
	wantCode(t, c.query(ticket, vecOrder, nil), faceidtest.CodeIllegalRequest)
	wantCode(t, c.tokenAnswer(secret), faceidtest.CodeOAuthRejected)
	wantCode(t, c.tokenAnswer("rotated"), "0")
}

func TestSignedRequestChecks(t *testing.T) {
	s, c := newEmulator(t)
	s.AddResult(vecApp, vecOrder, faceidtest.Result{})
	s.AddApp("IDAOTHER", "other")
	ticket := c.ticket(c.token())
	path := "/api/v2/base/queryfacerecord"
	good := func() map[string]string {
		return c.signed("queryfacerecord", ticket, newNonce(t), map[string]string{"orderNo": vecOrder})
	}
	// resign recomputes the sign after an edit, so only the edited rule fails.
	resign := func(b map[string]string) map[string]string {
		f := map[string]string{"orderNo": b["orderNo"]}
		out := c.signed("queryfacerecord", ticket, b["nonce"], f)
		out["appId"] = b["appId"]
		out["version"] = b["version"]
		return out
	}

	cases := []struct {
		name     string
		rawQuery string
		ctype    string
		body     func() []byte
		msgHas   string
	}{
		{"wrong ?orderNo=", "orderNo=orderNo000", "application/json", func() []byte { return mustJSON(t, good()) }, "orderNo"},
		{"missing ?orderNo=", "", "application/json", func() []byte { return mustJSON(t, good()) }, "orderNo"},
		{"text/plain", "orderNo=" + vecOrder, "text/plain", func() []byte { return mustJSON(t, good()) }, "Content-Type"},
		{"not JSON", "orderNo=" + vecOrder, "application/json", func() []byte { return []byte("orderNo=x") }, "JSON"},
		{"JSON array", "orderNo=" + vecOrder, "application/json", func() []byte { return []byte("[]") }, "JSON"},
		{"unknown appId", "orderNo=" + vecOrder, "application/json", func() []byte {
			b := good()
			b["appId"] = "IDANONE"
			return mustJSON(t, b)
		}, "appId"},
		{"other app's ticket", "orderNo=" + vecOrder, "application/json", func() []byte {
			b := good()
			b["appId"] = "IDAOTHER"
			return mustJSON(t, resign(b))
		}, "ticket"},
		{"version", "orderNo=" + vecOrder, "application/json", func() []byte {
			b := good()
			b["version"] = "1.0.1"
			return mustJSON(t, resign(b))
		}, "version"},
		{"short nonce", "orderNo=" + vecOrder, "application/json", func() []byte {
			b := good()
			b["nonce"] = "abc"
			return mustJSON(t, resign(b))
		}, "nonce"},
		{"nonce with dash", "orderNo=" + vecOrder, "application/json", func() []byte {
			b := good()
			b["nonce"] = "kHoSxvLZGxSoFsjxlbzEoUzh5PAnTU7-"
			return mustJSON(t, resign(b))
		}, "nonce"},
		{"orderNo with dash", "orderNo=order-1", "application/json", func() []byte {
			b := good()
			b["orderNo"] = "order-1"
			return mustJSON(t, resign(b))
		}, "orderNo"},
		{"orderNo too long", "orderNo=" + strings.Repeat("a", 33), "application/json", func() []byte {
			b := good()
			b["orderNo"] = strings.Repeat("a", 33)
			return mustJSON(t, resign(b))
		}, "orderNo"},
		{"orderNo as number", "orderNo=123", "application/json", func() []byte {
			b := map[string]any{}
			for k, v := range good() {
				b[k] = v
			}
			b["orderNo"] = 123
			return mustJSON(t, b)
		}, "orderNo"},
		{"sign missing", "orderNo=" + vecOrder, "application/json", func() []byte {
			b := good()
			delete(b, "sign")
			return mustJSON(t, b)
		}, "sign"},
		{"sign with another nonce", "orderNo=" + vecOrder, "application/json", func() []byte {
			b := good()
			b["nonce"] = vecNonce
			return mustJSON(t, b)
		}, "sign"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := c.postRaw(path, tc.rawQuery, tc.ctype, tc.body())
			defer resp.Body.Close()
			m := decodeObject(t, resp)
			wantCode(t, m, faceidtest.CodeIllegalRequest)
			if msg, _ := m["msg"].(string); !strings.Contains(msg, tc.msgHas) {
				t.Errorf("msg %q does not mention %q", msg, tc.msgHas)
			}
		})
	}

	// charset in the content type is fine.
	resp := c.postRaw(path, "orderNo="+vecOrder, "application/json; charset=utf-8", mustJSON(t, good()))
	wantCode(t, decodeObject(t, resp), "0")
	resp.Body.Close()

	// Without the requirement, a missing ?orderNo= passes, a different one still fails.
	s.SetRequireOrderNoQuery(false)
	resp = c.postRaw(path, "", "application/json", mustJSON(t, good()))
	wantCode(t, decodeObject(t, resp), "0")
	resp.Body.Close()
	wantCode(t, c.post(path, "orderNo000", good()), faceidtest.CodeIllegalRequest)

	// A GET on a POST API is refused and recorded.
	resp, err := c.hc.Get(s.URL + path + "?orderNo=" + vecOrder)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: HTTP %d", resp.StatusCode)
	}
}

func TestUnknownAndExpiredOrder(t *testing.T) {
	s, c := newEmulator(t)
	clock := newFakeClock()
	s.SetClock(clock.Now)
	ticket := c.ticket(c.token())
	m := c.query(ticket, "orderNoUnknown", nil)
	wantCode(t, m, faceidtest.CodeNoResult)
	if m["result"] != nil || m["bizSeqNo"] == "" {
		t.Errorf("answer = %v", m)
	}

	s.AddResult(vecApp, vecOrder, faceidtest.Result{})
	wantCode(t, c.query(ticket, vecOrder, nil), "0")
	s.RemoveResult(vecApp, vecOrder)
	wantCode(t, c.query(ticket, vecOrder, nil), faceidtest.CodeNoResult)

	// Results are kept three days.
	s.AddResult(vecApp, vecOrder, faceidtest.Result{})
	s.SetLifetimes(100*time.Hour, 100*time.Hour)
	ticket = c.ticket(c.token())
	clock.Advance(faceidtest.ResultRetention - time.Second)
	wantCode(t, c.query(ticket, vecOrder, nil), "0")
	clock.Advance(time.Second)
	wantCode(t, c.query(ticket, vecOrder, nil), faceidtest.CodeNoResult)
	if s.CodeCount(faceidtest.CodeNoResult) != 3 {
		t.Errorf("66660011 count = %d", s.CodeCount(faceidtest.CodeNoResult))
	}
}

func TestResultShapeAndGetFile(t *testing.T) {
	s, c := newEmulator(t)
	photo, video := []byte("\xff\xd8\xffphoto"), []byte("\x00\x00\x00\x18ftypmp42video")
	occurred := time.Date(2022, 4, 15, 7, 43, 41, 0, time.UTC)
	s.AddResult(vecApp, vecOrder, faceidtest.Result{
		Photo: photo, Video: video, OccurredTime: occurred, LiveRate: "98", Similarity: "96.5",
		RiskInfo: faceidtest.RiskInfo{DeviceInfoLevel: "1"},
	})
	s.AddResult(vecApp, "failedOrder", faceidtest.Result{Code: "66660015", Msg: "比对失败", Photo: photo})
	ticket := c.ticket(c.token())

	m := c.query(ticket, vecOrder, map[string]string{"getFile": "1"})
	wantCode(t, m, "0")
	r := result(m)
	for k, want := range map[string]string{
		"orderNo": vecOrder, "liveRate": "98", "similarity": "96.5", "occurredTime": "20220415154341", "appId": vecApp,
		"bizSeqNo": m["bizSeqNo"].(string),
	} {
		if r[k] != want {
			t.Errorf("result[%s] = %v, want %s", k, r[k], want)
		}
	}
	if len(m["bizSeqNo"].(string)) != 32 || len(m["transactionTime"].(string)) != 14 {
		t.Errorf("bizSeqNo %v transactionTime %v", m["bizSeqNo"], m["transactionTime"])
	}
	if risk := r["riskInfo"].(map[string]any); risk["deviceInfoLevel"] != "1" || risk["riskInfoTag"] != "" {
		t.Errorf("riskInfo = %v", risk)
	}
	if _, ok := r["sdkVersion"]; ok {
		t.Error("sdkVersion without queryVersion")
	}

	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	for _, tc := range []struct {
		getFile            string
		wantPhoto, wantVid bool
	}{{"1", true, true}, {"2", true, false}, {"3", false, true}, {"0", false, false}, {"", false, false}, {"4", false, false}} {
		extra := map[string]string{}
		if tc.getFile != "" {
			extra["getFile"] = tc.getFile
		}
		r := result(c.query(ticket, vecOrder, extra))
		p, hasPhoto := r["photo"]
		v, hasVideo := r["video"]
		if hasPhoto != tc.wantPhoto || hasVideo != tc.wantVid {
			t.Errorf("getFile %q: photo %v video %v", tc.getFile, hasPhoto, hasVideo)
		}
		if hasPhoto && p != b64(photo) || hasVideo && v != b64(video) {
			t.Errorf("getFile %q: files differ", tc.getFile)
		}
	}

	r = result(c.query(ticket, vecOrder, map[string]string{"queryVersion": "1.0"}))
	if r["sdkVersion"] != "v4.5.2.1" || r["trtcFlag"] != "N" {
		t.Errorf("queryVersion 1.0: %v", r)
	}

	m = c.query(ticket, "failedOrder", map[string]string{"getFile": "3"})
	wantCode(t, m, "66660015")
	if m["msg"] != "比对失败" || result(m)["photo"] != nil || result(m)["video"] != nil {
		t.Errorf("failed result: %v", m)
	}
}

func TestMediaAfter(t *testing.T) {
	s, c := newEmulator(t)
	clock := newFakeClock()
	s.SetClock(clock.Now)
	s.AddResult(vecApp, vecOrder, faceidtest.Result{Photo: []byte("p"), Video: []byte("v"), MediaAfter: 2 * time.Second})
	ticket := c.ticket(c.token())
	m := c.query(ticket, vecOrder, map[string]string{"getFile": "1"})
	wantCode(t, m, "0")
	if _, ok := result(m)["photo"]; ok {
		t.Fatal("photo present before MediaAfter")
	}
	clock.Advance(1999 * time.Millisecond)
	if _, ok := result(c.query(ticket, vecOrder, map[string]string{"getFile": "1"}))["video"]; ok {
		t.Fatal("video present before MediaAfter")
	}
	clock.Advance(time.Millisecond)
	r := result(c.query(ticket, vecOrder, map[string]string{"getFile": "1"}))
	if r["photo"] != "cA==" || r["video"] != "dg==" {
		t.Fatalf("files after MediaAfter: %v", r)
	}
}

func TestLargePhotoRoundTrip(t *testing.T) {
	s, c := newEmulator(t)
	photo := make([]byte, 6<<20+1) // 6 MiB and a byte, so base64 needs padding
	for i := range photo {
		photo[i] = byte(i*7 + i>>11)
	}
	video := bytes.Repeat([]byte{0, 1, 2}, 1<<20)
	s.AddResult(vecApp, vecOrder, faceidtest.Result{Photo: photo, Video: video})
	ticket := c.ticket(c.token())
	body := c.signed("queryfacerecord", ticket, newNonce(t), map[string]string{"orderNo": vecOrder, "getFile": "1"})
	resp := c.postRaw("/api/v2/base/queryfacerecord", "orderNo="+vecOrder, "application/json", mustJSON(t, body))
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ContentLength != int64(len(raw)) {
		t.Errorf("Content-Length %d, body %d bytes", resp.ContentLength, len(raw))
	}
	var m struct {
		Code   string
		Result struct{ Photo, Video []byte } // encoding/json decodes base64 into []byte
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.Code != "0" || !bytes.Equal(m.Result.Photo, photo) || !bytes.Equal(m.Result.Video, video) {
		t.Fatalf("code %q, photo %d bytes (equal %v), video %d bytes", m.Code, len(m.Result.Photo),
			bytes.Equal(m.Result.Photo, photo), len(m.Result.Video))
	}
}

func TestExpireInAsNumber(t *testing.T) {
	s, c := newEmulator(t)
	s.SetExpireInAsNumber(true)
	m := c.tokenAnswer(secret)
	if m["expire_in"] != float64(7200) {
		t.Errorf("token expire_in = %#v", m["expire_in"])
	}
	k := c.ticketAnswer(m["access_token"].(string))["tickets"].([]any)[0].(map[string]any)
	if k["expire_in"] != float64(3600) {
		t.Errorf("ticket expire_in = %#v", k["expire_in"])
	}
	s.SetExpireInAsNumber(false)
	if m := c.tokenAnswer(secret); m["expire_in"] != "7200" {
		t.Errorf("token expire_in = %#v", m["expire_in"])
	}
}

func TestResponseHooks(t *testing.T) {
	s, c := newEmulator(t)
	s.SetTicketResponseHook(func(m map[string]any) {
		m["tickets"].([]any)[0].(map[string]any)["expire_in"] = "-1"
	})
	tok := c.token()
	k := c.ticketAnswer(tok)["tickets"].([]any)[0].(map[string]any)
	if k["expire_in"] != "-1" {
		t.Errorf("expire_in = %v", k["expire_in"])
	}
	s.SetTicketResponseHook(func(m map[string]any) { m["tickets"] = []any{} })
	if ts := c.ticketAnswer(tok)["tickets"].([]any); len(ts) != 0 {
		t.Errorf("tickets = %v", ts)
	}
	s.SetTicketResponseHook(func(m map[string]any) { delete(m, "tickets") })
	if m := c.ticketAnswer(tok); m["tickets"] != nil || m["code"] != "0" {
		t.Errorf("answer = %v", m)
	}
	s.SetTicketResponseHook(nil)
	s.SetTokenResponseHook(func(m map[string]any) { m["expire_in"] = 0 })
	if m := c.tokenAnswer(secret); m["expire_in"] != float64(0) {
		t.Errorf("token expire_in = %v", m["expire_in"])
	}
}

func TestFaults(t *testing.T) {
	s, c := newEmulator(t)
	s.AddResult(vecApp, vecOrder, faceidtest.Result{})
	ticket := c.ticket(c.token())
	get := func(path string) (int, string, string) {
		resp, err := c.hc.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}

	s.SetFault(faceidtest.TokenEndpoint, faceidtest.Fault{Status: http.StatusBadGateway})
	status, ctype, body := get(faceidtest.TokenPath)
	if status != 502 || !strings.Contains(body, "502 Bad Gateway") || !strings.HasPrefix(ctype, "text/html") {
		t.Errorf("502 fault: %d %q %q", status, ctype, body)
	}

	s.SetFault(faceidtest.TokenEndpoint, faceidtest.Fault{RawBody: true})
	if status, _, body := get(faceidtest.TokenPath); status != 200 || body != "" {
		t.Errorf("empty body fault: %d %q", status, body)
	}
	s.SetFault(faceidtest.TicketEndpoint, faceidtest.Fault{Body: "<html>oops</html>", Status: 503})
	if status, ctype, body := get(faceidtest.TicketPath); status != 503 || body != "<html>oops</html>" || !strings.HasPrefix(ctype, "text/html") {
		t.Errorf("html fault: %d %q %q", status, ctype, body)
	}
	s.SetFault(faceidtest.TicketEndpoint, faceidtest.Fault{Code: "999999", Msg: "busy"})
	if m := c.ticketAnswer("x"); m["code"] != "999999" || m["msg"] != "busy" {
		t.Errorf("code fault: %v", m)
	}
	s.ClearFaults()
	c.ticket(c.token())

	// Times: two faulted signed answers, then normal ones; codes counted.
	s.ResetCounters()
	s.SetFault(faceidtest.QueryEndpoint, faceidtest.Fault{Code: faceidtest.CodeIllegalRequest, Msg: "forced", Times: 2})
	wantCode(t, c.query(ticket, vecOrder, nil), faceidtest.CodeIllegalRequest)
	wantCode(t, c.query(ticket, vecOrder, nil), faceidtest.CodeIllegalRequest)
	wantCode(t, c.query(ticket, vecOrder, nil), "0")
	if s.CodeCount(faceidtest.CodeIllegalRequest) != 2 || s.CodeCount("0") != 1 || s.QueryCalls() != 3 {
		t.Errorf("counts after Times fault: %d %d %d", s.CodeCount("400101"), s.CodeCount("0"), s.QueryCalls())
	}
	reqs := s.Requests()
	if len(reqs) != 3 || reqs[0].Code != "400101" || reqs[0].Msg != "forced" || reqs[2].Code != "0" {
		t.Errorf("records: %+v", reqs)
	}

	// Delay alone delays the normal answer.
	s.SetFault(faceidtest.QueryEndpoint, faceidtest.Fault{Delay: 100 * time.Millisecond, Times: 1})
	start := time.Now()
	wantCode(t, c.query(ticket, vecOrder, nil), "0")
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("delay fault answered after %v", d)
	}

	// A long delay ends when the client gives up.
	s.SetFault(faceidtest.QueryEndpoint, faceidtest.Fault{Delay: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/api/v2/base/queryfacerecord?orderNo=x",
		strings.NewReader("{}"))
	start = time.Now()
	if _, err := c.hc.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("delayed request: err %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("delayed request took %v", d)
	}

	// CloseConn drops the connection.
	s.SetFault(faceidtest.TokenEndpoint, faceidtest.Fault{CloseConn: true, Times: 1})
	if resp, err := c.hc.Get(s.URL + faceidtest.TokenPath); err == nil {
		resp.Body.Close()
		t.Error("CloseConn fault answered")
	}
	s.ClearFaults()
	wantCode(t, c.tokenAnswer(secret), "0")
}

func TestCloseEndsPendingDelay(t *testing.T) {
	s := faceidtest.NewServer()
	s.SetFault(faceidtest.TokenEndpoint, faceidtest.Fault{Delay: time.Hour})
	done := make(chan error, 1)
	go func() {
		resp, err := s.Client().Get(s.URL + faceidtest.TokenPath)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	for s.TokenCalls() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
	<-done
}

func TestConcurrentCountersExact(t *testing.T) {
	s, c := newEmulator(t)
	s.AddResult(vecApp, vecOrder, faceidtest.Result{Photo: bytes.Repeat([]byte("x"), 4096)})
	const n = 100
	var wg sync.WaitGroup
	tokens := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tokens[i] = c.token()
		}()
	}
	wg.Wait()
	if s.TokenCalls() != n || len(s.IssuedTokens()) != n {
		t.Fatalf("token calls %d, issued %d, want %d", s.TokenCalls(), len(s.IssuedTokens()), n)
	}
	seen := map[string]bool{}
	for _, tok := range tokens {
		seen[tok] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct tokens of %d", len(seen), n)
	}

	// All were issued within the overlap: each still issues a usable ticket.
	tickets := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tickets[i] = c.ticket(tokens[i])
		}()
	}
	wg.Wait()
	for i := 0; i < 3*n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			order := vecOrder
			if i%3 == 0 {
				order = "missing" + strconv.Itoa(i)
			}
			c.query(tickets[i%n], order, map[string]string{"getFile": "2"})
		}()
	}
	wg.Wait()
	if s.TicketCalls() != n || s.QueryCalls() != 3*n || s.CodeCount("0") != 2*n || s.CodeCount(faceidtest.CodeNoResult) != n {
		t.Errorf("ticket calls %d, query calls %d, code 0 %d, 66660011 %d", s.TicketCalls(), s.QueryCalls(),
			s.CodeCount("0"), s.CodeCount(faceidtest.CodeNoResult))
	}
	if got := len(s.Requests()); got != 3*n {
		t.Errorf("%d requests recorded", got)
	}
	if got := len(s.Secrets()); got != 1+2*n {
		t.Errorf("%d secrets", got)
	}
	s.ResetCounters()
	if s.TokenCalls()+s.TicketCalls()+s.QueryCalls()+s.CodeCount("0")+len(s.Requests()) != 0 {
		t.Error("ResetCounters left counts")
	}
}

func TestRequestsRecorded(t *testing.T) {
	s, c := newEmulator(t)
	ticket := c.ticket(c.token())
	body := c.signed("queryfacerecord", ticket, newNonce(t), map[string]string{"orderNo": vecOrder})
	c.post("/api/v2/base/queryfacerecord", vecOrder, body)
	reqs := s.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d records", len(reqs))
	}
	r := reqs[0]
	var sent map[string]string
	if err := json.Unmarshal(r.Body, &sent); err != nil || sent["sign"] != body["sign"] {
		t.Errorf("recorded body %s", r.Body)
	}
	if r.API != "queryfacerecord" || r.Method != "POST" || r.Path != "/api/v2/base/queryfacerecord" ||
		r.RawQuery != "orderNo="+vecOrder || r.Header.Get("Content-Type") != "application/json" ||
		r.Status != 200 || r.Code != faceidtest.CodeNoResult || r.Time.IsZero() {
		t.Errorf("record %+v", r)
	}
}

func TestOtherSignedAPIs(t *testing.T) {
	s, c := newEmulator(t)
	s.AddResult(vecApp, vecOrder, faceidtest.Result{Photo: []byte("p"), Extra: map[string]any{"name": "张三", "liveRate": "88"}})
	ticket := c.ticket(c.token())

	// queryphotoinfo answers a numeric code and the photo.
	m := c.post("/api/v2/base/queryphotoinfo", vecOrder,
		c.signed("queryphotoinfo", ticket, newNonce(t), map[string]string{"orderNo": vecOrder}))
	if m["code"] != float64(0) || result(m)["photo"] != "cA==" {
		t.Errorf("queryphotoinfo: %v", m)
	}
	// getWillFaceResult: the queryfacerecord shape, with Extra fields.
	m = c.post("/api/server/getWillFaceResult", vecOrder,
		c.signed("getWillFaceResult", ticket, newNonce(t), map[string]string{"orderNo": vecOrder}))
	wantCode(t, m, "0")
	if result(m)["name"] != "张三" || result(m)["liveRate"] != "88" || result(m)["photo"] != nil {
		t.Errorf("getWillFaceResult: %v", m)
	}

	// getOcrResult is a GET with snake_case parameters.
	q := url.Values{}
	for k, v := range c.signed("getOcrResult", ticket, newNonce(t), map[string]string{"order_no": vecOrder, "get_file": "2"}) {
		q.Set(k, v)
	}
	m = c.getJSON("/api/server/getOcrResult", q)
	wantCode(t, m, "0")
	if result(m)["photo"] != "cA==" {
		t.Errorf("getOcrResult: %v", m)
	}
	q.Set("nonce", vecNonce)
	wantCode(t, c.getJSON("/api/server/getOcrResult", q), faceidtest.CodeIllegalRequest)

	// getfaceid signs userId, not orderNo, but orderNo is required.
	fields := map[string]string{"orderNo": "newOrder1", "userId": "user1", "name": "张三", "idNo": "110101199001011234"}
	m = c.post("/api/server/getfaceid", "newOrder1", c.signed("getfaceid", ticket, newNonce(t), fields))
	wantCode(t, m, "0")
	if id, _ := result(m)["faceId"].(string); id == "" || result(m)["orderNo"] != "newOrder1" {
		t.Errorf("getfaceid: %v", m)
	}
	b := c.signed("getfaceid", ticket, newNonce(t), fields)
	b["orderNo"] = "otherOrder" // not signed: still accepted
	wantCode(t, c.post("/api/server/getfaceid", "otherOrder", b), "0")
	delete(b, "orderNo")
	wantCode(t, c.post("/api/server/getfaceid", "otherOrder", b), faceidtest.CodeIllegalRequest)

	// geth5faceid: seven values, no nonce.
	b = c.signed("geth5faceid", ticket, "", fields)
	if _, ok := b["nonce"]; ok {
		t.Fatal("geth5faceid helper added a nonce")
	}
	m = c.post("/api/server/h5/geth5faceid", "newOrder1", b)
	wantCode(t, m, "0")
	if id, _ := result(m)["h5faceId"].(string); id == "" {
		t.Errorf("geth5faceid: %v", m)
	}
	b["idNo"] = "110101199001019999" // signed: changing it breaks the sign
	wantCode(t, c.post("/api/server/h5/geth5faceid", "newOrder1", b), faceidtest.CodeIllegalRequest)
}

func TestUnstartedServerHandler(t *testing.T) {
	s := faceidtest.NewUnstartedServer()
	defer s.Close()
	if s.URL != "" {
		t.Fatalf("unstarted URL %q", s.URL)
	}
	s.AddApp(vecApp, secret)
	s.Start()
	c := newClient(t, s, vecApp)
	c.ticket(c.token())
	if s.Handler() == nil {
		t.Fatal("nil handler")
	}
}

func TestForcedTokenValueAndExtraOverride(t *testing.T) {
	s, c := newEmulator(t)
	s.SetNextTokenValue("TOKENVALUE1")
	if got := c.token(); got != "TOKENVALUE1" {
		t.Fatalf("forced token = %q", got)
	}
	if got := c.token(); got == "TOKENVALUE1" || len(got) != 64 {
		t.Fatalf("second token = %q", got)
	}
	s.AddResult(vecApp, vecOrder, faceidtest.Result{Extra: map[string]any{"riskInfo": nil, "note": "<&>"}})
	ticket := c.ticket("TOKENVALUE1")
	r := result(c.query(ticket, vecOrder, nil))
	if v, ok := r["riskInfo"]; !ok || v != nil || r["note"] != "<&>" || r["orderNo"] != vecOrder {
		t.Errorf("result = %v", r)
	}
}
