package faceidsigner

import (
	"encoding/json"
	"fmt"
	"io"
	stdlog "log"
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

// eventLog writes one JSON object per line. Under Traefik, yaegi turns
// fmt.Print into Traefik debug log events and log.Print into error events
// (direct writes to os.Stdout would bypass Traefik's logger), so debug and
// info lines go through fmt.Print and warn and error lines through
// log.Print. Callers must never pass a secret, token, ticket, sign input,
// photo or video in fields.
type eventLog struct {
	level      int
	middleware string
	mu         *sync.Mutex
	// stdout and stderr replace fmt.Print and log.Print when set (tests).
	stdout io.Writer
	stderr io.Writer
}

// writeMu serialises lines from every instance so they never interleave.
var writeMu = &sync.Mutex{}

func newEventLog(level int, middleware string) *eventLog {
	return &eventLog{level: level, middleware: middleware, mu: writeMu}
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
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case level < levelWarn && l.stdout != nil:
		_, _ = l.stdout.Write(append(data, '\n'))
	case level < levelWarn:
		fmt.Print(string(data) + "\n")
	case l.stderr != nil:
		_, _ = l.stderr.Write(append(data, '\n'))
	default:
		stdlog.Print(string(data))
	}
}

// init drops the standard logger's date prefix: each line carries its own
// time. Under yaegi this is the interpreter's own logger, not Traefik's.
func init() {
	stdlog.SetFlags(0)
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
