package redisclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycgate/faceidsigner/redisclient/redistest"
)

func newClient(t *testing.T, opts Options) *Client {
	t.Helper()
	c := New(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestGetSetDel(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, Options{Address: redistest.Shared(t)})
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	k1, k2 := uniqueKey(t, "1"), uniqueKey(t, "2")

	if v, found, err := c.Get(ctx, k1); err != nil || found || v != "" {
		t.Fatalf("Get(missing) = %q, %v, %v; want not found", v, found, err)
	}
	value := "token\r\n\x00with binary and CRLF"
	if err := c.Set(ctx, k1, value, 0); err != nil {
		t.Fatal(err)
	}
	if v, found, err := c.Get(ctx, k1); err != nil || !found || v != value {
		t.Fatalf("Get = %q, %v, %v; want %q", v, found, err, value)
	}
	if err := c.Set(ctx, k1, "", 0); err != nil {
		t.Fatal(err)
	}
	if v, found, err := c.Get(ctx, k1); err != nil || !found || v != "" {
		t.Fatalf("Get(empty value) = %q, %v, %v; want empty and found", v, found, err)
	}
	big := strings.Repeat("x", 2<<20)
	if err := c.Set(ctx, k2, big, time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, found, err := c.Get(ctx, k2); err != nil || !found || v != big {
		t.Fatalf("Get(2 MB) = %d bytes, %v, %v", len(v), found, err)
	}
	if n, err := c.Del(ctx, k1, k2, uniqueKey(t, "never-set")); err != nil || n != 2 {
		t.Fatalf("Del = %d, %v; want 2", n, err)
	}
	if n, err := c.Del(ctx); err != nil || n != 0 {
		t.Fatalf("Del() = %d, %v; want 0, nil", n, err)
	}
	// A well-formed reply of the wrong type is ErrProtocol; an error reply
	// is ErrServer with Redis's message; both leave the connection usable.
	if _, err := c.Do(ctx, "HSET", k1, "f", "v"); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.Get(ctx, k1)
	if !errors.Is(err, ErrServer) || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("GET on a hash: %v; want ErrServer with WRONGTYPE", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = c.Do(ctx)
	if err == nil {
		t.Fatal("Do() with no command succeeded")
	}
	if err := c.Set(ctx, k1, "v", -time.Second); err == nil {
		t.Fatal("Set with a negative ttl succeeded")
	}
	c.Del(ctx, k1)
}

func TestSetTTLExpiry(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, Options{Address: redistest.Shared(t)})
	k := uniqueKey(t, "k")
	if err := c.Set(ctx, k, "v", 150*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	rep, err := c.Do(ctx, "PTTL", k)
	if err != nil || rep.Int <= 0 || rep.Int > 150 {
		t.Fatalf("PTTL after Set(150ms) = %#v, %v", rep, err)
	}
	waitGone(t, c, k, 2*time.Second)

	// No ttl: no expiry.
	if err := c.Set(ctx, k, "v", 0); err != nil {
		t.Fatal(err)
	}
	if rep, err := c.Do(ctx, "PTTL", k); err != nil || rep.Int != -1 {
		t.Fatalf("PTTL after Set(0) = %#v, %v; want -1", rep, err)
	}
	// A ttl below a millisecond is rounded up, not sent as PX 0 (an error).
	if err := c.Set(ctx, k, "v", time.Microsecond); err != nil {
		t.Fatalf("Set(1µs): %v", err)
	}
	waitGone(t, c, k, time.Second)
}

func waitGone(t *testing.T, c *Client, key string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_, found, err := c.Get(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if !found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still present after %s", key, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSetNX(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, Options{Address: redistest.Shared(t), PoolSize: 8})
	k := uniqueKey(t, "lease")

	// Many replicas race for one lease: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []string
	for i := 0; i < 20; i++ {
		holder := "replica-" + strconv.Itoa(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := c.SetNX(ctx, k, holder, 200*time.Millisecond)
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				mu.Lock()
				winners = append(winners, holder)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("SetNX winners = %v; want exactly one", winners)
	}
	if v, _, err := c.Get(ctx, k); err != nil || v != winners[0] {
		t.Fatalf("lease holds %q, %v; want %q", v, err, winners[0])
	}
	if ok, err := c.SetNX(ctx, k, "late", time.Second); err != nil || ok {
		t.Fatalf("SetNX on a held lease = %v, %v; want false", ok, err)
	}
	waitGone(t, c, k, 2*time.Second)
	if ok, err := c.SetNX(ctx, k, "next", 0); err != nil || !ok {
		t.Fatalf("SetNX after expiry = %v, %v; want true", ok, err)
	}
	if rep, err := c.Do(ctx, "PTTL", k); err != nil || rep.Int != -1 {
		t.Fatalf("PTTL after SetNX(ttl 0) = %#v, %v; want -1", rep, err)
	}
	c.Del(ctx, k)
}

// commandCalls reads how often Redis ran command, from INFO commandstats.
func commandCalls(t *testing.T, c *Client, command string) int {
	t.Helper()
	rep, err := c.Do(context.Background(), "INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^cmdstat_` + command + `:calls=(\d+)`).FindStringSubmatch(rep.Str)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestEvalUsesEvalshaAndFallsBackOnNoscript(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, Options{Address: redistest.Shared(t)})
	k := uniqueKey(t, "k")
	script := `redis.call("SET", KEYS[1], ARGV[1]) return {1, ARGV[1], {KEYS[1]}, false} -- ` + k

	evalBefore := commandCalls(t, c, "eval")
	rep, err := c.Eval(ctx, script, []string{k}, []string{"v1"})
	if err != nil {
		t.Fatal(err)
	}
	want := Reply{Kind: KindArray, Array: []Reply{
		{Kind: KindInt, Int: 1}, {Kind: KindBulk, Str: "v1"},
		{Kind: KindArray, Array: []Reply{{Kind: KindBulk, Str: k}}}, {Kind: KindBulk, Nil: true},
	}}
	if fmt.Sprint(rep) != fmt.Sprint(want) {
		t.Fatalf("Eval = %#v, want %#v", rep, want)
	}
	if n := commandCalls(t, c, "eval") - evalBefore; n != 1 {
		t.Fatalf("first Eval of a new script ran EVAL %d times; want 1 (after NOSCRIPT)", n)
	}

	// Now loaded: EVALSHA alone.
	evalBefore = commandCalls(t, c, "eval")
	shaBefore := commandCalls(t, c, "evalsha")
	if _, err := c.Eval(ctx, script, []string{k}, []string{"v2"}); err != nil {
		t.Fatal(err)
	}
	if e, s := commandCalls(t, c, "eval")-evalBefore, commandCalls(t, c, "evalsha")-shaBefore; e != 0 || s != 1 {
		t.Fatalf("Eval of a loaded script ran EVAL %d and EVALSHA %d times; want 0 and 1", e, s)
	}

	// SCRIPT FLUSH (or a Redis restart) forgets it: EVAL again, transparently.
	if _, err := c.Do(ctx, "SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	evalBefore = commandCalls(t, c, "eval")
	if _, err := c.Eval(ctx, script, []string{k}, []string{"v3"}); err != nil {
		t.Fatal(err)
	}
	if n := commandCalls(t, c, "eval") - evalBefore; n != 1 {
		t.Fatalf("Eval after SCRIPT FLUSH ran EVAL %d times; want 1", n)
	}
	if v, _, _ := c.Get(ctx, k); v != "v3" {
		t.Fatalf("script wrote %q; want v3", v)
	}

	// Script errors come back as ErrServer.
	_, err = c.Eval(ctx, `return redis.error_reply("LEASE broken")`, nil, nil)
	if !errors.Is(err, ErrServer) || !strings.Contains(err.Error(), "LEASE broken") {
		t.Fatalf("script error: %v", err)
	}
	c.Del(ctx, k)
}

func TestDeleteIfEqualAndPExpireIfEqual(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, Options{Address: redistest.Shared(t)})
	k := uniqueKey(t, "lease")
	if ok, err := c.SetNX(ctx, k, "holder-A", 10*time.Second); err != nil || !ok {
		t.Fatalf("SetNX = %v, %v", ok, err)
	}

	// Not the holder: nothing happens.
	if ok, err := c.PExpireIfEqual(ctx, k, "holder-B", time.Hour); err != nil || ok {
		t.Fatalf("PExpireIfEqual by non-holder = %v, %v; want false", ok, err)
	}
	if ok, err := c.DeleteIfEqual(ctx, k, "holder-B"); err != nil || ok {
		t.Fatalf("DeleteIfEqual by non-holder = %v, %v; want false", ok, err)
	}
	if v, found, _ := c.Get(ctx, k); !found || v != "holder-A" {
		t.Fatalf("after non-holder calls the lease holds %q, %v", v, found)
	}
	if rep, _ := c.Do(ctx, "PTTL", k); rep.Int > 10000 {
		t.Fatalf("non-holder extended the lease: PTTL %d", rep.Int)
	}

	// The holder extends and releases.
	if ok, err := c.PExpireIfEqual(ctx, k, "holder-A", time.Minute); err != nil || !ok {
		t.Fatalf("PExpireIfEqual by holder = %v, %v; want true", ok, err)
	}
	if rep, _ := c.Do(ctx, "PTTL", k); rep.Int <= 10000 || rep.Int > 60000 {
		t.Fatalf("PTTL after holder's extension = %d; want about 60000", rep.Int)
	}
	if ok, err := c.DeleteIfEqual(ctx, k, "holder-A"); err != nil || !ok {
		t.Fatalf("DeleteIfEqual by holder = %v, %v; want true", ok, err)
	}
	if _, found, _ := c.Get(ctx, k); found {
		t.Fatal("lease still present after its holder released it")
	}
	// Missing key: false, no error.
	if ok, err := c.DeleteIfEqual(ctx, k, "holder-A"); err != nil || ok {
		t.Fatalf("DeleteIfEqual on a missing key = %v, %v", ok, err)
	}
	if ok, err := c.PExpireIfEqual(ctx, k, "holder-A", time.Second); err != nil || ok {
		t.Fatalf("PExpireIfEqual on a missing key = %v, %v", ok, err)
	}
	if _, err := c.PExpireIfEqual(ctx, k, "holder-A", 0); err == nil {
		t.Fatal("PExpireIfEqual with ttl 0 succeeded")
	}
}

func TestAuth(t *testing.T) {
	ctx := context.Background()
	password := "pw-" + uniqueKey(t, "secret")[len("redisclient-test:"):]
	s := redistest.Start(t, "--requirepass", password)
	var errs []error
	check := func(err error) {
		t.Helper()
		if err != nil {
			errs = append(errs, err)
		}
	}

	anon := newClient(t, Options{Address: s.Addr()})
	err := anon.Ping(ctx)
	if !errors.Is(err, ErrServer) || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("Ping without password: %v; want ErrServer NOAUTH", err)
	}

	wrongPassword := password + "-wrong"
	wrong := newClient(t, Options{Address: s.Addr(), Password: wrongPassword})
	err = wrong.Ping(ctx)
	if !errors.Is(err, ErrServer) || !strings.Contains(err.Error(), "AUTH") {
		t.Fatalf("Ping with a wrong password: %v; want an AUTH error", err)
	}
	check(err)

	good := newClient(t, Options{Address: s.Addr(), Password: password})
	if err := good.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := good.Set(ctx, "k", "v", 0); err != nil {
		t.Fatal(err)
	}

	// ACL user: AUTH username password.
	userPassword := password + "-alice"
	if _, err := good.Do(ctx, "ACL", "SETUSER", "alice", "on", ">"+userPassword, "~*", "+@all"); err != nil {
		t.Fatal(err)
	}
	alice := newClient(t, Options{Address: s.Addr(), Username: "alice", Password: userPassword})
	if rep, err := alice.Do(ctx, "ACL", "WHOAMI"); err != nil || rep.Str != "alice" {
		t.Fatalf("ACL WHOAMI as alice = %#v, %v", rep, err)
	}
	aliceWrong := newClient(t, Options{Address: s.Addr(), Username: "alice", Password: password})
	err = aliceWrong.Ping(ctx)
	if !errors.Is(err, ErrServer) {
		t.Fatalf("alice with the wrong password: %v", err)
	}
	check(err)

	// Other failures with a password configured: refused, timed out, TLS.
	refused := newClient(t, Options{Address: "127.0.0.1:" + strconv.Itoa(freePort(t)), Password: password})
	err = refused.Ping(ctx)
	if err == nil {
		t.Fatal("Ping to a closed port succeeded")
	}
	check(err)
	silent := newClient(t, Options{Address: silentServer(t), Password: password, Timeout: 100 * time.Millisecond})
	err = silent.Ping(ctx)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Ping to a silent server: %v; want ErrTimeout", err)
	}
	check(err)
	plainAsTLS := newClient(t, Options{Address: s.Addr(), Password: password, TLS: true})
	check(plainAsTLS.Ping(ctx))

	if len(errs) != 5 {
		t.Fatalf("collected %d errors, want 5", len(errs))
	}
	for _, err := range errs {
		for _, secret := range []string{password, wrongPassword, userPassword} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error text contains a password: %v", err)
			}
		}
	}
}

func TestSelectIsolatesDatabases(t *testing.T) {
	ctx := context.Background()
	addr := redistest.Shared(t)
	k := uniqueKey(t, "k")
	db0 := newClient(t, Options{Address: addr})
	db5 := newClient(t, Options{Address: addr, DB: 5})
	db7 := newClient(t, Options{Address: addr, DB: 7})
	if err := db5.Set(ctx, k, "five", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := db7.Set(ctx, k, "seven", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, found, err := db0.Get(ctx, k); err != nil || found {
		t.Fatalf("db 0 sees the db 5 key: %v, %v", found, err)
	}
	if v, _, err := db5.Get(ctx, k); err != nil || v != "five" {
		t.Fatalf("db 5 = %q, %v", v, err)
	}
	if v, _, err := db7.Get(ctx, k); err != nil || v != "seven" {
		t.Fatalf("db 7 = %q, %v", v, err)
	}
	db5.Del(ctx, k)
	db7.Del(ctx, k)

	bad := newClient(t, Options{Address: addr, DB: 100000})
	err := bad.Ping(ctx)
	if !errors.Is(err, ErrServer) || !strings.Contains(err.Error(), "SELECT 100000") {
		t.Fatalf("DB 100000: %v; want a SELECT error", err)
	}
}

func TestTLSWithRedisServer(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, pool, certFile, keyFile := testCert(t, dir, []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")})
	s := redistest.StartTLS(t, certFile, keyFile)

	c := newClient(t, Options{Address: s.Addr(), TLSConfig: &tls.Config{RootCAs: pool}})
	k := uniqueKey(t, "k")
	if err := c.Set(ctx, k, "over tls", 0); err != nil {
		t.Fatal(err)
	}
	if v, _, err := c.Get(ctx, k); err != nil || v != "over tls" {
		t.Fatalf("Get over TLS = %q, %v", v, err)
	}

	// Certificates are verified: a client that does not trust the CA fails.
	untrusting := newClient(t, Options{Address: s.Addr(), TLS: true})
	err := untrusting.Ping(ctx)
	if err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("Ping without trusting the server's CA: %v; want a TLS error", err)
	}
	// Plain TCP to a TLS port does not hang beyond the timeout.
	plain := newClient(t, Options{Address: s.Addr(), Timeout: 300 * time.Millisecond})
	start := time.Now()
	if err := plain.Ping(ctx); err == nil {
		t.Fatal("plain Ping to a TLS port succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("plain Ping to a TLS port took %s", d)
	}
}

func TestTLSServerNameComesFromAddress(t *testing.T) {
	// A Go TLS listener whose certificate names only "localhost".
	cert, pool, _, _ := testCert(t, t.TempDir(), []string{"localhost"}, nil)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r := bufio.NewReader(conn)
				for {
					if _, err := readCommand(r); err != nil {
						return
					}
					io.WriteString(conn, "+PONG\r\n")
				}
			}()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ctx := context.Background()

	byName := newClient(t, Options{Address: "localhost:" + port, TLSConfig: &tls.Config{RootCAs: pool}})
	if err := byName.Ping(ctx); err != nil {
		t.Fatalf("TLS Ping to localhost:%s: %v", port, err)
	}
	byIP := newClient(t, Options{Address: "127.0.0.1:" + port, TLSConfig: &tls.Config{RootCAs: pool}})
	if err := byIP.Ping(ctx); err == nil || !strings.Contains(err.Error(), "x509") {
		t.Fatalf("TLS Ping to 127.0.0.1 with a localhost-only certificate: %v; want a verification error", err)
	}
	explicit := newClient(t, Options{Address: "127.0.0.1:" + port, TLSConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}})
	if err := explicit.Ping(ctx); err != nil {
		t.Fatalf("TLS Ping with an explicit ServerName: %v", err)
	}
}

func TestPoolBoundUnderConcurrency(t *testing.T) {
	ctx := context.Background()
	addr, proxy := startCountingProxy(t, redistest.Shared(t))
	c := newClient(t, Options{Address: addr, PoolSize: 4, Timeout: 10 * time.Second})
	k := uniqueKey(t, "counter")
	var wg sync.WaitGroup
	for g := 0; g < 50; g++ {
		own := uniqueKey(t, strconv.Itoa(g))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := c.Do(ctx, "INCR", k); err != nil {
					t.Error(err)
					return
				}
				value := strconv.Itoa(i)
				if err := c.Set(ctx, own, value, time.Minute); err != nil {
					t.Error(err)
					return
				}
				if v, _, err := c.Get(ctx, own); err != nil || v != value {
					t.Errorf("Get = %q, %v; want %q", v, err, value)
					return
				}
			}
			c.Del(ctx, own)
		}()
	}
	wg.Wait()
	if v, _, err := c.Get(ctx, k); err != nil || v != "1000" {
		t.Fatalf("counter = %q, %v; want 1000", v, err)
	}
	c.Del(ctx, k)
	maxActive, total := proxy.counts()
	if maxActive > 4 || total > 4 {
		t.Fatalf("connections: %d at once, %d in total; want at most PoolSize 4", maxActive, total)
	}
	if maxActive < 2 {
		t.Fatalf("only %d connection at once under 50 goroutines", maxActive)
	}
}

func TestPoolWaitRespectsContextAndClose(t *testing.T) {
	c := newClient(t, Options{Address: silentServer(t), PoolSize: 1, Timeout: 1500 * time.Millisecond})
	// Hold the only slot with a call that never gets an answer.
	held := make(chan error, 1)
	go func() { held <- c.Ping(context.Background()) }()
	time.Sleep(100 * time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Ping(ctx)
	if d := time.Since(start); d < 100*time.Millisecond || d > time.Second {
		t.Fatalf("waiting for a slot took %s; want about 150ms", d)
	}
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "free connection") {
		t.Fatalf("waiting for a slot: %v; want ErrTimeout while waiting for a free connection", err)
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel2)
	err = c.Ping(ctx2)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Fatalf("cancelled while waiting for a slot: %v; want context.Canceled", err)
	}

	waiting := make(chan error, 1)
	go func() { waiting <- c.Ping(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	c.Close()
	select {
	case err := <-waiting:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("waiting through Close: %v; want ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Close did not wake a caller waiting for a slot")
	}
	if err := c.Ping(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping after Close: %v; want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := <-held; !errors.Is(err, ErrTimeout) {
		t.Fatalf("the held call: %v; want ErrTimeout", err)
	}
}

func TestTimeoutAgainstSilentServer(t *testing.T) {
	addr := silentServer(t)

	c := newClient(t, Options{Address: addr, Timeout: 300 * time.Millisecond})
	start := time.Now()
	_, _, err := c.Get(context.Background(), "k")
	d := time.Since(start)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Get from a silent server: %v; want ErrTimeout", err)
	}
	if d < 250*time.Millisecond || d > time.Second {
		t.Fatalf("Get from a silent server returned after %s; want about 300ms", d)
	}

	// A ctx deadline earlier than Timeout wins.
	slow := newClient(t, Options{Address: addr, Timeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = slow.Set(ctx, "k", "v", 0)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Set with a 150ms ctx took %s", d)
	}
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Set with a 150ms ctx: %v; want ErrTimeout and DeadlineExceeded", err)
	}

	// Cancelling ctx interrupts a call waiting for its reply.
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel2)
	start = time.Now()
	_, err = slow.Eval(ctx2, "return 1", nil, nil)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("cancelled Eval took %s", d)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Eval: %v; want context.Canceled", err)
	}
}

