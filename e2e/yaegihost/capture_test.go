package yaegihost

import (
	"strings"
	"sync"
	"testing"
)

func TestPipeCaptureFlushSeesEveryCompletedWrite(t *testing.T) {
	var sink LogBuffer
	c, err := newPipeCapture(&sink)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()

	var want strings.Builder
	for i := 0; i < 200; i++ {
		// Include bytes that look like the start of a marker.
		line := strings.Repeat("x", i) + "\x00yaegihost" + "\x00yaegihost-flush:" + "notanumber\x00 end\n"
		want.WriteString(line)
		if _, err := c.w.WriteString(line); err != nil {
			t.Fatal(err)
		}
		c.flush()
		if got := sink.String(); got != want.String() {
			t.Fatalf("after write %d and flush:\ngot  %q\nwant %q", i, got, want.String())
		}
	}
}

func TestPipeCaptureConcurrentWritersAndFlushes(t *testing.T) {
	var sink LogBuffer
	c, err := newPipeCapture(&sink)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				_, _ = c.w.WriteString("line\n")
				if i%10 == 0 {
					c.flush()
				}
			}
		}()
	}
	wg.Wait()
	c.close()
	c.close() // idempotent enough: flush on a closed pipe returns at once
	if got := strings.Count(sink.String(), "line\n"); got != 400 || sink.Len() != 400*len("line\n") {
		t.Errorf("captured %d lines, %d bytes; want 400 lines and nothing else: %q", got, sink.Len(), sink.String())
	}
}
