package traefike2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kycgate/faceidsigner/e2e/traefikharness"
	"github.com/kycgate/faceidsigner/faceidtest"
	"github.com/kycgate/faceidsigner/redisclient/redistest"
)

// TestTwoTraefiksShareOneTicketThroughRedis runs two real Traefik processes
// with the plugin pointed at one Redis, against the emulator with a short
// overlap (700 ms) and a 1 s refresh interval, under load for five refresh
// periods: the vendor never rejects a signature, and the cluster fetches
// about one token per period. The status path is scraped through Traefik.
func TestTwoTraefiksShareOneTicketThroughRedis(t *testing.T) {
	const appID, secret, order = "IDAXXXXX", "two-traefiks-secret-5e6f7a8b", "orderNo596551"
	emu := faceidtest.NewServer()
	t.Cleanup(emu.Close)
	emu.AddApp(appID, secret)
	emu.AddResult(appID, order, faceidtest.Result{})
	emu.SetOverlap(700 * time.Millisecond)
	redisAddr := redistest.Start(t).Addr()
	// A secret file: an inline secret would appear in Traefik's own debug
	// log of the configuration it received.
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	dynamic := `http:
  routers:
    faceid:
      entryPoints: [web]
      rule: PathPrefix(` + "`/faceid`" + `)
      middlewares: [sign]
      service: vendor
  middlewares:
    sign:
      plugin:
        faceidsigner:
          appId: ` + appID + `
          secretFile: ` + secretFile + `
          endpoint: ` + emu.URL + `
          refreshInterval: 1s
          logLevel: warn
          statusPath: /faceid/status
          redisAddress: ` + redisAddr + `
          redisCheckInterval: 100ms
          redisKeyPrefix: "twotraefiks:"
  services:
    vendor:
      loadBalancer:
        passHostHeader: false
        servers:
          - url: ` + emu.URL + `
`
	var gateways []*traefikharness.Traefik
	for i := 0; i < 2; i++ {
		gateways = append(gateways, traefikharness.Start(t, traefikharness.Options{
			PluginDir: root, DynamicConfig: dynamic, WaitRouters: []string{"faceid"},
		}))
		time.Sleep(400 * time.Millisecond) // replicas start at different times
	}
	emu.ResetCounters()
	start := time.Now()
	var ok, failed atomic.Int64
	stop := start.Add(5 * time.Second)
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 8; i++ {
		gw := gateways[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				resp, err := client.Post(gw.URL+"/faceid/query", "application/json", strings.NewReader(`{"orderNo":"`+order+`"}`))
				if err != nil {
					failed.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 && strings.Contains(string(body), `"code":"0"`) {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	periods := time.Since(start).Seconds()
	if n := emu.CodeCount(faceidtest.CodeIllegalRequest); n != 0 || failed.Load() != 0 || ok.Load() < 200 {
		t.Fatalf("400101 answers %d, app saw %d ok and %d failed", n, ok.Load(), failed.Load())
	}
	if calls := float64(emu.TokenCalls()); calls < periods-1.5 || calls > periods+1.5 {
		t.Fatalf("%v token calls over %.1f s: want about one per refresh period for both Traefiks", calls, periods)
	}
	// Both status paths answer through Traefik, in Prometheus format too.
	for i, gw := range gateways {
		resp, err := client.Get(gw.URL + "/faceid/status/metrics")
		if err != nil {
			t.Fatal(err)
		}
		text, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(text), "faceidsigner_signed_total{") || !strings.Contains(string(text), "faceidsigner_ticket_valid{") {
			t.Fatalf("Traefik %d metrics:\n%s", i, text)
		}
		for j, s := range append([]string{secret}, emu.Secrets()...) {
			if s != "" && (strings.Contains(string(text), s) || strings.Contains(gw.Log(), s)) {
				t.Fatalf("Traefik %d leaks credential %d in its metrics or log", i, j)
			}
		}
	}
	t.Logf("%d requests accepted over %.1f s, %d token calls, 0 rejected signatures", ok.Load(), periods, emu.TokenCalls())
	_ = strconv.Itoa
}
