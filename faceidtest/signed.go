package faceidtest

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/kycgate/faceidsigner/signer"
)

// Result is a verification result the query APIs return for one order.
type Result struct {
	// Code is the top-level vendor code; "" means "0" (same person).
	Code string
	// Msg is the top-level message; "" means "请求成功".
	Msg string
	// LiveRate and Similarity are the scores; "" means "99" and "97.0".
	LiveRate   string
	Similarity string
	// OccurredTime is when the face was verified; zero means when AddResult
	// was called.
	OccurredTime time.Time
	// Photo and Video are the files, returned base64 per getFile. The
	// emulator keeps these slices: do not modify them afterwards. nil means
	// the field is never returned.
	Photo []byte
	Video []byte
	// MediaAfter delays the files: they are absent from answers until the
	// emulator clock passes registration + MediaAfter (the vendor's files
	// lag the result by 1 to 2 s).
	MediaAfter time.Duration
	// SDKVersion and TRTCFlag are returned with queryVersion "1.0";
	// "" means "v4.5.2.1" and "N".
	SDKVersion string
	TRTCFlag   string
	// RiskInfo is returned as riskInfo.
	RiskInfo RiskInfo
	// Extra adds fields to the result object (or replaces standard ones),
	// e.g. OCR fields for getOcrResult. Values are encoded with
	// encoding/json.
	Extra map[string]any
}

// RiskInfo is the result's riskInfo object.
type RiskInfo struct {
	DeviceInfoLevel string
	DeviceInfoTag   string
	RiskInfoLevel   string
	RiskInfoTag     string
}

type resultKey struct{ appID, orderNo string }

type storedResult struct {
	r          Result
	registered time.Time
}

// AddResult registers the result the query APIs return for appID's orderNo,
// replacing any previous one. It is kept for ResultRetention from now (the
// emulator clock).
func (s *Server) AddResult(appID, orderNo string, r Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.results[resultKey{appID, orderNo}] = &storedResult{r: r, registered: s.clock()}
}

// RemoveResult forgets the result of appID's orderNo.
func (s *Server) RemoveResult(appID, orderNo string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.results, resultKey{appID, orderNo})
}

// serveSigned answers one signed API described by recipe.
func (s *Server) serveSigned(w http.ResponseWriter, r *http.Request, recipe *signer.Recipe) {
	s.queryCalls.Add(1)
	body, bodyErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSignedBody))
	rec := Request{
		API: recipe.API, Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Header: r.Header.Clone(), Body: body, Time: s.now(),
	}
	if s.applyFaultRecorded(w, r, rec) {
		return
	}
	if r.Method != recipe.Method {
		rec.Status = http.StatusMethodNotAllowed
		s.record(rec)
		writeMethodNotAllowed(w)
		return
	}
	out := s.answerSigned(r, recipe, body, bodyErr)
	rec.Status = http.StatusOK
	rec.Code = out.code
	rec.Msg = out.msg
	s.record(rec)
	out.body.writeTo(w, http.StatusOK)
}

// applyFaultRecorded applies the QueryEndpoint fault; when the fault
// finishes the request it records the request, then answers.
func (s *Server) applyFaultRecorded(w http.ResponseWriter, r *http.Request, rec Request) bool {
	fault := s.applyFault(r, QueryEndpoint)
	if !fault.handled {
		return false
	}
	rec.Status = fault.status
	rec.Code = fault.code
	rec.Msg = fault.msg
	s.record(rec)
	fault.write(w)
	return true
}

// signedAnswer is a signed API's answer.
type signedAnswer struct {
	code string
	msg  string
	body *jsonStream
}

