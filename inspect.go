package faceidsigner

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/kycgate/faceidsigner/signer"
)

// Media asked for with getFile (SPEC.md section 5), as bit flags.
const (
	mediaPhoto = 1
	mediaVideo = 2
	// mediaMaybe: the answer may carry files, but not ones the plugin
	// polls for (a numeric getFile, get_file of getOcrResult, queryphotoinfo).
	mediaMaybe = 4
)

// wantedFiles returns the files the request asks for with the recipe's
// file field (getFile: "1" photo and video, "2" photo, "3" video, anything
// else none; a JSON number is read the same way). Any other non-empty value
// of a file field (get_file) counts as "maybe files".
func wantedFiles(r *signer.Recipe, fields map[string]json.RawMessage) int {
	if r.AlwaysFiles {
		return mediaMaybe
	}
	if r.FileField == "" {
		return 0
	}
	raw := fields[r.FileField]
	switch string(raw) {
	case `"1"`:
		return mediaPhoto | mediaVideo
	case `"2"`:
		return mediaPhoto
	case `"3"`:
		return mediaVideo
	case "", `""`, `"0"`, `0`, `null`:
		return 0
	case `1`, `2`, `3`:
		return mediaMaybe // the vendor documents a string; whether it reads a number is unknown
	}
	if r.PollsMedia {
		return 0 // getFile's "anything else": no files
	}
	return mediaMaybe
}

// Verdicts on a held vendor answer.
const (
	verdictPass = iota
	verdictStaleTicket
	verdictMediaMissing
)

// vendorAnswer is the part of a vendor answer the retry rules read. The
// vendor asks clients not to validate answers strictly: everything else is
// ignored, and code may be a string or a number.
type vendorAnswer struct {
	Code   json.RawMessage `json:"code"`
	Result *vendorResult   `json:"result"`
}

type vendorResult struct {
	Photo json.RawMessage `json:"photo"`
	Video json.RawMessage `json:"video"`
}

// inspect reads a held answer. A cheap byte search rules out most answers
// before any JSON is decoded.
func (m *Signer) inspect(body []byte, media int) int {
	mayBeStale := false
	for i := 0; i < len(m.settings.retryCodes); i++ {
		if bytes.Contains(body, m.settings.retryCodes[i]) {
			mayBeStale = true
			break
		}
	}
	if !mayBeStale && (media == 0 || m.settings.mediaRetries == 0) {
		return verdictPass
	}
	var a vendorAnswer
	if json.Unmarshal(body, &a) != nil {
		return verdictPass
	}
	code := answerCode(a.Code)
	if mayBeStale {
		for i := 0; i < len(m.settings.retryCodes); i++ {
			if code == string(m.settings.retryCodes[i]) {
				return verdictStaleTicket
			}
		}
	}
	if code == "0" && media != 0 && lacksMedia(a.Result, media) {
		return verdictMediaMissing
	}
	return verdictPass
}

// answerCode returns a vendor code given as a JSON string or number, or
// "other" for anything that is not 1 to 16 letters and digits (the code is
// used as a metrics label: its values must stay few and printable).
func answerCode(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = bytes.TrimSpace(raw[1 : len(raw)-1])
	}
	code := string(raw)
	if !signer.IsAlphanumeric(code, 16) {
		return "other"
	}
	return code
}

func lacksMedia(r *vendorResult, media int) bool {
	if r == nil {
		return true
	}
	if media&mediaPhoto != 0 && isEmptyJSON(r.Photo) {
		return true
	}
	return media&mediaVideo != 0 && isEmptyJSON(r.Video)
}

func isEmptyJSON(raw json.RawMessage) bool {
	s := string(bytes.TrimSpace(raw))
	return s == "" || s == "null" || s == `""`
}

// sleepWithin waits d unless ctx ends first or its deadline leaves no time
// for the wait; it reports whether the wait happened.
func sleepWithin(ctx context.Context, d time.Duration) bool {
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