func TestRecoversAfterRedisRestart(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	c := newClient(t, Options{Address: s.Addr(), Timeout: 500 * time.Millisecond, PoolSize: 4})

	fillPool := func() {
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.Set(ctx, "k", "before", 0); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	fillPool()
	if c.idleCount() < 2 {
		t.Fatalf("%d idle connections after concurrent calls; want several", c.idleCount())
	}

	// Restart while the pool holds connections to the old process: the
	// very next calls succeed on new connections.
	s.Restart()
	if _, found, err := c.Get(ctx, "k"); err != nil || found {
		t.Fatalf("first Get after a restart = %v, %v; want not found (no persistence), no error", found, err)
	}
	for i := 0; i < 4; i++ {
		if err := c.Set(ctx, "k", "after", 0); err != nil {
			t.Fatalf("Set %d after a restart: %v", i, err)
		}
	}
	if _, err := c.Eval(ctx, "return 7", nil, nil); err != nil {
		t.Fatalf("Eval after a restart (script cache empty): %v", err)
	}
	if v, err := s.Do("GET", "k"); err != nil || v != "after" {
		t.Fatalf("the restarted server holds k = %q, %v; want \"after\"", v, err)
	}

	// While Redis is down, calls fail fast, and never hang.
	fillPool()
	s.Kill()
	for i := 0; i < 3; i++ {
		start := time.Now()
		err := c.Ping(ctx)
		if err == nil {
			t.Fatal("Ping with Redis down succeeded")
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Ping with Redis down took %s: %v", d, err)
		}
	}
	s.Restart()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping after Redis came back: %v", err)
	}
}

