package redisclient

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Ping checks that Redis answers PONG.
func (c *Client) Ping(ctx context.Context) error {
	rep, err := c.Do(ctx, "PING")
	if err != nil {
		return err
	}
	if rep.Kind != KindStatus || rep.Str != "PONG" {
		return unexpected("PING", rep)
	}
	return nil
}

// Get returns the value of key; found is false when the key does not exist.
func (c *Client) Get(ctx context.Context, key string) (value string, found bool, err error) {
	rep, err := c.Do(ctx, "GET", key)
	if err != nil {
		return "", false, err
	}
	if rep.Kind != KindBulk {
		return "", false, unexpected("GET", rep)
	}
	if rep.Nil {
		return "", false, nil
	}
	return rep.Str, true, nil
}

// Set stores value at key with SET key value PX ttl; ttl 0 means no expiry.
// A ttl that is not a whole number of milliseconds is rounded up.
func (c *Client) Set(ctx context.Context, key string, value string, ttl time.Duration) error {
	args, err := setArgs(key, value, ttl, false)
	if err != nil {
		return err
	}
	rep, err := c.Do(ctx, args...)
	if err != nil {
		return err
	}
	if rep.Kind != KindStatus || rep.Str != "OK" {
		return unexpected("SET", rep)
	}
	return nil
}

// SetNX stores value at key only if key does not exist (SET key value NX PX
// ttl; ttl 0 means no expiry). acquired reports whether it was stored.
func (c *Client) SetNX(ctx context.Context, key string, value string, ttl time.Duration) (acquired bool, err error) {
	args, err := setArgs(key, value, ttl, true)
	if err != nil {
		return false, err
	}
	rep, err := c.Do(ctx, args...)
	if err != nil {
		return false, err
	}
	if rep.Kind == KindBulk && rep.Nil {
		return false, nil
	}
	if rep.Kind != KindStatus || rep.Str != "OK" {
		return false, unexpected("SET NX", rep)
	}
	return true, nil
}

func setArgs(key string, value string, ttl time.Duration, onlyIfAbsent bool) ([]string, error) {
	if ttl < 0 {
		return nil, fmt.Errorf("redisclient: SET %q: negative ttl %s", key, ttl)
	}
	args := []string{"SET", key, value}
	if onlyIfAbsent {
		args = append(args, "NX")
	}
	if ttl > 0 {
		args = append(args, "PX", milliseconds(ttl))
	}
	return args, nil
}

// milliseconds renders a positive duration in whole milliseconds, rounded up.
func milliseconds(d time.Duration) string {
	ms := int64((d + time.Millisecond - 1) / time.Millisecond)
	return strconv.FormatInt(ms, 10)
}

// Del deletes keys and returns how many existed.
func (c *Client) Del(ctx context.Context, keys ...string) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	args := make([]string, 0, len(keys)+1)
	args = append(args, "DEL")
	args = append(args, keys...)
	rep, err := c.Do(ctx, args...)
	if err != nil {
		return 0, err
	}
	if rep.Kind != KindInt {
		return 0, unexpected("DEL", rep)
	}
	return rep.Int, nil
}

// Eval runs a Lua script with EVALSHA, and with EVAL when Redis does not
// have the script yet (NOSCRIPT), which also loads it for later calls.
// Both attempts share one deadline.
func (c *Client) Eval(ctx context.Context, script string, keys []string, args []string) (Reply, error) {
	deadline := c.deadline(ctx)
	cmd := make([]string, 0, 3+len(keys)+len(args))
	cmd = append(cmd, "EVALSHA", c.scriptSHA(script), strconv.Itoa(len(keys)))
	cmd = append(cmd, keys...)
	cmd = append(cmd, args...)
	rep, err := c.call(ctx, deadline, cmd)
	if err != nil && rep.Kind == KindError && strings.HasPrefix(rep.Str, "NOSCRIPT") {
		cmd[0] = "EVAL"
		cmd[1] = script
		rep, err = c.call(ctx, deadline, cmd)
	}
	return rep, err
}

// scriptSHA returns the SHA-1 of script in hex, cached per script.
func (c *Client) scriptSHA(script string) string {
	c.mu.Lock()
	sha, ok := c.scripts[script]
	c.mu.Unlock()
	if ok {
		return sha
	}
	sum := sha1.Sum([]byte(script))
	sha = hex.EncodeToString(sum[:])
	c.mu.Lock()
	c.scripts[script] = sha
	c.mu.Unlock()
	return sha
}

// Scripts for a lease held under a key whose value names the holder.
const (
	deleteIfEqualScript  = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`
	pexpireIfEqualScript = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`
)

// DeleteIfEqual deletes key only while it holds value (a lease released by
// its holder only). deleted is false when key is missing or holds another value.
func (c *Client) DeleteIfEqual(ctx context.Context, key string, value string) (deleted bool, err error) {
	rep, err := c.Eval(ctx, deleteIfEqualScript, []string{key}, []string{value})
	if err != nil {
		return false, err
	}
	if rep.Kind != KindInt {
		return false, unexpected("DeleteIfEqual script", rep)
	}
	return rep.Int == 1, nil
}

// PExpireIfEqual sets key's time to live to ttl only while key holds value
// (a lease extended by its holder only). ttl must be positive; it is rounded
// up to whole milliseconds.
func (c *Client) PExpireIfEqual(ctx context.Context, key string, value string, ttl time.Duration) (extended bool, err error) {
	if ttl <= 0 {
		return false, fmt.Errorf("redisclient: PExpireIfEqual %q: ttl must be positive, got %s", key, ttl)
	}
	rep, err := c.Eval(ctx, pexpireIfEqualScript, []string{key}, []string{value, milliseconds(ttl)})
	if err != nil {
		return false, err
	}
	if rep.Kind != KindInt {
		return false, unexpected("PExpireIfEqual script", rep)
	}
	return rep.Int == 1, nil
}

// unexpected reports a well-formed reply of the wrong type for command.
func unexpected(command string, rep Reply) error {
	what := "unknown"
	switch rep.Kind {
	case KindStatus:
		what = "status " + strconv.Quote(clip(rep.Str))
	case KindInt:
		what = "integer " + strconv.FormatInt(rep.Int, 10)
	case KindBulk:
		what = "bulk string"
		if rep.Nil {
			what = "null bulk string"
		}
	case KindArray:
		what = "array"
		if rep.Nil {
			what = "null array"
		}
	case KindError:
		what = "error"
	}
	return fmt.Errorf("%w: %s replied with %s", ErrProtocol, command, what)
}