// answerSigned checks a signed request in the vendor's order and builds the
// answer.
func (s *Server) answerSigned(r *http.Request, recipe *signer.Recipe, body []byte, bodyErr error) signedAnswer {
	fields, problem := requestFields(r, recipe, body, bodyErr)
	appID := fields[recipe.AppIDField]
	order := fields[recipe.OrderField]

	s.mu.Lock()
	now := s.clock()
	a := s.apps[appID]
	requireOrderQuery := s.requireOrderQuery
	var tickets []string
	if a != nil {
		for _, k := range a.tickets {
			if s.ticketAliveLocked(k, now) {
				tickets = append(tickets, k.value)
			}
		}
	}
	s.mu.Unlock()

	if problem == "" {
		problem = checkFields(r, recipe, fields, a != nil, requireOrderQuery)
	}
	if problem == "" {
		problem = checkSign(recipe, fields, tickets)
	}
	if problem != "" {
		return errorAnswer(CodeIllegalRequest, "illegal request: "+problem, now)
	}

	switch recipe.API {
	case "getfaceid", "geth5faceid":
		return faceIDAnswer(recipe.API, order, now)
	}

	s.mu.Lock()
	stored := s.results[resultKey{appID, order}]
	s.mu.Unlock()
	if stored == nil || !now.Before(stored.registered.Add(ResultRetention)) {
		return errorAnswer(CodeNoResult, "无此查询结果", now)
	}
	return resultAnswer(recipe.API, appID, order, fields, stored, now)
}

// requestFields returns the request's string fields: the JSON body's for a
// POST API, the query string's for a GET API. problem says why the request
// cannot be read. Non-string JSON values are left out, so a required field
// given as a number is reported missing.
func requestFields(r *http.Request, recipe *signer.Recipe, body []byte, bodyErr error) (map[string]string, string) {
	fields := map[string]string{}
	if recipe.Method == http.MethodGet {
		for k, v := range r.URL.Query() {
			if len(v) > 0 {
				fields[k] = v[0]
			}
		}
		return fields, ""
	}
	if bodyErr != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(bodyErr, &tooLarge) {
			return fields, "body is larger than " + strconv.Itoa(maxSignedBody) + " bytes"
		}
		return fields, "cannot read body: " + bodyErr.Error()
	}
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "application/json" {
		return fields, "Content-Type must be application/json"
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return fields, "body must be a JSON object"
	}
	for k, v := range raw {
		var str string
		if json.Unmarshal(v, &str) == nil {
			fields[k] = str
		}
	}
	return fields, ""
}

// checkFields applies the vendor's field rules; "" means all passed.
func checkFields(r *http.Request, recipe *signer.Recipe, fields map[string]string, appKnown, requireOrderQuery bool) string {
	appID := fields[recipe.AppIDField]
	switch {
	case appID == "":
		return recipe.AppIDField + " is missing"
	case !appKnown:
		return recipe.AppIDField + " " + strconv.Quote(appID) + " is not registered"
	case fields[recipe.VersionField] != "1.0.0":
		return recipe.VersionField + " must be 1.0.0"
	}
	if recipe.NonceField != "" {
		nonce := fields[recipe.NonceField]
		if len(nonce) != signer.NonceLength || !signer.IsAlphanumeric(nonce, signer.NonceLength) {
			return recipe.NonceField + " must be 32 letters or digits"
		}
	}
	order, ok := fields[recipe.OrderField]
	if !ok {
		return recipe.OrderField + " is missing (or not a string)"
	}
	if !signer.IsAlphanumeric(order, 32) {
		return recipe.OrderField + " must be 1 to 32 letters or digits"
	}
	for _, list := range [][]string{recipe.SignedFields, recipe.RequiredFields} {
		for _, name := range list {
			if fields[name] == "" {
				return name + " is missing (or not a string)"
			}
		}
	}
	if recipe.Method == http.MethodPost {
		q := r.URL.Query()
		if _, present := q["orderNo"]; !present {
			if requireOrderQuery {
				return "query parameter orderNo is missing"
			}
		} else if q.Get("orderNo") != order {
			return "query parameter orderNo differs from the body's " + recipe.OrderField
		}
	}
	if len(fields[recipe.SignField]) != 40 {
		return recipe.SignField + " must be 40 hex characters"
	}
	return ""
}

// checkSign reports "" when the sign matches one of the live tickets.
func checkSign(recipe *signer.Recipe, fields map[string]string, tickets []string) string {
	if len(tickets) == 0 {
		return "no live SIGN ticket for this app (expired, superseded or never issued)"
	}
	got := fields[recipe.SignField]
	for _, t := range tickets {
		want := recipe.SignValues(fields, fields[recipe.AppIDField], fields[recipe.VersionField], t, fields[recipe.NonceField])
		if strings.EqualFold(got, want) {
			return ""
		}
	}
	return recipe.SignField + " does not match any live SIGN ticket of this app"
}

