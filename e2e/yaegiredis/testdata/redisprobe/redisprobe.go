// Package redisprobe is run by yaegi, never compiled: it drives
// redisclient against real redis-servers the way the plugin would inside
// Traefik, and returns one line per check, "ok <name>" or
// "FAIL <name>: <detail>", for the native test to judge.
package redisprobe

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kycgate/faceidsigner/redisclient"
)

// Value is binary: CR, LF, NUL and UTF-8 must survive the round trip.
const Value = "v\r\n\x00ü end"

// Run takes the addresses from cfg:
//
//	addr      a redis-server of the probe's own (restart and kill act on it)
//	authAddr  a redis-server started with --requirepass password
//	password  that password
//	silent    a TCP listener that accepts and never answers
//	tlsAddr   a TLS-only redis-server whose certificate is caPEM
//	caPEM     PEM of the CA that signed the TLS server's certificate
//	prefix    key prefix
//
// restart restarts the server at addr (empty afterwards); kill stops it.
// It expects the key prefix+"native" to hold Value, and leaves
// prefix+"written" holding Value.
func Run(cfg map[string]string, restart func(), kill func()) []string {
	p := &probe{}
	ctx := context.Background()
	addr := cfg["addr"]
	prefix := cfg["prefix"]

	c := redisclient.New(redisclient.Options{Address: addr, Timeout: time.Second})
	defer c.Close()

	// GET, SET, binary safety, TTL.
	err := c.Ping(ctx)
	p.check("ping", err == nil, errText(err))
	v, found, err := c.Get(ctx, prefix+"native")
	p.check("get what native code set", err == nil && found && v == Value, strconv.Quote(v)+errText(err))
	_, found, err = c.Get(ctx, prefix+"missing")
	p.check("get missing", err == nil && !found, errText(err))
	err = c.Set(ctx, prefix+"ttl", Value, time.Minute)
	rep, err2 := c.Do(ctx, "PTTL", prefix+"ttl")
	p.check("set with ttl", err == nil && err2 == nil && rep.Int > 0 && rep.Int <= 60000,
		strconv.FormatInt(rep.Int, 10)+errText(err)+errText(err2))
	v, _, err = c.Get(ctx, prefix+"ttl")
	p.check("get what was set", err == nil && v == Value, strconv.Quote(v)+errText(err))
	c.Do(ctx, "HSET", prefix+"hash", "f", "v")
	_, _, err = c.Get(ctx, prefix+"hash")
	p.check("server error is ErrServer", errors.Is(err, redisclient.ErrServer) && strings.Contains(errText(err), "WRONGTYPE"), errText(err))

	// SETNX lease, released and extended by its holder only.
	lease := prefix + "lease"
	ok, err := c.SetNX(ctx, lease, "holder-A", time.Minute)
	p.check("setnx free key", err == nil && ok, errText(err))
	ok, err = c.SetNX(ctx, lease, "holder-B", time.Minute)
	p.check("setnx taken key", err == nil && !ok, errText(err))
	v, _, _ = c.Get(ctx, lease)
	p.check("setnx kept the holder", v == "holder-A", v)
	ok, err = c.DeleteIfEqual(ctx, lease, "holder-B")
	p.check("delete-if-equal by another holder", err == nil && !ok, errText(err))
	ok, err = c.PExpireIfEqual(ctx, lease, "holder-A", time.Hour)
	rep, _ = c.Do(ctx, "PTTL", lease)
	p.check("pexpire-if-equal by the holder", err == nil && ok && rep.Int > 59*60*1000, strconv.FormatInt(rep.Int, 10)+errText(err))

	// EVALSHA, and EVAL when Redis lost its script cache (NOSCRIPT).
	script := "return ARGV[1] .. '-' .. KEYS[1]"
	sum := sha1.Sum([]byte(script))
	sha := hex.EncodeToString(sum[:])
	c.Do(ctx, "SCRIPT", "FLUSH")
	c.Do(ctx, "CONFIG", "RESETSTAT")
	rep, err = c.Eval(ctx, script, []string{"k"}, []string{"a"})
	p.check("eval after script flush (NOSCRIPT fallback)", err == nil && rep.Str == "a-k", rep.Str+errText(err))
	rep, err = c.Eval(ctx, script, []string{"k"}, []string{"b"})
	p.check("eval with the cached script", err == nil && rep.Str == "b-k", rep.Str+errText(err))
	rep, err = c.Do(ctx, "SCRIPT", "EXISTS", sha)
	p.check("fallback loaded the script", err == nil && len(rep.Array) == 1 && rep.Array[0].Int == 1, errText(err))
	stats, err := c.Do(ctx, "INFO", "commandstats")
	evalCalls := statCalls(stats.Str, "eval")
	evalshaCalls := statCalls(stats.Str, "evalsha")
	p.check("one EVAL, then EVALSHA", err == nil && evalCalls == 1 && evalshaCalls == 2,
		"eval="+strconv.Itoa(evalCalls)+" evalsha="+strconv.Itoa(evalshaCalls)+errText(err))
	c.Do(ctx, "SCRIPT", "FLUSH")
	ok, err = c.DeleteIfEqual(ctx, lease, "holder-A")
	p.check("delete-if-equal by the holder after script flush", err == nil && ok, errText(err))
	_, found, _ = c.Get(ctx, lease)
	p.check("lease is gone", !found, "")

	// SELECT isolates databases.
	db3 := redisclient.New(redisclient.Options{Address: addr, DB: 3})
	err = db3.Set(ctx, prefix+"db", "three", time.Minute)
	_, found, err2 = c.Get(ctx, prefix+"db")
	v, _, _ = db3.Get(ctx, prefix+"db")
	p.check("select", err == nil && err2 == nil && !found && v == "three", v+errText(err)+errText(err2))
	db3.Close()
	bad := redisclient.New(redisclient.Options{Address: addr, DB: 100000})
	err = bad.Ping(ctx)
	p.check("select out of range", errors.Is(err, redisclient.ErrServer), errText(err))
	bad.Close()

	p.auth(ctx, cfg["authAddr"], cfg["password"])
	p.timeouts(ctx, cfg["silent"])
	p.tls(ctx, cfg["tlsAddr"], cfg["caPEM"])

	// A bounded pool under 20 goroutines.
	pc := redisclient.New(redisclient.Options{Address: addr, PoolSize: 3, Timeout: 2 * time.Second})
	defer pc.Close()
	before := connectionsReceived(ctx, c)
	failures := hammer(ctx, pc, prefix, 20, 10)
	opened := connectionsReceived(ctx, c) - before
	p.check("pool under 20 goroutines", len(failures) == 0, strings.Join(failures, "; "))
	p.check("pool opened at most 3 connections", opened >= 1 && opened <= 3, strconv.Itoa(opened)+" opened")

	// Recovery: the pool holds connections to a server that restarts.
	restart()
	_, found, err = pc.Get(ctx, prefix+"c0")
	p.check("first call after a restart", err == nil && !found, errText(err))
	_, err = pc.Eval(ctx, script, []string{"k"}, []string{"c"})
	p.check("eval after a restart (script cache empty)", err == nil, errText(err))
	failures = hammer(ctx, pc, prefix, 20, 3)
	p.check("pool after a restart", len(failures) == 0, strings.Join(failures, "; "))
	kill()
	slowest := time.Duration(0)
	down := 0
	for i := 0; i < 3; i++ {
		start := time.Now()
		if pc.Ping(ctx) != nil {
			down++
		}
		d := time.Since(start)
		if d > slowest {
			slowest = d
		}
	}
	p.check("calls fail fast while redis is down", down == 3 && slowest < time.Second, strconv.Itoa(down)+" failed, slowest "+slowest.String())
	restart()
	err = pc.Ping(ctx)
	p.check("ping after redis came back", err == nil, errText(err))

	err = c.Set(ctx, prefix+"written", Value, time.Minute)
	p.check("set for native code", err == nil, errText(err))
	closed := redisclient.New(redisclient.Options{Address: addr})
	closed.Close()
	p.check("closed client", errors.Is(closed.Ping(ctx), redisclient.ErrClosed), "")
	return p.lines
}

