// Package redistest starts real redis-server processes for tests, in the
// spirit of net/http/httptest: Start gives a test its own server on a free
// loopback port (killed when the test ends), and Shared gives every test of
// a process one common server, or the one named by FACEIDSIGNER_REDIS_ADDR.
//
// Tests fail, never skip, when redis-server is not installed: Redis support
// is part of what they prove. The servers keep nothing on disk (no RDB, no
// AOF) unless the test asks for it with extra arguments.
//
// A package whose tests use Shared should stop the shared server from its
// TestMain:
//
//	func TestMain(m *testing.M) { redistest.Main(m) }
//
// Without that, the server lives until the test binary exits and is then
// killed by the kernel (Linux: the parent-death signal), leaving an empty
// temporary directory; on other systems it outlives the tests. Tests using Shared must tolerate each other's keys:
// give keys a prefix unique to the test.
//
// This package runs processes with os/exec, so the plugin must never import
// it; only tests do.
package redistest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// AddrEnv names the environment variable that points Shared at a running
// Redis (host:port) instead of starting one; CI sets it.
const AddrEnv = "FACEIDSIGNER_REDIS_ADDR"

// installHint ends every "redis-server not found" failure.
const installHint = "install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or set " + AddrEnv + "=host:port for tests that use a shared Redis"

// startTimeout bounds how long a server may take to answer its first PING.
const startTimeout = 10 * time.Second

// Errors of Do, for errors.Is.
var (
	// ErrNil: Redis replied with a null (e.g. GET of a missing key).
	ErrNil = errors.New("redistest: nil reply")
	// ErrReply: Redis replied with an error; its message follows in the text.
	ErrReply = errors.New("redistest: redis replied with an error")
)

// Server is a redis-server process owned by one test.
type Server struct {
	t        testing.TB
	bin      string
	dir      string
	port     int
	args     []string // extra arguments given to Start
	tls      bool     // port is a TLS port; plain TCP is off
	password string   // from --requirepass, used by Do

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	output *syncBuffer
}

// Start runs a redis-server of the test's own on a free 127.0.0.1 port,
// with its working directory in t.TempDir(), and returns once it answers.
// args are extra redis-server arguments, e.g. "--requirepass", "secret".
// The server is killed when the test ends; its output is logged then if the
// test failed.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return start(t, false, args)
}

// StartTLS is Start for a server that speaks TLS only, with the given PEM
// certificate and key (the certificate is also its CA file, so a
// self-signed certificate works). Clients are not asked for certificates
// unless args say otherwise.
func StartTLS(t testing.TB, certFile string, keyFile string, args ...string) *Server {
	t.Helper()
	tlsArgs := []string{"--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-ca-cert-file", certFile, "--tls-auth-clients", "no"}
	return start(t, true, append(tlsArgs, args...))
}

func start(t testing.TB, useTLS bool, args []string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server is required by this test and is not in PATH: %s (%v)", installHint, err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), args: args, tls: useTLS}
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--requirepass" {
			s.password = args[i+1]
		}
	}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("redistest: output of redis-server on %s:\n%s", s.Addr(), s.Output())
		}
	})
	// The free port may be taken by someone else before redis-server binds
	// it; try a few ports.
	for attempt := 1; ; attempt++ {
		s.port, err = freePort()
		if err == nil {
			err = s.launch()
		}
		if err == nil {
			return s
		}
		if attempt == 3 || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("redistest: %v", err)
		}
	}
}

// Addr returns the server's host:port.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Output returns what the current (or last) redis-server process printed.
func (s *Server) Output() string {
	s.mu.Lock()
	out := s.output
	s.mu.Unlock()
	return out.String()
}

// Kill stops the server with SIGKILL, as a crash would, and waits for it to
// exit. It does nothing if the server is not running.
func (s *Server) Kill() {
	s.stop(false)
}

// Stop shuts the server down with SIGTERM (SIGKILL after 5s) and waits for
// it to exit. It does nothing if the server is not running.
func (s *Server) Stop() {
	s.stop(true)
}

// Restart stops the server if it runs, starts it again on the same port
// with the same arguments, and returns once it answers. The data is gone
// unless the arguments configure persistence. It fails the test on error,
// so call it from the test's goroutine.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	if err := s.launch(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// Do sends one command on a new connection (with AUTH when the server was
// started with --requirepass) and returns the reply as text: a status or
// bulk string as is, an integer in decimal, an array as its elements joined
// by "\n". A null reply returns ErrNil; a Redis error reply returns ErrReply
// with the message. It is independent of package redisclient, so tests can
// use it to check what redisclient wrote.
func (s *Server) Do(args ...string) (string, error) {
	conn, err := s.dial()
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	if s.password != "" {
		if _, err := roundTrip(conn, r, []string{"AUTH", s.password}); err != nil {
			return "", fmt.Errorf("AUTH: %v", err)
		}
	}
	return roundTrip(conn, r, args)
}

