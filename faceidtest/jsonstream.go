package faceidtest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
)

// jsonStream builds a JSON object with keys in a chosen order whose large
// binary fields (photo, video) are base64-encoded only while the answer is
// written, straight into the connection: a multi-megabyte file is never
// copied, and Content-Length is known up front.
type jsonStream struct {
	segs  []jsonSeg
	cur   []byte
	stack []level
	// skip holds keys not to write at depth skipDepth (Extra overrides).
	skip      map[string]any
	skipDepth int
}

// jsonSeg is literal JSON text, or media to write base64-encoded.
type jsonSeg struct {
	raw   []byte
	media []byte
}

type level struct {
	first      bool
	suppressed bool // a skipped object: its contents are dropped
}

// newJSONStream starts the top-level object.
func newJSONStream() *jsonStream {
	j := &jsonStream{}
	j.cur = append(j.cur, '{')
	j.stack = append(j.stack, level{first: true})
	return j
}

// skipKeys makes the current object leave out keys present in keys.
func (j *jsonStream) skipKeys(keys map[string]any) {
	j.skip = keys
	j.skipDepth = len(j.stack)
}

func (j *jsonStream) suppressed() bool {
	return len(j.stack) > 0 && j.stack[len(j.stack)-1].suppressed
}

// key writes the separator and key; false means the key is skipped.
func (j *jsonStream) key(k string) bool {
	if j.suppressed() {
		return false
	}
	if len(j.stack) == j.skipDepth {
		if _, ok := j.skip[k]; ok {
			return false
		}
	}
	top := &j.stack[len(j.stack)-1]
	if !top.first {
		j.cur = append(j.cur, ',')
	}
	top.first = false
	j.cur = appendJSON(j.cur, k)
	j.cur = append(j.cur, ':')
	return true
}

func (j *jsonStream) str(k, v string) {
	if j.key(k) {
		j.cur = appendJSON(j.cur, v)
	}
}

func (j *jsonStream) value(k string, v any) {
	if j.key(k) {
		j.cur = appendJSON(j.cur, v)
	}
}

// object opens a nested object under k; close it with end.
func (j *jsonStream) object(k string) {
	if !j.key(k) {
		j.stack = append(j.stack, level{suppressed: true})
		return
	}
	j.cur = append(j.cur, '{')
	j.stack = append(j.stack, level{first: true})
}

// end closes the innermost open object.
func (j *jsonStream) end() {
	top := j.stack[len(j.stack)-1]
	j.stack = j.stack[:len(j.stack)-1]
	if !top.suppressed {
		j.cur = append(j.cur, '}')
	}
}

// media writes data as a base64 string under k.
func (j *jsonStream) media(k string, data []byte) {
	if !j.key(k) {
		return
	}
	j.cur = append(j.cur, '"')
	j.segs = append(j.segs, jsonSeg{raw: j.cur}, jsonSeg{media: data})
	j.cur = []byte{'"'}
}

// writeTo writes the finished object as the HTTP answer.
func (j *jsonStream) writeTo(w http.ResponseWriter, status int) {
	segs := append(j.segs, jsonSeg{raw: j.cur})
	size := 0
	for _, s := range segs {
		size += len(s.raw) + base64.StdEncoding.EncodedLen(len(s.media))
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(size))
	w.WriteHeader(status)
	bw := bufio.NewWriterSize(w, 64<<10)
	for _, s := range segs {
		if s.media == nil {
			if _, err := bw.Write(s.raw); err != nil {
				return
			}
			continue
		}
		enc := base64.NewEncoder(base64.StdEncoding, bw)
		if _, err := enc.Write(s.media); err != nil {
			return
		}
		if err := enc.Close(); err != nil {
			return
		}
	}
	_ = bw.Flush()
}

// appendJSON appends v encoded as JSON without HTML escaping, like the
// vendor.
func appendJSON(dst []byte, v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		buf.Reset()
		_ = enc.Encode("faceidtest: cannot encode value: " + err.Error())
	}
	return append(dst, bytes.TrimRight(buf.Bytes(), "\n")...)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
