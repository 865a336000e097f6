package faceidsigner

import (
	"encoding/json"
	"io"
	"os"
	"sync"
	"time"
)

// Log levels, in increasing order of importance.
const (
	levelDebug = iota
	levelInfo
	levelWarn
	levelError
)

var logLevels = map[string]int{"debug": levelDebug, "info": levelInfo, "warn": levelWarn, "error": levelError}

var levelNames = []string{"debug", "info", "warn", "error"}

// eventLog writes one JSON object per line. Under Traefik, the interpreter's
// standard output becomes Traefik debug log events and standard error
// becomes error events, so debug and info go to stdout, warn and error to
// stderr. Callers must never pass a secret, token, ticket, sign input,
// photo or video in fields.
type eventLog struct {
	level      int
	middleware string
	mu         *sync.Mutex
	stdout     io.Writer
	stderr     io.Writer
}

// writeMu serialises lines from every instance so they never interleave.
var writeMu = &sync.Mutex{}

func newEventLog(level int, middleware string) *eventLog {
	return &eventLog{level: level, middleware: middleware, mu: writeMu, stdout: os.Stdout, stderr: os.Stderr}
}

func (l *eventLog) enabled(level int) bool { return level >= l.level }

// log writes msg with fields at level, if the level is enabled.
func (l *eventLog) log(level int, msg string, fields map[string]interface{}) {
	if !l.enabled(level) {
		return
	}
	line := make(map[string]interface{}, len(fields)+5)
	for k, v := range fields {
		line[k] = v
	}
	line["time"] = time.Now().UTC().Format(time.RFC3339Nano)
	line["level"] = levelNames[level]
	line["plugin"] = "faceidsigner"
	line["middleware"] = l.middleware
	line["msg"] = msg
	data, err := json.Marshal(line)
	if err != nil {
		data = []byte(`{"level":"error","plugin":"faceidsigner","msg":"cannot encode log event"}`)
	}
	data = append(data, '\n')
	out := l.stdout
	if level >= levelWarn {
		out = l.stderr
	}
	l.mu.Lock()
	_, _ = out.Write(data)
	l.mu.Unlock()
}

// cacheLogger adapts the event log to ticketcache.LogFunc.
func (l *eventLog) cacheLogger() func(level, msg string, fields map[string]interface{}) {
	return func(level, msg string, fields map[string]interface{}) {
		n, ok := logLevels[level]
		if !ok {
			n = levelInfo
		}
		l.log(n, msg, fields)
	}
}