type probe struct {
	lines []string
}

func (p *probe) check(name string, ok bool, detail string) {
	if ok {
		p.lines = append(p.lines, "ok "+name)
		return
	}
	p.lines = append(p.lines, "FAIL "+name+": "+detail)
}

func (p *probe) auth(ctx context.Context, addr string, password string) {
	good := redisclient.New(redisclient.Options{Address: addr, Password: password})
	err := good.Ping(ctx)
	p.check("auth with the password", err == nil, errText(err))
	good.Close()
	anon := redisclient.New(redisclient.Options{Address: addr})
	err = anon.Ping(ctx)
	p.check("auth missing", errors.Is(err, redisclient.ErrServer) && strings.Contains(errText(err), "NOAUTH"), errText(err))
	anon.Close()
	wrong := redisclient.New(redisclient.Options{Address: addr, Password: password + "-wrong"})
	err = wrong.Ping(ctx)
	p.check("auth wrong password", errors.Is(err, redisclient.ErrServer) && !strings.Contains(errText(err), password), errText(err))
	wrong.Close()
}

func (p *probe) timeouts(ctx context.Context, silent string) {
	sc := redisclient.New(redisclient.Options{Address: silent, Timeout: 200 * time.Millisecond})
	start := time.Now()
	err := sc.Ping(ctx)
	d := time.Since(start)
	p.check("timeout against a silent listener", errors.Is(err, redisclient.ErrTimeout) && d < time.Second, d.String()+errText(err))
	sc.Close()

	slow := redisclient.New(redisclient.Options{Address: silent, Timeout: 5 * time.Second})
	cctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	err = slow.Ping(cctx)
	d = time.Since(start)
	timer.Stop()
	cancel()
	p.check("context cancel against a silent listener", errors.Is(err, context.Canceled) && d < time.Second, d.String()+errText(err))
	tctx, cancel2 := context.WithTimeout(ctx, 150*time.Millisecond)
	start = time.Now()
	err = slow.Ping(tctx)
	d = time.Since(start)
	cancel2()
	p.check("context deadline against a silent listener",
		errors.Is(err, redisclient.ErrTimeout) && errors.Is(err, context.DeadlineExceeded) && d < time.Second, d.String()+errText(err))
	slow.Close()
}

