package signer

import (
	"strings"
	"testing"
)

// vendorVectors are the three signature examples from SPEC.md section 4.
var vendorVectors = []struct {
	name   string
	values []string
	want   string
}{
	{"queryfacerecord", []string{"IDAXXXXX", "orderNo596551", "kHoSxvLZGxSoFsjxlbzEoUzh5PAnTU7T", "1.0.0", "XO99Qfxlti9iTVgHAjwvJdAZKN3nMuUhrsPdPlPVKlcyS50N6tlLnfuFBPIucaMS"}, "6CD5F0DBCFA1155E2A66754B33C2E67DD358393B"},
	{"orderNo second page", []string{"appId001", "kHoSxvLZGxSoFsjxlbzEoUzh5PAnTU7T", "1.0.0", "aabc1457895464", "FxlAe3HFtEy73Um0pJNzIUriwtfnS3KRcPXiesd5ulS4XRAIcT0FbfaP52dwZf5S"}, "993D057C652D97FD90D5D298F2E5DC4B8D893CBC"},
	{"userId", []string{"IDAXXXXX", "userID19959248596551", "kHoSxvLZGxSoFsjxlbzEoUzh5PAnTU7T", "1.0.0", "XO99Qfxlti9iTVgHAjwvJdAZKN3nMuUhrsPdPlPVKlcyS50N6tlLnfuFBPIucaMS"}, "D7606F1741DDCF90757DA924EDCF152A200AC7F0"},
}

func TestSignVendorVectors(t *testing.T) {
	for _, v := range vendorVectors {
		if got := Sign(append([]string(nil), v.values...)...); got != v.want {
			t.Errorf("%s: Sign = %s, want %s", v.name, got, v.want)
		}
		// Any argument order gives the same signature.
		reversed := make([]string, len(v.values))
		for i := range v.values {
			reversed[len(v.values)-1-i] = v.values[i]
		}
		if got := Sign(reversed...); got != v.want {
			t.Errorf("%s reversed: Sign = %s, want %s", v.name, got, v.want)
		}
	}
}

func TestSignSortsByteOrder(t *testing.T) {
	// Upper case sorts before lower case: "B" < "a". A case-insensitive sort
	// would hash "aB" instead of "Ba".
	if Sign("a", "B") != Sign("Ba") || Sign("a", "B") == Sign("aB") {
		t.Fatal("Sign does not sort values in byte order")
	}
}

func TestNewNonce(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		n, err := NewNonce()
		if err != nil {
			t.Fatal(err)
		}
		if len(n) != NonceLength || !IsAlphanumeric(n, NonceLength) {
			t.Fatalf("nonce %q is not 32 letters and digits", n)
		}
		if seen[n] {
			t.Fatalf("nonce %q repeated", n)
		}
		seen[n] = true
	}
}

func TestIsAlphanumeric(t *testing.T) {
	cases := map[string]bool{
		"a": true, "orderNo596551": true, strings.Repeat("Z", 32): true,
		"": false, strings.Repeat("Z", 33): false, "order-1": false, "订单1": false,
		"a b": false, "a\x00": false, "ab/": false,
	}
	for in, want := range cases {
		if got := IsAlphanumeric(in, 32); got != want {
			t.Errorf("IsAlphanumeric(%q) = %v, want %v", in, got, want)
		}
	}
}