// Do sends one command to the Redis at addr (plain TCP, no AUTH) on a new
// connection and returns the reply as Server.Do does. Use it with Shared.
func Do(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	return roundTrip(conn, bufio.NewReader(conn), args)
}

func (s *Server) dial() (net.Conn, error) {
	if s.tls {
		// Only this helper's own inspection connection skips verification;
		// the code under test is expected to verify.
		d := &net.Dialer{Timeout: 5 * time.Second}
		return tls.DialWithDialer(d, "tcp", s.Addr(), &tls.Config{InsecureSkipVerify: true})
	}
	return net.DialTimeout("tcp", s.Addr(), 5*time.Second)
}

// launch starts the process on s.port and waits until it answers a PING
// (any reply counts, NOAUTH included).
func (s *Server) launch() error {
	port := strconv.Itoa(s.port)
	args := []string{"--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
		"--dir", s.dir, "--logfile", "", "--daemonize", "no"}
	if s.tls {
		args = append(args, "--port", "0", "--tls-port", port)
	} else {
		args = append(args, "--port", port)
	}
	args = append(args, s.args...)
	out := &syncBuffer{}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout = out
	cmd.Stderr = out
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %v", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd = cmd
	s.exited = exited
	s.output = out
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("redis-server %s exited at start: %s", strings.Join(args, " "), out.String())
		default:
		}
		if s.answers() {
			return nil
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redis-server did not answer PING on %s within %s: %s", s.Addr(), startTimeout, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// answers reports whether the server replies to PING.
func (s *Server) answers() bool {
	conn, err := s.dial()
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	_, err = roundTrip(conn, bufio.NewReader(conn), []string{"PING"})
	return err == nil || errors.Is(err, ErrReply)
}

func (s *Server) stop(graceful bool) {
	s.mu.Lock()
	cmd := s.cmd
	exited := s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	if graceful {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
			return
		case <-time.After(5 * time.Second):
		}
	}
	cmd.Process.Kill()
	<-exited
}

var shared struct {
	mu     sync.Mutex
	addr   string
	err    error
	server *Server
	dir    string
}

// Shared returns the address of the Redis shared by all tests of the
// process: FACEIDSIGNER_REDIS_ADDR when set, else a redis-server started on
// first use (see Main for how it is stopped). It fails the test when that
// Redis does not answer PING.
func Shared(t testing.TB) string {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.addr == "" && shared.err == nil {
		shared.addr, shared.err = startShared()
	}
	if shared.err != nil {
		t.Fatalf("redistest: no shared Redis: %v", shared.err)
	}
	return shared.addr
}

func startShared() (string, error) {
	if addr := os.Getenv(AddrEnv); addr != "" {
		if _, err := Do(addr, "PING"); err != nil {
			return "", fmt.Errorf("%s=%s does not answer PING: %v", AddrEnv, addr, err)
		}
		return addr, nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server is not in PATH: %s (%v)", installHint, err)
	}
	dir, err := os.MkdirTemp("", "redistest-shared-")
	if err != nil {
		return "", err
	}
	s := &Server{bin: bin, dir: dir}
	for attempt := 1; ; attempt++ {
		s.port, err = freePort()
		if err == nil {
			err = s.launch()
		}
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(err.Error(), "in use") {
			os.RemoveAll(dir)
			return "", err
		}
	}
	shared.server = s
	shared.dir = dir
	return s.Addr(), nil
}

// Main runs the tests, then stops the shared server if one was started,
// and exits with the tests' status. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	shared.mu.Lock()
	if shared.server != nil {
		shared.server.Kill()
		os.RemoveAll(shared.dir)
	}
	shared.mu.Unlock()
	os.Exit(code)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// roundTrip writes one command and reads its reply as text.
func roundTrip(w io.Writer, r *bufio.Reader, args []string) (string, error) {
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return "", err
	}
	return readReply(r)
}

// readReply reads one RESP2 reply.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("redistest: empty reply line")
	}
	body := line[1:]
	switch line[0] {
	case '+', ':':
		return body, nil
	case '-':
		return "", fmt.Errorf("%w: %s", ErrReply, body)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return "", fmt.Errorf("redistest: bad bulk length %q", body)
		}
		if n < 0 {
			return "", ErrNil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return "", fmt.Errorf("redistest: bad array length %q", body)
		}
		if n < 0 {
			return "", ErrNil
		}
		elems := make([]string, 0, n)
		for i := 0; i < n; i++ {
			e, err := readReply(r)
			if err != nil && !errors.Is(err, ErrNil) {
				return "", err
			}
			elems = append(elems, e)
		}
		return strings.Join(elems, "\n"), nil
	}
	return "", fmt.Errorf("redistest: unexpected reply %q", line)
}

// syncBuffer collects a process's output; safe to read while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	if b == nil {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
