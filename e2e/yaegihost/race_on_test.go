//go:build race

package yaegihost

const raceEnabled = true
