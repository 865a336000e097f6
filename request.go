package faceidsigner

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/kycgate/faceidsigner/signer"
	"github.com/kycgate/faceidsigner/ticketcache"
)

// Codes of the plugin's own error answers. They are not numeric, so they can
// never be mistaken for a vendor code.
const (
	codeMethodNotAllowed  = "FACEIDSIGNER_METHOD_NOT_ALLOWED"
	codeBodyTooLarge      = "FACEIDSIGNER_BODY_TOO_LARGE"
	codeBadJSON           = "FACEIDSIGNER_BAD_JSON"
	codeBadField          = "FACEIDSIGNER_BAD_FIELD"
	codeTicketUnavailable = "FACEIDSIGNER_TICKET_UNAVAILABLE"
	codeVendorUnreachable = "FACEIDSIGNER_VENDOR_UNREACHABLE"
	codeVendorTimeout     = "FACEIDSIGNER_VENDOR_TIMEOUT"
	codeInternal          = "FACEIDSIGNER_INTERNAL"
)

// maxOrderNoLength is the vendor's limit for orderNo (letters and digits).
const maxOrderNoLength = 32

// maxFieldLength bounds other signed caller fields (name, idNo, userId).
const maxFieldLength = 128

// rejection is an answer the plugin gives instead of forwarding.
type rejection struct {
	status int
	code   string
	msg    string
}

func badRequest(code, msg string) *rejection {
	return &rejection{status: http.StatusBadRequest, code: code, msg: msg}
}

// readBody reads the request body, at most limit bytes.
func readBody(req *http.Request, limit int64) ([]byte, *rejection) {
	if req.ContentLength > limit || req.Body == nil {
		return nil, bodyRejection(req.Body == nil, limit)
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil || int64(len(body)) > limit {
		return nil, bodyRejection(err != nil, limit)
	}
	return body, nil
}

// decodeJSONObject reads body as a JSON object whose values are kept raw,
// so that fields the plugin does not know pass through unchanged.
func decodeJSONObject(body []byte) (map[string]json.RawMessage, *rejection) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil || fields == nil {
		return nil, notAnObject(body)
	}
	return fields, nil
}

// bodyRejection answers a body that is missing or unreadable (unreadable
// true), or larger than limit.
func bodyRejection(unreadable bool, limit int64) *rejection {
	if unreadable {
		return badRequest(codeBadJSON, "request body must be a JSON object; it is empty or cannot be read")
	}
	return bodyTooLarge(limit)
}

func notAnObject(body []byte) *rejection {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest(codeBadJSON, "request body must be a JSON object; it is empty")
	}
	return badRequest(codeBadJSON, "request body must be a JSON object")
}

func bodyTooLarge(limit int64) *rejection {
	return &rejection{status: http.StatusRequestEntityTooLarge, code: codeBodyTooLarge,
		msg: "request body is larger than maxBodyBytes (" + strconv.FormatInt(limit, 10) + " bytes)"}
}

// callerValues extracts and checks the fields the caller must supply for the
// recipe and returns their string values by name.
func callerValues(r *signer.Recipe, fields map[string]json.RawMessage) (map[string]string, *rejection) {
	values := make(map[string]string, len(r.SignedFields)+len(r.RequiredFields)+1)
	order, rej := stringField(fields, r.OrderField)
	if rej != nil {
		return nil, rej
	}
	if !signer.IsAlphanumeric(order, maxOrderNoLength) {
		return nil, badRequest(codeBadField, r.OrderField+" must be 1 to 32 letters or digits")
	}
	values[r.OrderField] = order
	for i := 0; i < len(r.SignedFields); i++ {
		if rej := addField(values, fields, r.SignedFields[i]); rej != nil {
			return nil, rej
		}
	}
	for i := 0; i < len(r.RequiredFields); i++ {
		if rej := addField(values, fields, r.RequiredFields[i]); rej != nil {
			return nil, rej
		}
	}
	return values, nil
}

func addField(values map[string]string, fields map[string]json.RawMessage, name string) *rejection {
	if _, done := values[name]; done {
		return nil
	}
	v, rej := stringField(fields, name)
	if rej != nil {
		return rej
	}
	if len(v) > maxFieldLength {
		return badRequest(codeBadField, name+" is longer than "+strconv.Itoa(maxFieldLength)+" bytes")
	}
	values[name] = v
	return nil
}

// stringField returns the non-empty JSON string fields[name].
func stringField(fields map[string]json.RawMessage, name string) (string, *rejection) {
	raw, ok := fields[name]
	if !ok {
		return "", badRequest(codeBadField, name+" is required")
	}
	var v string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &v) != nil {
		return "", badRequest(codeBadField, name+" must be a JSON string")
	}
	if v == "" {
		return "", badRequest(codeBadField, name+" must not be empty")
	}
	return v, nil
}

// bodyRest returns the app's JSON object without its opening brace, ready
// to follow the gateway's own fields. When the app sent fields the gateway
// owns (appId, version, nonce, sign), they are dropped and the rest is
// re-encoded; otherwise the app's bytes are kept as they are, which is
// cheaper and changes nothing the app sent.
func bodyRest(r *signer.Recipe, body []byte, fields map[string]json.RawMessage) (string, error) {
	_, hasAppID := fields[r.AppIDField]
	_, hasVersion := fields[r.VersionField]
	_, hasNonce := fields[r.NonceField]
	_, hasSign := fields[r.SignField]
	owned := hasAppID || hasVersion || hasNonce || hasSign
	if owned {
		delete(fields, r.AppIDField)
		delete(fields, r.VersionField)
		delete(fields, r.NonceField)
		delete(fields, r.SignField)
		encoded, err := json.Marshal(fields)
		if err != nil {
			return "", errors.New("cannot encode the signed request body")
		}
		body = encoded
	}
	trimmed := bytes.TrimSpace(body)
	return string(trimmed[1:]), nil
}

// setBody makes body the request's body, with a Content-Length.
func setBody(req *http.Request, body string) {
	req.Body = io.NopCloser(strings.NewReader(body))
	req.GetBody = nil // see signOrderOnly
	req.ContentLength = int64(len(body))
	req.TransferEncoding = nil
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Length", strconv.Itoa(len(body)))
}

// setTarget points req at path?orderNo=. Traefik's proxy builds the
// upstream URL from RequestURI, so it is set along with URL. orderNo has
// been checked to be letters and digits: it needs no escaping.
func setTarget(req *http.Request, path, orderNo string) {
	req.URL.Path = path
	req.URL.RawPath = ""
	req.URL.RawQuery = "orderNo=" + orderNo
	req.RequestURI = path + "?orderNo=" + orderNo
}

// jsonString encodes s as a JSON string.
func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// ticketErrorStatus maps a ticket cache error to an HTTP status and code.
func ticketErrorStatus(err error) (int, string) {
	switch {
	case errors.Is(err, ticketcache.ErrTimeout):
		return http.StatusGatewayTimeout, codeVendorTimeout
	case errors.Is(err, ticketcache.ErrNoTicket), errors.Is(err, ticketcache.ErrStoreUnavailable):
		return http.StatusServiceUnavailable, codeTicketUnavailable
	default:
		return http.StatusBadGateway, codeVendorUnreachable
	}
}

// writeError writes the plugin's JSON error answer.
func writeError(rw http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(map[string]string{"code": code, "msg": msg})
	h := rw.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	rw.WriteHeader(status)
	_, _ = rw.Write(body)
}
