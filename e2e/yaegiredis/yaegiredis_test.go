package yaegiredis

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"

	"github.com/kycgate/faceidsigner/redisclient/redistest"
)

const (
	modulePath = "github.com/kycgate/faceidsigner"
	probePath  = modulePath + "/e2e/yaegiredis/testdata/redisprobe"
	// value must equal redisprobe.Value.
	value = "v\r\n\x00ü end"
)

// The checks redisprobe.Run must report, all "ok"; a check that silently
// disappeared from the probe fails the test too.
var wantChecks = []string{
	"ping", "get what native code set", "get missing", "set with ttl", "get what was set",
	"server error is ErrServer", "setnx free key", "setnx taken key", "setnx kept the holder",
	"delete-if-equal by another holder", "pexpire-if-equal by the holder",
	"eval after script flush (NOSCRIPT fallback)", "eval with the cached script",
	"fallback loaded the script", "one EVAL, then EVALSHA",
	"delete-if-equal by the holder after script flush", "lease is gone",
	"select", "select out of range",
	"auth with the password", "auth missing", "auth wrong password",
	"timeout against a silent listener", "context cancel against a silent listener",
	"context deadline against a silent listener",
	"tls ca parses", "tls", "tls verifies the certificate",
	"pool under 20 goroutines", "pool opened at most 3 connections",
	"first call after a restart", "eval after a restart (script cache empty)", "pool after a restart",
	"calls fail fast while redis is down", "ping after redis came back",
	"set for native code", "closed client",
}

func TestRedisClientUnderYaegi(t *testing.T) {
	if raceEnabled {
		t.Skip("drives yaegi-interpreted code: run without -race")
	}
	s := redistest.Start(t)
	const password = "pw-yaegiredis"
	authServer := redistest.Start(t, "--requirepass", password)
	dir := t.TempDir()
	caPEM, certFile, keyFile := writeCert(t, dir)
	tlsServer := redistest.StartTLS(t, certFile, keyFile)
	prefix := "yaegiredis:" + t.Name() + ":"
	if _, err := s.Do("SET", prefix+"native", value); err != nil {
		t.Fatal(err)
	}

	run := loadProbe(t)
	lines := run(map[string]string{
		"addr":     s.Addr(),
		"authAddr": authServer.Addr(),
		"password": password,
		"silent":   silentListener(t),
		"tlsAddr":  tlsServer.Addr(),
		"caPEM":    caPEM,
		"prefix":   prefix,
	}, s.Restart, s.Kill)

	seen := map[string]bool{}
	for _, line := range lines {
		if name, ok := strings.CutPrefix(line, "ok "); ok {
			seen[name] = true
			t.Log(line)
			continue
		}
		t.Error(line)
	}
	for _, name := range wantChecks {
		if !seen[name] {
			t.Errorf("check %q did not report ok", name)
		}
	}
	if len(lines) == 0 {
		t.Fatal("the interpreted probe reported nothing")
	}
	// What the interpreted client wrote, read by an independent client.
	if v, err := s.Do("GET", prefix+"written"); err != nil || v != value {
		t.Errorf("key written under yaegi = %q, %v; want %q", v, err, value)
	}
}

// loadProbe builds an interpreter the way Traefik does
// (pkg/plugins/middlewareyaegi.go: GoPath, Env, stdlib.Symbols, then
// `import "<plugin>"`), with a GOPATH whose src/github.com/kycgate/faceidsigner
// is this repository, and returns redisprobe.Run.
func loadProbe(t *testing.T) func(map[string]string, func(), func()) []string {
	t.Helper()
	goPath := t.TempDir()
	link := filepath.Join(goPath, "src", filepath.FromSlash(modulePath))
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(repoRoot(t), link); err != nil {
		t.Fatal(err)
	}
	i := interp.New(interp.Options{GoPath: goPath, Env: os.Environ()})
	if err := i.Use(stdlib.Symbols); err != nil {
		t.Fatal(err)
	}
	if _, err := i.Eval(`import "` + probePath + `"`); err != nil {
		t.Fatalf("yaegi cannot load %s (and so redisclient): %v", probePath, err)
	}
	v, err := i.Eval("redisprobe.Run")
	if err != nil {
		t.Fatal(err)
	}
	run, ok := v.Interface().(func(map[string]string, func(), func()) []string)
	if !ok {
		t.Fatalf("redisprobe.Run has type %s", v.Type())
	}
	return run
}

// repoRoot returns the repository root: two levels above this file, checked
// by its go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test file")
	}
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.Contains(string(mod), "module "+modulePath+"\n") {
		t.Fatalf("%s is not the root of %s: %v", root, modulePath, err)
	}
	return root
}

// silentListener accepts connections and never answers.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
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
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(io.Discard, c)
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
	return ln.Addr().String()
}

// writeCert makes a self-signed CA certificate for 127.0.0.1 and writes it
// and its key as PEM files in dir.
func writeCert(t *testing.T, dir string) (caPEM string, certFile string, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "yaegiredis test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return string(certPEM), certFile, keyFile
}