func errorAnswer(code, msg string, now time.Time) signedAnswer {
	j := newJSONStream()
	j.str("code", code)
	j.str("msg", msg)
	j.str("bizSeqNo", newBizSeqNo(now))
	j.str("transactionTime", vendorTime(now))
	j.end()
	return signedAnswer{code: code, msg: msg, body: j}
}

// faceIDAnswer answers getfaceid and geth5faceid with a fresh id.
func faceIDAnswer(api, order string, now time.Time) signedAnswer {
	biz := newBizSeqNo(now)
	j := newJSONStream()
	j.str("code", CodeOK)
	j.str("msg", MsgOK)
	j.str("bizSeqNo", biz)
	j.object("result")
	j.str("bizSeqNo", biz)
	j.str("transactionTime", vendorTime(now))
	j.str("orderNo", order)
	if api == "geth5faceid" {
		j.str("h5faceId", uuid.NewString())
		j.str("optimalDomain", "kyc1.qcloud.com")
	} else {
		j.str("faceId", uuid.NewString())
	}
	j.value("success", false)
	j.end()
	j.str("transactionTime", vendorTime(now))
	j.end()
	return signedAnswer{code: CodeOK, msg: MsgOK, body: j}
}

// resultAnswer answers a registered result in the shape of SPEC.md section 5.
func resultAnswer(api, appID, order string, fields map[string]string, stored *storedResult, now time.Time) signedAnswer {
	res := stored.r
	code := or(res.Code, CodeOK)
	msg := or(res.Msg, MsgOK)
	biz := newBizSeqNo(now)
	mediaReady := !now.Before(stored.registered.Add(res.MediaAfter))
	getFile := fields["getFile"]
	if api == "getOcrResult" {
		getFile = fields["get_file"]
	}
	wantPhoto := getFile == "1" || getFile == "2" || api == "queryphotoinfo"
	wantVideo := getFile == "1" || getFile == "3"

	j := newJSONStream()
	if n, err := strconv.Atoi(code); err == nil && api == "queryphotoinfo" {
		j.value("code", n) // this API's examples show a numeric code
	} else {
		j.str("code", code)
	}
	j.str("msg", msg)
	j.str("bizSeqNo", biz)
	j.object("result")
	j.skipKeys(res.Extra)
	occurred := res.OccurredTime
	if occurred.IsZero() {
		occurred = stored.registered
	}
	j.str("orderNo", order)
	j.str("liveRate", or(res.LiveRate, "99"))
	j.object("riskInfo")
	j.str("deviceInfoLevel", res.RiskInfo.DeviceInfoLevel)
	j.str("deviceInfoTag", res.RiskInfo.DeviceInfoTag)
	j.str("riskInfoLevel", res.RiskInfo.RiskInfoLevel)
	j.str("riskInfoTag", res.RiskInfo.RiskInfoTag)
	j.end()
	j.str("similarity", or(res.Similarity, "97.0"))
	j.str("occurredTime", vendorTime(occurred))
	j.str("appId", appID)
	if mediaReady && wantPhoto && res.Photo != nil {
		j.media("photo", res.Photo)
	}
	if fields["queryVersion"] == "1.0" {
		j.str("sdkVersion", or(res.SDKVersion, "v4.5.2.1"))
		j.str("trtcFlag", or(res.TRTCFlag, "N"))
	}
	if mediaReady && wantVideo && res.Video != nil {
		j.media("video", res.Video)
	}
	j.str("bizSeqNo", biz)
	j.skipKeys(nil)
	for _, k := range sortedKeys(res.Extra) {
		j.value(k, res.Extra[k])
	}
	j.end()
	j.str("transactionTime", vendorTime(now))
	j.end()
	return signedAnswer{code: code, msg: msg, body: j}
}

func or(v, fallback string) string {
	if v == "" {
		return fallback
	}
	return v
}
