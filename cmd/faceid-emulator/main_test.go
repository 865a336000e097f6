package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kycgate/faceidsigner/signer"
)

func TestServeAndShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-app", "IDAXXXXX", "-secret", "S3",
			"-order", "orderNo596551, orderNo2", "-photo-bytes", "3000", "-video-bytes", "0"}, outW, io.Discard)
		outW.Close()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("no startup line: %v (run: %v)", err, <-done)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	if strings.Contains(line, "S3") {
		t.Errorf("startup line shows the secret: %q", line)
	}
	i := strings.Index(line, "http://")
	base := strings.Fields(line[i:])[0]

	get := func(path string, q url.Values) map[string]any {
		resp, err := http.Get(base + path + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	tok := get("/api/oauth2/access_token", url.Values{"app_id": {"IDAXXXXX"}, "secret": {"S3"},
		"grant_type": {"client_credential"}, "version": {"1.0.0"}})
	tk := get("/api/oauth2/api_ticket", url.Values{"app_id": {"IDAXXXXX"}, "access_token": {tok["access_token"].(string)},
		"type": {"SIGN"}, "version": {"1.0.0"}})
	ticket := tk["tickets"].([]any)[0].(map[string]any)["value"].(string)

	nonce, _ := signer.NewNonce()
	body, _ := json.Marshal(map[string]string{"appId": "IDAXXXXX", "orderNo": "orderNo2", "version": "1.0.0",
		"nonce": nonce, "getFile": "1", "sign": signer.Sign("IDAXXXXX", "orderNo2", "1.0.0", ticket, nonce)})
	resp, err := http.Post(base+"/api/v2/base/queryfacerecord?orderNo=orderNo2", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Code   string
		Result struct {
			Photo []byte
			Video *string
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if err != nil || m.Code != "0" || len(m.Result.Photo) != 3000 || m.Result.Photo[0] != 0xFF || m.Result.Video != nil {
		t.Fatalf("query: err %v code %q photo %d bytes video %v", err, m.Code, len(m.Result.Photo), m.Result.Video)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after cancel")
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"-secret", ""}, {"-secret", "s", "extra"}, {"-bogus"}, {"-secret", "s", "-photo-bytes", "-1"}} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err != errUsage {
			t.Errorf("%q: err %v, want usage error", args, err)
		}
	}
}
