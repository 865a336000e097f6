//go:build !race

package yaegiredis

const raceEnabled = false
