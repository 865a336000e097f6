// Package redisclient is a minimal Redis client (RESP2 over TCP or TLS) for
// the few commands that let several gateway replicas share one access token
// and SIGN ticket: GET, SET (NX, PX), DEL, PING and Lua scripts through
// EVALSHA. It uses the standard library only, because it runs interpreted by
// yaegi inside Traefik, where the usual Redis clients do not load.
//
// A Client holds a bounded pool of connections made lazily; it is safe for
// concurrent use. Every call finishes by the earlier of its context's
// deadline and Options.Timeout, and a connection whose reply was not read in
// full is closed, never reused. A pooled connection found dead before any
// byte of its reply arrived (Redis restarted or dropped it while idle) is
// replaced and the command sent once more on a new connection, so calls
// recover after a Redis restart without a new Client.
package redisclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Errors callers can test with errors.Is.
var (
	// ErrTimeout: Redis did not answer (or no pool connection came free)
	// within Options.Timeout or the context's deadline.
	ErrTimeout = errors.New("redisclient: timed out")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("redisclient: client is closed")
	// ErrServer: Redis replied with an error; the message follows in the text.
	ErrServer = errors.New("redisclient: redis replied with an error")
	// ErrProtocol: the reply was not RESP2 or not the type the command returns.
	ErrProtocol = errors.New("redisclient: malformed or unexpected reply")
)

// errNoReply marks a connection that failed before any reply byte arrived
// (typically closed by a restarted server while idle in the pool).
var errNoReply = errors.New("connection lost before a reply")

// Defaults for zero Options fields.
const (
	DefaultAddress  = "localhost:6379"
	DefaultTimeout  = time.Second
	DefaultPoolSize = 4
)

// Options configure a Client. The zero value talks to localhost:6379.
type Options struct {
	Address  string // host:port; default localhost:6379
	Username string // ACL user for AUTH (needs Password); empty: AUTH with the password only
	Password string // AUTH on each new connection when not empty
	DB       int    // SELECT on each new connection when not 0

	// TLS makes connections with crypto/tls. TLSConfig, when not nil, is
	// used instead of the defaults and also turns TLS on; its ServerName
	// defaults to the host of Address.
	TLS       bool
	TLSConfig *tls.Config

	Timeout  time.Duration // budget of one call: pool wait, dial, handshake, command; default 1s
	PoolSize int           // most connections open at once, idle or busy; default 4
}

// Client is a pool of Redis connections. Create it with New.
type Client struct {
	addr      string
	username  string
	password  string
	db        int
	tlsConfig *tls.Config // nil: plain TCP
	timeout   time.Duration

	slots chan struct{} // one token per open-or-opening connection
	done  chan struct{} // closed by Close

	mu      sync.Mutex
	idle    []*conn
	closed  bool
	scripts map[string]string // Lua script -> SHA-1 hex
}

// conn is one connection; it is used by one goroutine at a time.
type conn struct {
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	broken bool // must be closed instead of going back to the pool
}

// New returns a Client for opts. It does no I/O: connections are made by
// the first calls that need them.
func New(opts Options) *Client {
	c := &Client{}
	c.addr = opts.Address
	if c.addr == "" {
		c.addr = DefaultAddress
	}
	c.username = opts.Username
	c.password = opts.Password
	c.db = opts.DB
	c.timeout = opts.Timeout
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	size := opts.PoolSize
	if size <= 0 {
		size = DefaultPoolSize
	}
	if opts.TLS || opts.TLSConfig != nil {
		var cfg *tls.Config
		if opts.TLSConfig != nil {
			cfg = opts.TLSConfig.Clone()
		} else {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if cfg.ServerName == "" {
			host, _, err := net.SplitHostPort(c.addr)
			if err != nil {
				host = c.addr
			}
			cfg.ServerName = host
		}
		c.tlsConfig = cfg
	}
	c.slots = make(chan struct{}, size)
	c.done = make(chan struct{})
	c.scripts = make(map[string]string)
	return c
}

// Close closes the idle connections and makes every later call fail with
// ErrClosed. Connections busy in a call are closed when the call ends.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for i := 0; i < len(idle); i++ {
		idle[i].nc.Close()
	}
	return nil
}

// Do sends one command and returns its reply. An error reply from Redis is
// returned as an error wrapping ErrServer, together with the Reply.
func (c *Client) Do(ctx context.Context, args ...string) (Reply, error) {
	return c.call(ctx, c.deadline(ctx), args)
}

