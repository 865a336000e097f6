package faceidtest

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Endpoint names a group of emulator endpoints a Fault applies to.
type Endpoint string

// The endpoints faults can be set on.
const (
	TokenEndpoint  Endpoint = "access_token"
	TicketEndpoint Endpoint = "api_ticket"
	// QueryEndpoint is every signed API (queryfacerecord and the others).
	QueryEndpoint Endpoint = "signed"
)

// Fault makes an endpoint misbehave. Delay alone delays the normal answer;
// with Status, Body, RawBody, Code or CloseConn the fault also replaces it.
type Fault struct {
	// Delay waits (real time) before answering; it ends early when the
	// client gives up or the server closes, and then nothing is answered.
	Delay time.Duration
	// Status is the HTTP status to answer. Alone, it answers a small HTML
	// page like a proxy's; with Code it is the status of the vendor JSON;
	// with Body it is the status of that body. 0 means 200.
	Status int
	// Body is answered verbatim instead of JSON (e.g. "not json",
	// "<html>..."). Set RawBody to answer an empty Body.
	Body    string
	RawBody bool
	// Code and Msg answer a vendor error JSON (Code should not be "0").
	Code string
	Msg  string
	// CloseConn closes the connection without answering.
	CloseConn bool
	// Times is how many requests the fault applies to before it clears
	// itself; 0 means until ClearFaults or SetFault replaces it.
	Times int
}

func (f *Fault) replacesAnswer() bool {
	return f.Status != 0 || f.Body != "" || f.RawBody || f.Code != "" || f.CloseConn
}

// SetFault sets the fault of endpoint, replacing any previous one.
func (s *Server) SetFault(endpoint Endpoint, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[endpoint] = &f
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = map[Endpoint]*Fault{}
}

// takeFault returns the fault that applies to this request, counting down
// its Times.
func (s *Server) takeFault(endpoint Endpoint) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.faults[endpoint]
	if !ok {
		return Fault{}, false
	}
	taken := *f
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			delete(s.faults, endpoint)
		}
	}
	return taken, true
}

// faultOutcome is what a fault did to one request.
type faultOutcome struct {
	// handled reports that the fault finishes the request: call write
	// (after recording the request, if needed) and answer nothing else.
	handled bool
	status  int    // HTTP status written, 0 if none
	code    string // vendor code written, "" if none
	msg     string
	write   func(w http.ResponseWriter)
}

// applyFault applies the endpoint's fault, if any: it waits out the delay
// and decides the replacement answer.
func (s *Server) applyFault(r *http.Request, endpoint Endpoint) faultOutcome {
	f, ok := s.takeFault(endpoint)
	if !ok {
		return faultOutcome{}
	}
	if f.Delay > 0 {
		timer := time.NewTimer(f.Delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			return faultOutcome{handled: true, write: func(http.ResponseWriter) {}}
		case <-s.closed:
			return faultOutcome{handled: true, write: func(http.ResponseWriter) {}}
		}
	}
	if !f.replacesAnswer() {
		return faultOutcome{}
	}
	if f.CloseConn {
		return faultOutcome{handled: true, write: closeConn}
	}
	out := faultOutcome{handled: true, status: f.Status}
	if out.status == 0 {
		out.status = http.StatusOK
	}
	switch {
	case f.Body != "" || f.RawBody:
		ctype := "text/plain; charset=utf-8"
		if strings.HasPrefix(strings.TrimSpace(f.Body), "<") {
			ctype = "text/html; charset=utf-8"
		}
		body := f.Body
		out.write = func(w http.ResponseWriter) { writeRaw(w, out.status, ctype, body) }
	case f.Code != "":
		out.code = f.Code
		out.msg = f.Msg
		if out.msg == "" {
			out.msg = "emulated fault " + f.Code
		}
		now := s.now()
		m := map[string]any{"code": out.code, "msg": out.msg, "transactionTime": vendorTime(now)}
		if endpoint == QueryEndpoint {
			m["bizSeqNo"] = newBizSeqNo(now)
		}
		out.write = func(w http.ResponseWriter) { writeJSON(w, out.status, m) }
	default:
		text := strconv.Itoa(out.status) + " " + http.StatusText(out.status)
		page := "<html><head><title>" + text + "</title></head><body><h1>" + text + "</h1></body></html>\n"
		out.write = func(w http.ResponseWriter) { writeRaw(w, out.status, "text/html; charset=utf-8", page) }
	}
	return out
}

// closeConn drops the client connection without an answer.
func closeConn(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // HTTP/2 or no hijacker: abort the stream
}

func writeRaw(w http.ResponseWriter, status int, ctype, body string) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// now reads the emulator clock.
func (s *Server) now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clock()
}