func (c *Client) idleCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.idle)
}

func TestMalformedRepliesDropTheConnection(t *testing.T) {
	cases := []struct {
		name    string
		reply   string
		thenEOF bool // server closes after the reply
		want    error
	}{
		{"unknown type", "?what\r\n", false, ErrProtocol},
		{"LF only", "+OK\n", false, ErrProtocol},
		{"bad integer", ":1x\r\n", false, ErrProtocol},
		{"negative length", "$-5\r\n", false, ErrProtocol},
		{"huge length", "$99999999999\r\n", false, ErrProtocol},
		{"bulk overrun", "$3\r\nabcdef\r\n", false, ErrProtocol},
		{"endless line", "+" + strings.Repeat("a", 100<<10), false, ErrProtocol},
		{"bulk cut short", "$10\r\nabc", true, io.ErrUnexpectedEOF},
		{"array cut short", "*3\r\n$1\r\na\r\n", true, io.ErrUnexpectedEOF},
		{"no reply", "", true, io.EOF},
		{"silent after half a reply", "$10\r\nabc", false, ErrTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clientClosed := make(chan struct{}, 8)
			addr, accepted := listen(t, func(conn net.Conn) {
				defer conn.Close()
				r := bufio.NewReader(conn)
				if _, err := readCommand(r); err != nil {
					return
				}
				io.WriteString(conn, tc.reply)
				if tc.thenEOF {
					return
				}
				io.Copy(io.Discard, r) // until the client hangs up
				clientClosed <- struct{}{}
			})
			c := newClient(t, Options{Address: addr, Timeout: 300 * time.Millisecond})
			_, _, err := c.Get(context.Background(), "k")
			if !errors.Is(err, tc.want) {
				t.Fatalf("Get: %v; want %v", err, tc.want)
			}
			if !tc.thenEOF {
				select {
				case <-clientClosed:
				case <-time.After(2 * time.Second):
					t.Fatal("the client kept the connection after a malformed reply")
				}
			}
			if c.idleCount() != 0 {
				t.Fatal("a connection with a malformed reply went back to the pool")
			}
			c.Get(context.Background(), "k")
			if n := accepted(); n != 2 {
				t.Fatalf("%d connections for two calls; want a new one after the bad reply", n)
			}
		})
	}
}

func TestWrongReplyTypeKeepsTheConnection(t *testing.T) {
	addr, accepted := listen(t, func(conn net.Conn) {
		defer conn.Close()
		r := bufio.NewReader(conn)
		for {
			args, err := readCommand(r)
			if err != nil {
				return
			}
			if len(args) > 0 && args[0] == "GET" {
				io.WriteString(conn, ":1\r\n")
			} else {
				io.WriteString(conn, "*1\r\n+PONG\r\n")
			}
		}
	})
	c := newClient(t, Options{Address: addr})
	if _, _, err := c.Get(context.Background(), "k"); !errors.Is(err, ErrProtocol) {
		t.Fatalf("GET answered with an integer: %v; want ErrProtocol", err)
	}
	if err := c.Ping(context.Background()); !errors.Is(err, ErrProtocol) {
		t.Fatalf("PING answered with an array: %v; want ErrProtocol", err)
	}
	if n := accepted(); n != 1 {
		t.Fatalf("%d connections; a well-formed reply of the wrong type need not drop the connection", n)
	}
}
