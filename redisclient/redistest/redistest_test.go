package redistest

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func TestStartDoKillRestartStop(t *testing.T) {
	s := Start(t)
	if v, err := s.Do("SET", "k", "a\r\nb"); err != nil || v != "OK" {
		t.Fatalf("SET = %q, %v", v, err)
	}
	if v, err := s.Do("GET", "k"); err != nil || v != "a\r\nb" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	if _, err := s.Do("GET", "missing"); !errors.Is(err, ErrNil) {
		t.Fatalf("GET missing: %v; want ErrNil", err)
	}
	if v, err := s.Do("INCRBY", "n", "41"); err != nil || v != "41" {
		t.Fatalf("INCRBY = %q, %v", v, err)
	}
	if v, err := s.Do("EVAL", "return {1, 'two'}", "0"); err != nil || v != "1\ntwo" {
		t.Fatalf("EVAL = %q, %v", v, err)
	}
	if _, err := s.Do("HGET", "k", "f"); !errors.Is(err, ErrReply) || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("HGET on a string: %v; want ErrReply WRONGTYPE", err)
	}
	if v, err := Do(s.Addr(), "GET", "k"); err != nil || v != "a\r\nb" {
		t.Fatalf("package Do GET = %q, %v", v, err)
	}

	pid := s.pid()
	s.Kill()
	if processAlive(pid) {
		t.Fatalf("redis-server %d still runs after Kill", pid)
	}
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("PING after Kill succeeded")
	}
	s.Kill() // no-op

	addr := s.Addr()
	s.Restart()
	if s.Addr() != addr {
		t.Fatalf("Restart moved the server from %s to %s", addr, s.Addr())
	}
	if _, err := s.Do("GET", "k"); !errors.Is(err, ErrNil) {
		t.Fatalf("GET after Restart: %v; want ErrNil (no persistence)", err)
	}
	s.Restart() // restarting a running server replaces it
	if v, err := s.Do("PING"); err != nil || v != "PONG" {
		t.Fatalf("PING after a second Restart = %q, %v", v, err)
	}

	pid = s.pid()
	s.Stop()
	if processAlive(pid) {
		t.Fatalf("redis-server %d still runs after Stop", pid)
	}
	s.Stop() // no-op
}

func TestStartWithPassword(t *testing.T) {
	s := Start(t, "--requirepass", "pw-redistest")
	if v, err := s.Do("PING"); err != nil || v != "PONG" {
		t.Fatalf("Do with the password = %q, %v", v, err)
	}
	if _, err := Do(s.Addr(), "PING"); !errors.Is(err, ErrReply) || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("package Do without a password: %v; want NOAUTH", err)
	}
	s.Restart()
	if v, err := s.Do("PING"); err != nil || v != "PONG" {
		t.Fatalf("Do after Restart = %q, %v", v, err)
	}
}

func TestServersAreKilledWhenTheTestEnds(t *testing.T) {
	var pid int
	var addr string
	t.Run("owner", func(t *testing.T) {
		s := Start(t)
		pid = s.pid()
		addr = s.Addr()
	})
	if processAlive(pid) {
		t.Fatalf("redis-server %d still runs after its test ended", pid)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after its test ended", addr)
	}
}

func TestShared(t *testing.T) {
	addr := Shared(t)
	if again := Shared(t); again != addr {
		t.Fatalf("Shared returned %s, then %s", addr, again)
	}
	key := "redistest:" + t.Name() + ":" + strconv.Itoa(os.Getpid())
	if _, err := Do(addr, "SET", key, "v", "PX", "60000"); err != nil {
		t.Fatal(err)
	}
	if v, err := Do(addr, "GET", key); err != nil || v != "v" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	Do(addr, "DEL", key)
	if os.Getenv(AddrEnv) == "" && shared.server == nil {
		t.Fatal("Shared started no server although " + AddrEnv + " is not set")
	}
}

func (s *Server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// processAlive reports whether pid runs (and is not a zombie: the servers
// are waited for, so a dead one is gone).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}
