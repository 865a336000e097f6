package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kycgate/faceidsigner/faceidtest"
	"github.com/kycgate/faceidsigner/ticketcache"
)

func TestReadGoBench(t *testing.T) {
	out := `command: go test -run '^$' -bench . -count 2 .
goos: linux
pkg: github.com/kycgate/faceidsigner
{"level":"info","msg":"ticket fetched"}
BenchmarkSignNative-2   	  121466	     12572 ns/op	    9921 B/op	      61 allocs/op
BenchmarkSignNative-2   	  100000	     10000 ns/op	    9921 B/op	      61 allocs/op
BenchmarkSignNative-2   	  100000	     11000 ns/op	    9921 B/op	      61 allocs/op
BenchmarkSignYaegi      	    8965	    160255 ns/op	   38913 B/op	     916 allocs/op
BenchmarkSignNative-2   	{"level":"info","msg":"ticket fetched"}
{"level":"info","msg":"ticket fetched"}
  100000	     10500 ns/op	    9921 B/op	      61 allocs/op
BenchmarkSignYaegi logs a line
PASS
ok  	github.com/kycgate/faceidsigner	7.343s
`
	path := filepath.Join(t.TempDir(), "bench.txt")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := readGoBench(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Command != "go test -run '^$' -bench . -count 2 ." {
		t.Errorf("command %q", f.Command)
	}
	if len(f.Benches) != 2 || len(f.Benches[1].NsOp) != 1 || f.Benches[0].Name != "BenchmarkSignNative" || f.Benches[1].Name != "BenchmarkSignYaegi" {
		t.Fatalf("benchmarks %+v", f.Benches)
	}
	b := f.Benches[0]
	if median(b.NsOp) != 10750 || median(b.BytesOp) != 9921 || median(b.Allocs) != 61 || len(b.NsOp) != 4 {
		t.Errorf("SignNative: %+v", b)
	}
	if lo, hi := spread(b.NsOp); lo != 10000 || hi != 12572 {
		t.Errorf("spread %v %v", lo, hi)
	}
	if median([]float64{4, 1, 3, 2}) != 2.5 || median(nil) != 0 {
		t.Error("median of an even count or of nothing is wrong")
	}
	empty := filepath.Join(t.TempDir(), "empty.txt")
	_ = os.WriteFile(empty, []byte("PASS\n"), 0o644)
	if _, err := readGoBench(empty); err == nil {
		t.Error("a file without results gave no error")
	}
}

func TestReplaceGenerated(t *testing.T) {
	doc := "# B\n\nhand\n\n" + beginMarker + "\nold\n" + endMarker + "\n\ntail\n"
	got, err := replaceGenerated(doc, "new figures\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# B\n\nhand\n\n" + beginMarker + "\n\nnew figures\n\n" + endMarker + "\n\ntail\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	again, _ := replaceGenerated(got, "new figures")
	if again != got {
		t.Error("replacing twice with the same text changed the document")
	}
	appended, err := replaceGenerated("# B\nhand", "x")
	if err != nil || appended != "# B\nhand\n\n"+beginMarker+"\n\nx\n\n"+endMarker+"\n" {
		t.Errorf("appending to a document without markers: %q, %v", appended, err)
	}
	if _, err := replaceGenerated(endMarker+"\n"+beginMarker, "x"); err == nil {
		t.Error("markers in the wrong order gave no error")
	}
}

func TestCommandsSince(t *testing.T) {
	before := map[string]int64{"get": 10, "set": 2}
	after := map[string]int64{"get": 13, "set": 2, "evalsha": 1}
	total, what := commandsSince(before, after)
	if total != 4 || what != "evalsha×1 get×3" {
		t.Errorf("got %d %q", total, what)
	}
}

func TestVendorCode(t *testing.T) {
	for in, want := range map[string]string{
		`{"code":"0","msg":"ok"}`:       "0",
		`{"code":"400101","msg":"bad"}`: "400101",
		`{"code":FACE`:                  "",
		`{"msg":"no code"}`:             "",
		``:                              "",
	} {
		if got := vendorCode([]byte(in)); got != want {
			t.Errorf("vendorCode(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPresignedIsAccepted checks the app-signed bodies of the bare and
// pass-through emulator routes against the emulator itself: with the ticket
// the plugin would hold it answers code 0, the same as for the plugin.
func TestPresignedIsAccepted(t *testing.T) {
	emu := faceidtest.NewServer()
	defer emu.Close()
	emu.AddApp(appID, secret)
	emu.AddResult(appID, orderNo, faceidtest.Result{Photo: []byte("PHOTO")})
	up := emulatorUpstream(emu)
	defer up.Close()
	vendor := &ticketcache.Client{Endpoint: emu.URL, AppID: appID, Secret: secret}
	if _, err := vendor.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	ticket, err := pluginTicket(emu, up.URL, appID, orderNo)
	if err != nil {
		t.Fatal(err)
	}
	path, body, err := presigned(appID, ticket, orderNo, "1")
	if err != nil {
		t.Fatal(err)
	}
	// Through a route prefix, as Traefik forwards it.
	resp, err := http.Post(up.URL+"/emu/bare"+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if vendorCode(answer) != faceidtest.CodeOK || !strings.Contains(string(answer), `"photo":"UEhPVE8="`) {
		t.Errorf("emulator answered %d %.300s", resp.StatusCode, answer)
	}
	if _, _, err := presigned(appID, "not-the-ticket", orderNo, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := pluginTicket(emu, up.URL, "IDAOTHER", orderNo); err == nil {
		t.Error("pluginTicket found a ticket for an app the emulator does not know")
	}
}
