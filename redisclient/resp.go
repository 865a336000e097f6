package redisclient

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Reply kinds: the RESP2 type byte that starts each reply.
const (
	KindStatus byte = '+' // simple string, e.g. OK
	KindError  byte = '-' // error reply, message in Str
	KindInt    byte = ':' // integer, value in Int
	KindBulk   byte = '$' // bulk string, content in Str (Nil for $-1)
	KindArray  byte = '*' // array, elements in Array (Nil for *-1)
)

// Reply is one decoded RESP2 reply.
type Reply struct {
	Kind  byte    // one of KindStatus, KindError, KindInt, KindBulk, KindArray
	Str   string  // status text, error message or bulk content
	Int   int64   // integer value
	Array []Reply // array elements, possibly nested
	Nil   bool    // null bulk string ($-1) or null array (*-1)
}

// Limits of the reply parser. Redis itself caps bulk strings at 512 MB;
// lines (status, error, integer and length headers) are short in practice.
const (
	maxLineLen    = 64 << 10
	maxBulkLen    = 512 << 20
	maxArrayLen   = 1 << 31
	maxNesting    = 64
	smallBulkSize = 64 << 10
)

// readReply reads exactly one reply from r. An error reply from the server
// (-ERR ...) is a valid Reply of KindError, not an error. It returns io.EOF
// when r ends before the first byte, an error wrapping io.ErrUnexpectedEOF
// when r ends inside a reply, and an error wrapping ErrProtocol when the
// bytes are not RESP2.
func readReply(r *bufio.Reader) (Reply, error) {
	return readReplyNested(r, 0)
}

func readReplyNested(r *bufio.Reader, depth int) (Reply, error) {
	var rep Reply
	kind, err := r.ReadByte()
	if err != nil {
		return rep, err
	}
	line, err := readLine(r)
	if err != nil {
		return rep, err
	}
	switch kind {
	case KindStatus, KindError:
		rep.Kind = kind
		rep.Str = line
		return rep, nil
	case KindInt:
		n, err := strconv.ParseInt(line, 10, 64)
		if err != nil {
			return rep, fmt.Errorf("%w: bad integer reply %q", ErrProtocol, clip(line))
		}
		rep.Kind = kind
		rep.Int = n
		return rep, nil
	case KindBulk:
		n, err := parseLength(line, maxBulkLen)
		if err != nil {
			return rep, err
		}
		rep.Kind = kind
		if n < 0 {
			rep.Nil = true
			return rep, nil
		}
		s, err := readBulk(r, n)
		if err != nil {
			return rep, err
		}
		rep.Str = s
		return rep, nil
	case KindArray:
		n, err := parseLength(line, maxArrayLen)
		if err != nil {
			return rep, err
		}
		rep.Kind = kind
		if n < 0 {
			rep.Nil = true
			return rep, nil
		}
		if depth >= maxNesting {
			return rep, fmt.Errorf("%w: arrays nested deeper than %d", ErrProtocol, maxNesting)
		}
		capacity := n
		if capacity > 64 {
			capacity = 64
		}
		elems := make([]Reply, 0, capacity)
		var i int64
		for i = 0; i < n; i++ {
			elem, err := readReplyNested(r, depth+1)
			if err != nil {
				return rep, eofInside(err)
			}
			elems = append(elems, elem)
		}
		rep.Array = elems
		return rep, nil
	}
	return rep, fmt.Errorf("%w: unknown reply type byte 0x%02x", ErrProtocol, kind)
}

// readLine reads the rest of a header line and returns it without its CRLF.
func readLine(r *bufio.Reader) (string, error) {
	chunk, err := r.ReadSlice('\n')
	var line []byte
	if err == bufio.ErrBufferFull {
		line = append(line, chunk...)
		for err == bufio.ErrBufferFull {
			if len(line) > maxLineLen {
				return "", fmt.Errorf("%w: reply line longer than %d bytes", ErrProtocol, maxLineLen)
			}
			chunk, err = r.ReadSlice('\n')
			line = append(line, chunk...)
		}
	} else {
		line = chunk
	}
	n := len(line)
	if n-2 > maxLineLen {
		return "", fmt.Errorf("%w: reply line longer than %d bytes", ErrProtocol, maxLineLen)
	}
	if err != nil {
		return "", eofInside(err)
	}
	if n < 2 || line[n-2] != '\r' {
		return "", fmt.Errorf("%w: reply line not terminated by CRLF", ErrProtocol)
	}
	s := string(line[:n-2])
	if strings.IndexByte(s, '\r') >= 0 {
		return "", fmt.Errorf("%w: CR inside a reply line", ErrProtocol)
	}
	return s, nil
}

// parseLength parses a bulk or array length: -1 (null) or 0..limit.
func parseLength(line string, limit int64) (int64, error) {
	n, err := strconv.ParseInt(line, 10, 64)
	if err != nil || n < -1 || n > limit {
		return 0, fmt.Errorf("%w: bad length %q", ErrProtocol, clip(line))
	}
	return n, nil
}

// readBulk reads n bytes of content and the CRLF after them. Memory grows
// with the bytes actually received, not with the announced length.
func readBulk(r *bufio.Reader, n int64) (string, error) {
	var content string
	if n <= smallBulkSize {
		buf := make([]byte, int(n))
		_, err := io.ReadFull(r, buf)
		if err != nil {
			return "", eofInside(err)
		}
		content = string(buf)
	} else {
		var b strings.Builder
		b.Grow(smallBulkSize)
		_, err := io.CopyN(&b, r, n)
		if err != nil {
			return "", eofInside(err)
		}
		content = b.String()
	}
	cr, err := r.ReadByte()
	if err != nil {
		return "", eofInside(err)
	}
	lf, err := r.ReadByte()
	if err != nil {
		return "", eofInside(err)
	}
	if cr != '\r' || lf != '\n' {
		return "", fmt.Errorf("%w: bulk string of %d bytes not followed by CRLF", ErrProtocol, n)
	}
	return content, nil
}

// eofInside turns io.EOF met inside a reply into io.ErrUnexpectedEOF.
func eofInside(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// clip shortens text from the wire before it goes into an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// writeCommand appends one command as a RESP2 array of bulk strings.
func writeCommand(w *bufio.Writer, args []string) error {
	w.WriteByte(KindArray)
	w.WriteString(strconv.Itoa(len(args)))
	w.WriteString("\r\n")
	for i := 0; i < len(args); i++ {
		arg := args[i]
		w.WriteByte(KindBulk)
		w.WriteString(strconv.Itoa(len(arg)))
		w.WriteString("\r\n")
		w.WriteString(arg)
		w.WriteString("\r\n")
	}
	return w.Flush()
}
