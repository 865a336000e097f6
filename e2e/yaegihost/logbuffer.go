package yaegihost

import (
	"bytes"
	"strings"
	"sync"
	"time"
)

// LogBuffer is a goroutine-safe, append-only buffer for what interpreted code
// writes to its Stdout or Stderr. The zero value is ready to use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p. It never fails.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Len returns the number of bytes written so far.
func (b *LogBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// Contains reports whether s occurs in what was written so far.
func (b *LogBuffer) Contains(s string) bool {
	return strings.Contains(b.String(), s)
}

// Lines returns the complete lines written so far, without their newlines.
func (b *LogBuffer) Lines() []string {
	text := b.String()
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		text = text[:i]
	} else {
		return nil
	}
	return strings.Split(text, "\n")
}

// WaitFor polls until s has been written or timeout elapses, and reports
// whether it was found. Use it for lines logged by background goroutines.
func (b *LogBuffer) WaitFor(s string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if b.Contains(s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Reset discards everything written so far.
func (b *LogBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}
