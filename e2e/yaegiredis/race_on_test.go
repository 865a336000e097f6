//go:build race

package yaegiredis

// raceEnabled: the race detector reports races inside yaegi itself, so the
// interpreted test skips under -race (as in e2e/yaegihost).
const raceEnabled = true