// deadline is the earlier of now+Timeout and ctx's deadline.
func (c *Client) deadline(ctx context.Context) time.Time {
	d := time.Now().Add(c.timeout)
	if ctx != nil {
		ctxDeadline, ok := ctx.Deadline()
		if ok && ctxDeadline.Before(d) {
			d = ctxDeadline
		}
	}
	return d
}

// call runs one command on a pooled connection, all by deadline.
func (c *Client) call(ctx context.Context, deadline time.Time, args []string) (Reply, error) {
	var none Reply
	if ctx == nil {
		ctx = context.Background()
	}
	if len(args) == 0 {
		return none, errors.New("redisclient: empty command")
	}
	err := c.acquire(ctx, deadline)
	if err != nil {
		return none, err
	}
	defer c.release()

	cn := c.takeIdle()
	reused := cn != nil
	if !reused {
		cn, err = c.dial(ctx, deadline)
		if err != nil {
			return none, err
		}
	}
	rep, err := c.roundTrip(ctx, cn, deadline, args)
	if err != nil && reused && errors.Is(err, errNoReply) {
		// The pooled connection was dead before the command reached a
		// server (Redis restarted, or closed it for idleness). Its pool
		// mates are likely dead too; retry once on a new connection.
		cn.nc.Close()
		c.dropIdle()
		cn, err = c.dial(ctx, deadline)
		if err != nil {
			return none, err
		}
		rep, err = c.roundTrip(ctx, cn, deadline, args)
	}
	if err != nil {
		cn.nc.Close()
		return none, err
	}
	c.putIdle(cn)
	if rep.Kind == KindError {
		return rep, c.serverError(args[0], rep.Str)
	}
	return rep, nil
}

// acquire takes a pool slot, waiting until deadline, ctx or Close.
func (c *Client) acquire(ctx context.Context, deadline time.Time) error {
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	err := ctx.Err()
	if err != nil {
		return c.contextError(ctx, "before sending to")
	}
	select {
	case c.slots <- struct{}{}:
		return nil
	default:
	}
	wait := time.Until(deadline)
	if wait <= 0 {
		return c.timeoutError(ctx, deadline, "waiting for a free connection to", "all "+strconv.Itoa(cap(c.slots))+" connections busy; raise PoolSize or Timeout")
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case c.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return c.contextError(ctx, "waiting for a free connection to")
	case <-timer.C:
		return c.timeoutError(ctx, deadline, "waiting for a free connection to", "all "+strconv.Itoa(cap(c.slots))+" connections busy; raise PoolSize or Timeout")
	case <-c.done:
		return ErrClosed
	}
}

func (c *Client) release() {
	<-c.slots
}

func (c *Client) takeIdle() *conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.idle)
	if n == 0 {
		return nil
	}
	cn := c.idle[n-1]
	c.idle[n-1] = nil
	c.idle = c.idle[:n-1]
	return cn
}

func (c *Client) putIdle(cn *conn) {
	c.mu.Lock()
	if c.closed || cn.broken {
		c.mu.Unlock()
		cn.nc.Close()
		return
	}
	c.idle = append(c.idle, cn)
	c.mu.Unlock()
}

func (c *Client) dropIdle() {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for i := 0; i < len(idle); i++ {
		idle[i].nc.Close()
	}
}

// dial opens a connection and runs TLS, AUTH and SELECT on it.
func (c *Client) dial(ctx context.Context, deadline time.Time) (*conn, error) {
	dialCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	dialer := &net.Dialer{}
	nc, err := dialer.DialContext(dialCtx, "tcp", c.addr)
	if err != nil {
		return nil, c.ioError(ctx, deadline, "connecting to", err)
	}
	if c.tlsConfig != nil {
		tc := tls.Client(nc, c.tlsConfig)
		nc.SetDeadline(deadline)
		err = tc.HandshakeContext(dialCtx)
		if err != nil {
			nc.Close()
			return nil, c.ioError(ctx, deadline, "TLS handshake with", err)
		}
		nc = tc
	}
	cn := &conn{}
	cn.nc = nc
	cn.br = bufio.NewReaderSize(nc, 16<<10)
	cn.bw = bufio.NewWriterSize(nc, 4<<10)

	if c.password != "" {
		args := []string{"AUTH", c.password}
		if c.username != "" {
			args = []string{"AUTH", c.username, c.password}
		}
		rep, err := c.roundTrip(ctx, cn, deadline, args)
		if err == nil && rep.Kind != KindStatus {
			err = fmt.Errorf("%w: AUTH at %s failed (check Options.Username and Options.Password): %s", ErrServer, c.addr, c.scrub(rep.Str))
		}
		if err != nil {
			nc.Close()
			return nil, err
		}
	}
	if c.db != 0 {
		rep, err := c.roundTrip(ctx, cn, deadline, []string{"SELECT", strconv.Itoa(c.db)})
		if err == nil && rep.Kind != KindStatus {
			err = fmt.Errorf("%w: SELECT %d at %s failed (check Options.DB): %s", ErrServer, c.db, c.addr, c.scrub(rep.Str))
		}
		if err != nil {
			nc.Close()
			return nil, err
		}
	}
	return cn, nil
}