func (p *probe) tls(ctx context.Context, addr string, caPEM string) {
	pool := x509.NewCertPool()
	p.check("tls ca parses", pool.AppendCertsFromPEM([]byte(caPEM)), "no certificate in caPEM")
	tc := redisclient.New(redisclient.Options{Address: addr, TLSConfig: &tls.Config{RootCAs: pool}})
	err := tc.Set(ctx, "tls", Value, time.Minute)
	v, _, err2 := tc.Get(ctx, "tls")
	p.check("tls", err == nil && err2 == nil && v == Value, strconv.Quote(v)+errText(err)+errText(err2))
	tc.Close()
	untrusting := redisclient.New(redisclient.Options{Address: addr, TLS: true})
	err = untrusting.Ping(ctx)
	p.check("tls verifies the certificate", err != nil && strings.Contains(errText(err), "TLS"), errText(err))
	untrusting.Close()
}

// hammer runs goroutines that each SET and GET their own key rounds times,
// and returns what went wrong.
func hammer(ctx context.Context, c *redisclient.Client, prefix string, goroutines int, rounds int) []string {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	fail := func(text string) {
		mu.Lock()
		failures = append(failures, text)
		mu.Unlock()
	}
	for g := 0; g < goroutines; g++ {
		g := g
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := prefix + "c" + strconv.Itoa(g)
			for i := 0; i < rounds; i++ {
				want := strconv.Itoa(g) + "/" + strconv.Itoa(i)
				if err := c.Set(ctx, key, want, time.Minute); err != nil {
					fail("set " + key + ": " + err.Error())
					continue
				}
				got, _, err := c.Get(ctx, key)
				if err != nil || got != want {
					fail("get " + key + " = " + got + errText(err))
				}
			}
		}()
	}
	wg.Wait()
	return failures
}

// connectionsReceived reads total_connections_received from INFO stats.
func connectionsReceived(ctx context.Context, c *redisclient.Client) int {
	rep, err := c.Do(ctx, "INFO", "stats")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(rep.Str, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "total_connections_received:") {
			n, _ := strconv.Atoi(strings.TrimPrefix(line, "total_connections_received:"))
			return n
		}
	}
	return -1
}

// statCalls reads calls=N of cmdstat_<command> from INFO commandstats.
func statCalls(info string, command string) int {
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "cmdstat_"+command+":calls=") {
			continue
		}
		rest := strings.TrimPrefix(line, "cmdstat_"+command+":calls=")
		end := strings.Index(rest, ",")
		if end < 0 {
			end = len(rest)
		}
		n, _ := strconv.Atoi(rest[:end])
		return n
	}
	return 0
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return " err=" + err.Error()
}
