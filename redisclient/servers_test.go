package redisclient

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// redisAddrEnv names a running Redis that the tests use instead of starting
// their own (CI). Tests that need a server with special settings (AUTH, TLS,
// restarts) still start their own redis-server.
const redisAddrEnv = "FACEIDSIGNER_REDIS_ADDR"

var shared struct {
	once   sync.Once
	addr   string
	server *redisServer
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.server != nil {
		shared.server.kill()
		os.RemoveAll(shared.server.dir)
	}
	os.Exit(code)
}

// sharedRedis returns the address of the Redis shared by the tests.
func sharedRedis(t *testing.T) string {
	t.Helper()
	shared.once.Do(func() {
		if addr := os.Getenv(redisAddrEnv); addr != "" {
			shared.addr = addr
			return
		}
		bin, err := exec.LookPath("redis-server")
		if err != nil {
			shared.err = err
			return
		}
		dir, err := os.MkdirTemp("", "redisclient-shared-")
		if err != nil {
			shared.err = err
			return
		}
		s := &redisServer{bin: bin, dir: dir, port: freePort(t)}
		if err := s.start(); err != nil {
			shared.err = err
			return
		}
		shared.server = s
		shared.addr = s.addr()
	})
	if shared.err != nil {
		t.Fatalf("cannot start the shared redis-server: %v (install redis-server, e.g. `apt-get install redis-server`, or set %s=host:port)", shared.err, redisAddrEnv)
	}
	return shared.addr
}

// redisServer is a redis-server process owned by a test.
type redisServer struct {
	bin    string
	dir    string
	port   int
	tls    bool // port is the TLS port
	args   []string
	cmd    *exec.Cmd
	output *bytes.Buffer
	exited chan struct{}
}

// startRedisServer starts a private redis-server with extra arguments on a
// free loopback port and stops it when the test ends. A lone "--tls-port"
// among extra makes that port the TLS port (and turns plain TCP off).
func startRedisServer(t *testing.T, extra ...string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is required by this test and was not found in PATH: install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis): %v", err)
	}
	s := &redisServer{bin: bin, dir: t.TempDir(), port: freePort(t), args: extra}
	for _, a := range extra {
		if a == "--tls-port" {
			s.tls = true
		}
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.kill)
	return s
}

func (s *redisServer) addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

func (s *redisServer) start() error {
	port := strconv.Itoa(s.port)
	args := []string{"--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--dir", s.dir, "--logfile", ""}
	if s.tls {
		args = append(args, "--port", "0")
		for i := 0; i < len(s.args); i++ {
			a := s.args[i]
			if a == "--tls-port" {
				args = append(args, "--tls-port", port)
				continue
			}
			args = append(args, a)
		}
	} else {
		args = append(args, "--port", port)
		args = append(args, s.args...)
	}
	s.output = &bytes.Buffer{}
	s.cmd = exec.Command(s.bin, args...)
	s.cmd.Stdout = s.output
	s.cmd.Stderr = s.output
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %v", err)
	}
	s.exited = make(chan struct{})
	cmd, exited := s.cmd, s.exited
	go func() {
		cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redis-server %v exited at start: %s", args, s.output.String())
		default:
		}
		c, err := net.DialTimeout("tcp", s.addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.kill()
	return fmt.Errorf("redis-server did not listen on %s within 10s: %s", s.addr(), s.output.String())
}

// kill stops the server with SIGKILL, as a crash would.
func (s *redisServer) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// uniqueKey returns a key no other test (or test run) uses.
func uniqueKey(t *testing.T, suffix string) string {
	var b [6]byte
	rand.Read(b[:])
	return "redisclient-test:" + t.Name() + ":" + hex.EncodeToString(b[:]) + ":" + suffix
}

// listen starts a TCP listener on loopback that runs handle for each
// connection and closes everything when the test ends.
func listen(t *testing.T, handle func(c net.Conn)) (addr string, accepted func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	count := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			count++
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), func() int {
		mu.Lock()
		defer mu.Unlock()
		return count
	}
}

// silentServer accepts connections and never answers.
func silentServer(t *testing.T) string {
	addr, _ := listen(t, func(c net.Conn) {
		io.Copy(io.Discard, c)
	})
	return addr
}

// countingProxy forwards loopback TCP to target and records how many
// connections were open at once and in total.
type countingProxy struct {
	mu        sync.Mutex
	active    int
	maxActive int
	total     int
}

func startCountingProxy(t *testing.T, target string) (string, *countingProxy) {
	p := &countingProxy{}
	addr, _ := listen(t, func(c net.Conn) {
		up, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			return
		}
		p.mu.Lock()
		p.active++
		p.total++
		if p.active > p.maxActive {
			p.maxActive = p.active
		}
		p.mu.Unlock()
		done := make(chan struct{}, 2)
		go func() { io.Copy(up, c); up.Close(); done <- struct{}{} }()
		go func() { io.Copy(c, up); c.Close(); done <- struct{}{} }()
		<-done
		<-done
		p.mu.Lock()
		p.active--
		p.mu.Unlock()
	})
	return addr, p
}

func (p *countingProxy) counts() (maxActive, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxActive, p.total
}

// readCommand reads one command sent by the client.
func readCommand(r *bufio.Reader) ([]string, error) {
	rep, err := readReply(r)
	if err != nil {
		return nil, err
	}
	var args []string
	for _, a := range rep.Array {
		args = append(args, a.Str)
	}
	return args, nil
}

// testCert makes a self-signed certificate (its own CA) for names and IPs,
// returned as a tls.Certificate, a pool trusting it, and PEM files in dir.
func testCert(t *testing.T, dir string, dnsNames []string, ips []net.IP) (tls.Certificate, *x509.CertPool, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "redisclient test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	certFile := filepath.Join(dir, "cert.pem")
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, certFile, keyFile
}