// roundTrip writes one command and reads its reply, by deadline. A KindError
// reply is not an error here: the connection stays usable. Any error means
// the connection must be closed.
func (c *Client) roundTrip(ctx context.Context, cn *conn, deadline time.Time, args []string) (Reply, error) {
	var none Reply
	err := cn.nc.SetDeadline(deadline)
	if err != nil {
		return none, c.ioError(ctx, deadline, "setting a deadline on the connection to", err)
	}
	// Cancelling ctx interrupts the I/O by moving the deadline to the past.
	nc := cn.nc
	stop := context.AfterFunc(ctx, func() {
		nc.SetDeadline(time.Unix(1, 0))
	})
	rep, err := c.exchange(ctx, cn, deadline, args)
	if !stop() {
		// The deadline was moved (or is being moved): do not reuse.
		cn.broken = true
	}
	return rep, err
}

func (c *Client) exchange(ctx context.Context, cn *conn, deadline time.Time, args []string) (Reply, error) {
	var none Reply
	err := writeCommand(cn.bw, args)
	if err != nil {
		if isTimeout(err, deadline) || ctx.Err() != nil {
			return none, c.ioError(ctx, deadline, "sending to", err)
		}
		return none, fmt.Errorf("redisclient: sending to %s: %w: %w", c.addr, errNoReply, err)
	}
	_, err = cn.br.Peek(1)
	if err != nil {
		if isTimeout(err, deadline) || ctx.Err() != nil {
			return none, c.ioError(ctx, deadline, "reading from", err)
		}
		return none, fmt.Errorf("redisclient: reading from %s: %w: %w", c.addr, errNoReply, err)
	}
	rep, err := readReply(cn.br)
	if err != nil {
		if errors.Is(err, ErrProtocol) {
			return none, fmt.Errorf("%w (from %s)", err, c.addr)
		}
		return none, c.ioError(ctx, deadline, "reading from", err)
	}
	if cn.br.Buffered() > 0 {
		// Bytes nobody asked for: the stream is out of step.
		cn.broken = true
	}
	return rep, nil
}

// isTimeout reports whether err comes from a passed deadline.
func isTimeout(err error, deadline time.Time) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	return !time.Now().Before(deadline)
}

// ioError describes a failed network operation; what is e.g. "reading from".
func (c *Client) ioError(ctx context.Context, deadline time.Time, what string, err error) error {
	if ctx.Err() != nil {
		return c.contextError(ctx, what)
	}
	if isTimeout(err, deadline) {
		return c.timeoutError(ctx, deadline, what, "Options.Timeout "+c.timeout.String())
	}
	return fmt.Errorf("redisclient: %s %s: %w", what, c.addr, err)
}

// timeoutError reports a passed deadline; when it was ctx's deadline, the
// error also wraps context.DeadlineExceeded.
func (c *Client) timeoutError(ctx context.Context, deadline time.Time, what string, hint string) error {
	ctxDeadline, ok := ctx.Deadline()
	if ok && !ctxDeadline.After(deadline) {
		return fmt.Errorf("%w %s %s (%s): %w", ErrTimeout, what, c.addr, hint, context.DeadlineExceeded)
	}
	return fmt.Errorf("%w %s %s (%s)", ErrTimeout, what, c.addr, hint)
}

// contextError reports ctx's end; a passed ctx deadline is also ErrTimeout.
func (c *Client) contextError(ctx context.Context, what string) error {
	ctxErr := ctx.Err()
	if ctxErr == context.DeadlineExceeded {
		return fmt.Errorf("%w %s %s: %w", ErrTimeout, what, c.addr, ctxErr)
	}
	return fmt.Errorf("redisclient: %s %s: %w", what, c.addr, ctxErr)
}

// serverError turns an error reply into an error wrapping ErrServer.
func (c *Client) serverError(command string, msg string) error {
	return fmt.Errorf("%w: %s: %s", ErrServer, strings.ToUpper(command), c.scrub(msg))
}

// scrub removes the password from text that came from the server.
func (c *Client) scrub(text string) string {
	if c.password == "" {
		return text
	}
	return strings.ReplaceAll(text, c.password, "[password]")
}
