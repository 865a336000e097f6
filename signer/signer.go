// Package signer holds the pure parts of FaceID request signing: the random
// nonce, the SHA-1 signature over sorted values (SPEC.md section 4) and the
// per-API recipes that say which request fields are signed. It does no I/O
// and keeps no state, so it is safe to call from any goroutine.
package signer

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"sort"
	"strings"
)

// NonceLength is the length of a nonce: 32 letters and digits.
const NonceLength = 32

// ErrNonce is returned when the system random source fails.
var ErrNonce = errors.New("signer: cannot read random bytes for a nonce")

// NewNonce returns 32 random characters from [0-9a-f], read from crypto/rand.
// Hex is a subset of the vendor's "letters and digits" and is produced by one
// native call, which keeps the interpreted hot path short.
func NewNonce() (string, error) {
	var buf [NonceLength / 2]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", ErrNonce
	}
	return hex.EncodeToString(buf[:]), nil
}

// Sign returns the vendor signature of values: the values sorted in byte
// order, concatenated without separator, hashed with SHA-1 and written as 40
// upper-case hex characters. The order of the arguments does not matter.
// values is sorted in place; pass a slice you own.
func Sign(values ...string) string {
	sort.Strings(values)
	sum := sha1.Sum([]byte(strings.Join(values, "")))
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// IsAlphanumeric reports whether s is non-empty, at most maxLen bytes long
// and made only of ASCII letters and digits (the vendor's rule for orderNo
// and nonce).
func IsAlphanumeric(s string, maxLen int) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	return strings.Trim(s, alphanumerics) == ""
}

const alphanumerics = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
