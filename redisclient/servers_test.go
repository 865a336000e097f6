package redisclient

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kycgate/faceidsigner/redisclient/redistest"
)

// TestMain stops the redis-server that redistest.Shared may start.
func TestMain(m *testing.M) { redistest.Main(m) }

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
