package faceidsigner

import (
	"bytes"
	"net/http"
	"strconv"
)

// responseCapture holds a vendor answer back while it is small enough to
// inspect (up to limit bytes), so that the plugin can decide to retry
// instead of passing it on. An answer that turns out larger, or announces a
// larger Content-Length, is streamed to the client as it comes and can no
// longer be retried.
type responseCapture struct {
	rw        http.ResponseWriter
	header    http.Header
	status    int
	body      bytes.Buffer
	limit     int
	streaming bool
}

func newResponseCapture(rw http.ResponseWriter, limit int) *responseCapture {
	return &responseCapture{rw: rw, header: http.Header{}, limit: limit}
}

// Header returns the captured header; it reaches the client on commit.
func (c *responseCapture) Header() http.Header {
	if c.streaming {
		return c.rw.Header()
	}
	return c.header
}

// WriteHeader records the status. A Content-Length above the limit switches
// to streaming at once.
func (c *responseCapture) WriteHeader(status int) {
	if c.streaming || c.status != 0 {
		return
	}
	c.status = status
	if n, err := strconv.Atoi(c.header.Get("Content-Length")); err == nil && n > c.limit {
		c.startStreaming()
	}
}

// Write buffers p, or streams it once the answer is too large to hold.
func (c *responseCapture) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.WriteHeader(http.StatusOK)
	}
	if c.streaming {
		return c.rw.Write(p)
	}
	if c.body.Len()+len(p) > c.limit {
		c.startStreaming()
		return c.rw.Write(p)
	}
	return c.body.Write(p)
}

// Flush is passed on while streaming. Under yaegi, the native proxy sees
// this type through a wrapper that has only ResponseWriter's methods, so it
// does not flush; the server's own buffering still streams large answers.
func (c *responseCapture) Flush() {
	if c.streaming {
		if f, ok := c.rw.(http.Flusher); ok {
			f.Flush()
		}
	}
}

func (c *responseCapture) startStreaming() {
	c.streaming = true
	c.copyHeader()
	c.rw.WriteHeader(c.status)
	if c.body.Len() > 0 {
		_, _ = c.rw.Write(c.body.Bytes())
		c.body.Reset()
	}
}

func (c *responseCapture) copyHeader() {
	dst := c.rw.Header()
	for k, v := range c.header {
		dst[k] = v
	}
}

// commit sends a held answer to the client. It does nothing for an answer
// that is already streaming.
func (c *responseCapture) commit() {
	if c.streaming {
		return
	}
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.copyHeader()
	c.rw.WriteHeader(c.status)
	if c.body.Len() > 0 {
		_, _ = c.rw.Write(c.body.Bytes())
	}
}

// held reports whether the whole answer is held (not streamed).
func (c *responseCapture) held() bool { return !c.streaming }
