package yaegihost

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// flushTimeout bounds how long a read of captured output waits for what the
// plugin already wrote to reach the buffer.
const flushTimeout = 5 * time.Second

// markerPrefix starts the in-band marker that flush writes into the pipe.
// NUL bytes keep it out of any text a plugin prints.
var markerPrefix = []byte("\x00yaegihost-flush:")

// pipeCapture is an *os.File that interpreted code can use as os.Stdout or
// os.Stderr, whose content is copied into sink by a goroutine. flush makes
// what was written before it visible in sink.
type pipeCapture struct {
	w    *os.File
	r    *os.File
	sink io.Writer

	writeMu sync.Mutex // orders markers
	next    uint64

	mu   sync.Mutex
	cond *sync.Cond
	seen uint64 // last marker read back
	done bool   // reader stopped
}

func newPipeCapture(sink io.Writer) (*pipeCapture, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create output pipe: %w", err)
	}
	c := &pipeCapture{w: w, r: r, sink: sink}
	c.cond = sync.NewCond(&c.mu)
	go c.read()
	return c, nil
}

func (c *pipeCapture) read() {
	defer func() {
		c.mu.Lock()
		c.done = true
		c.cond.Broadcast()
		c.mu.Unlock()
		_ = c.r.Close()
	}()
	var pending []byte
	chunk := make([]byte, 32*1024)
	for {
		n, err := c.r.Read(chunk)
		pending = append(pending, chunk[:n]...)
		pending = c.consume(pending)
		if err != nil {
			if len(pending) > 0 {
				_, _ = c.sink.Write(pending)
			}
			return
		}
	}
}

// consume writes out pending data, acknowledging complete markers, and
// returns what must wait for more input (a marker cut in two).
func (c *pipeCapture) consume(pending []byte) []byte {
	for {
		i := bytes.Index(pending, markerPrefix)
		if i < 0 {
			keep := partialMarkerSuffix(pending)
			if emit := pending[:len(pending)-keep]; len(emit) > 0 {
				_, _ = c.sink.Write(emit)
			}
			return append([]byte(nil), pending[len(pending)-keep:]...)
		}
		if i > 0 {
			_, _ = c.sink.Write(pending[:i])
		}
		rest := pending[i+len(markerPrefix):]
		end := bytes.IndexByte(rest, 0)
		if end < 0 && len(rest) <= maxSeqDigits {
			return append([]byte(nil), pending[i:]...) // marker cut in two
		}
		var seq uint64
		err := errNotMarker
		if end >= 0 {
			seq, err = strconv.ParseUint(string(rest[:end]), 10, 64)
		}
		if err != nil {
			// Not a marker after all: the plugin printed these bytes.
			_, _ = c.sink.Write(markerPrefix)
			pending = rest
			continue
		}
		c.mu.Lock()
		if seq > c.seen {
			c.seen = seq
		}
		c.cond.Broadcast()
		c.mu.Unlock()
		pending = rest[end+1:]
	}
}

var errNotMarker = errors.New("not a flush marker")

// maxSeqDigits is the length of the longest marker sequence number.
const maxSeqDigits = 20

// partialMarkerSuffix returns the length of the longest suffix of b that is
// a proper prefix of markerPrefix.
func partialMarkerSuffix(b []byte) int {
	for n := len(markerPrefix) - 1; n > 0; n-- {
		if len(b) >= n && bytes.Equal(b[len(b)-n:], markerPrefix[:n]) {
			return n
		}
	}
	return 0
}

// flush waits until everything written to the pipe before the call is in
// the sink, or flushTimeout passes.
func (c *pipeCapture) flush() {
	c.writeMu.Lock()
	c.next++
	seq := c.next
	_, err := c.w.Write(append(append(append([]byte(nil), markerPrefix...), strconv.FormatUint(seq, 10)...), 0))
	c.writeMu.Unlock()
	if err != nil {
		return // closed
	}

	timer := time.AfterFunc(flushTimeout, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(flushTimeout)
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.seen < seq && !c.done && time.Now().Before(deadline) {
		c.cond.Wait()
	}
}

// close stops the capture once what was written so far has been read.
func (c *pipeCapture) close() {
	c.flush()
	_ = c.w.Close()
}
