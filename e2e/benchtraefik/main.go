// Command benchtraefik measures the faceidsigner plugin inside a real
// Traefik (v3.6.12, .bin/traefik) and writes the figures of BENCHMARKS.md.
// `make bench` runs it through scripts/bench.sh, after the Go benchmarks
// whose output it summarises (-gobench).
//
// One Traefik process serves every variant on one entry point, told apart
// by path prefix:
//
//	/bare/       no middleware                       -> trivial upstream
//	/pass/       pass-through yaegi plugin           -> trivial upstream
//	/sign/       faceidsigner, in-process tickets    -> trivial upstream
//	/redis/      faceidsigner, shared store (Redis)  -> trivial upstream
//	/emu/bare/   no middleware, request signed by the app  -> FaceID emulator
//	/emu/pass/   pass-through, request signed by the app   -> FaceID emulator
//	/emu/sign/   faceidsigner                              -> FaceID emulator
//
// The trivial upstream answers a fixed small JSON, so those figures isolate
// what the gateway costs; the emulator checks every signature, as the
// vendor does. The plugin always gets its tickets from the emulator. Every
// variant runs -rounds times, interleaved (the order rotates each round),
// and the report gives medians and per-round ratios. Peak RSS is measured on
// fresh Traefik processes while 20 large photo+video answers stream.
//
//	cd e2e && go run ./benchtraefik -duration 4s -rounds 3
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kycgate/faceidsigner/e2e/loadgen"
	"github.com/kycgate/faceidsigner/faceidtest"
)

const (
	appID      = "IDAXXXXX"
	redisAppID = "IDAREDIS"
	secret     = "bench-secret-0a1b2c3d4e5f"
	orderNo    = "orderNo596551"
	bigOrderNo = "ORDBIG"
	// requestBody is what every throughput request sends (the app's
	// unsigned queryfacerecord; the emulator's bare and pass-through
	// routes send it signed by the app).
	requestBody = `{"orderNo":"orderNo596551"}`
	// mediaBytes is the size of the photo and of the video: base64 makes
	// each 3 MiB, the answer about 6 MiB.
	mediaBytes = 9 << 18
)

// options are the command-line settings.
type options struct {
	duration, warmup time.Duration
	rounds           int
	conc, emuConc    []int
	rssRounds        int
	streams          int
	goBench          []string
	markdown         string
	command          string
}

func main() {
	var o options
	var conc, emuConc, goBench string
	flag.DurationVar(&o.duration, "duration", 4*time.Second, "measured time of each load run")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each run")
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds of every variant")
	flag.StringVar(&conc, "concurrency", "1,16,64", "concurrencies of the trivial-upstream variants")
	flag.StringVar(&emuConc, "emu-concurrency", "16", "concurrencies of the emulator variants")
	flag.IntVar(&o.rssRounds, "rss-rounds", 2, "fresh Traefik processes per route for the RSS figure")
	flag.IntVar(&o.streams, "streams", 20, "concurrent large answers for the RSS figure")
	flag.StringVar(&goBench, "gobench", "", "comma-separated files of go test -bench output to summarise")
	flag.StringVar(&o.markdown, "markdown", "", "file whose generated section gets the figures (BENCHMARKS.md)")
	flag.StringVar(&o.command, "command", "make bench", "command that reproduces the whole run, for the report")
	flag.Parse()
	var err error
	if o.conc, err = parseInts(conc); err == nil {
		o.emuConc, err = parseInts(emuConc)
	}
	if err != nil || o.rounds < 1 || o.duration <= 0 {
		fmt.Fprintln(os.Stderr, "benchtraefik: bad flags:", err)
		flag.Usage()
		os.Exit(2)
	}
	if goBench != "" {
		o.goBench = strings.Split(goBench, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &o); err != nil {
		fmt.Fprintln(os.Stderr, "benchtraefik:", err)
		os.Exit(1)
	}
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a list of positive numbers", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// variant is one route measured under load.
type variant struct {
	key   string // router name and report key
	label string
	path  string
	body  []byte
	redis bool // count Redis commands during the run
}

// bench is the running setup: upstreams, Redis, emulator and Traefik.
type bench struct {
	opts   *options
	emu    *faceidtest.Server
	emuUp  string // emulator behind the prefix-stripping server
	fast   *fastUpstream
	redis  *redisServer
	tr     *traefik
	client *http.Client
	report *report

	// App-signed requests for the emulator's bare and pass-through
	// routes (path after the prefix, body), small and large answer.
	signedPath, bigSignedPath string
	signedBody, bigSignedBody []byte
}

func run(ctx context.Context, o *options) error {
	rep := &report{
		machine: describeMachine(runtime.Version()),
		opts:    o,
		args: fmt.Sprintf("-duration %s -warmup %s -rounds %d -concurrency %s -emu-concurrency %s -rss-rounds %d -streams %d",
			o.duration, o.warmup, o.rounds, joinInts(o.conc), joinInts(o.emuConc), o.rssRounds, o.streams),
		started:  time.Now(),
		samples:  map[string][]sample{},
		goBenchs: nil,
	}
	for _, path := range o.goBench {
		f, err := readGoBench(path)
		if err != nil {
			return err
		}
		rep.goBenchs = append(rep.goBenchs, f)
	}
	fmt.Printf("machine: %d CPUs, %s, %s, load average %s\n", rep.machine.CPUs, rep.machine.CPUModel, rep.machine.GoVersion, rep.machine.LoadAvg)

	b := &bench{opts: o, report: rep, client: loadgen.NewClient(4)}
	b.emu = faceidtest.NewServer()
	defer b.emu.Close()
	b.emu.AddApp(appID, secret)
	b.emu.AddApp(redisAppID, secret)
	b.emu.AddResult(appID, orderNo, faceidtest.Result{})
	big := make([]byte, mediaBytes)
	for i := range big {
		big[i] = byte(i*7 + i>>9)
	}
	b.emu.AddResult(appID, bigOrderNo, faceidtest.Result{Photo: big, Video: big[:mediaBytes:mediaBytes]})
	emuUp := emulatorUpstream(b.emu)
	defer emuUp.Close()
	b.emuUp = emuUp.URL
	b.fast = newFastUpstream()
	defer b.fast.Close()
	var err error
	if b.redis, err = startRedis(); err != nil {
		return err
	}
	defer b.redis.stop()

	if err := b.startTraefik(); err != nil {
		return err
	}
	rep.startup = b.tr.startup
	if err := b.sanity(ctx); err != nil {
		b.tr.stop()
		return err
	}
	err = b.throughput(ctx)
	b.tr.stop()
	if err != nil {
		return err
	}
	if err := b.rss(ctx); err != nil {
		return err
	}
	rep.finished = time.Now()

	text := rep.markdown()
	fmt.Println()
	fmt.Println(text)
	if o.markdown != "" {
		if err := writeGenerated(o.markdown, text); err != nil {
			return err
		}
		fmt.Printf("wrote the figures into %s\n", o.markdown)
	}
	return nil
}

// startTraefik starts a Traefik with every router and waits for them.
func (b *bench) startTraefik() error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	plugins := []localPlugin{
		{alias: "faceidsigner", module: "github.com/kycgate/faceidsigner", dir: root},
		{alias: "passthrough", module: "github.com/kycgate/passthrough", dir: filepath.Join(root, "e2e", "testdata", "passthrough")},
		{alias: "signfloor", module: "github.com/kycgate/signfloor", dir: filepath.Join(root, "e2e", "testdata", "signfloor")},
	}
	began := time.Now()
	tr, err := startTraefik(plugins, b.dynamicConfig(), routerNames)
	if err != nil {
		return err
	}
	tr.startup = time.Since(began)
	b.tr = tr
	return nil
}

// routerNames are the routers of dynamicConfig.
var routerNames = []string{"bare", "pass", "floor", "sign", "redis", "emu-bare", "emu-pass", "emu-sign"}

func (b *bench) dynamicConfig() string {
	router := func(name, prefix, middleware, service string) string {
		mw := ""
		if middleware != "" {
			mw = "      middlewares: [" + middleware + "]\n"
		}
		return fmt.Sprintf("    %s:\n      rule: \"PathPrefix(`%s`)\"\n      entryPoints: [web]\n%s      service: %s\n", name, prefix, mw, service)
	}
	signer := func(app, extra string) string {
		return fmt.Sprintf("      plugin:\n        faceidsigner:\n          appId: %s\n          secret: %s\n          endpoint: %q\n          logLevel: error\n%s",
			app, secret, b.emu.URL, extra)
	}
	service := func(name, url string) string {
		return fmt.Sprintf("    %s:\n      loadBalancer:\n        passHostHeader: false\n        servers:\n          - url: %q\n", name, url)
	}
	return "http:\n  routers:\n" +
		router("bare", "/bare/", "", "fast") +
		router("pass", "/pass/", "pass", "fast") +
		router("floor", "/floor/", "floor", "fast") +
		router("sign", "/sign/", "sign", "fast") +
		router("redis", "/redis/", "signredis", "fast") +
		router("emu-bare", "/emu/bare/", "", "emu") +
		router("emu-pass", "/emu/pass/", "pass", "emu") +
		router("emu-sign", "/emu/sign/", "sign", "emu") +
		"  middlewares:\n" +
		"    pass:\n      plugin:\n        passthrough: {}\n" +
		"    floor:\n      plugin:\n        signfloor: {}\n" +
		"    sign:\n" + signer(appID, "") +
		"    signredis:\n" + signer(redisAppID, fmt.Sprintf("          redisAddress: %q\n", b.redis.addr)) +
		"  services:\n" + service("fast", b.fast.URL) + service("emu", b.emuUp)
}

// post sends one request through Traefik and returns status and body.
func (b *bench) post(path string, body []byte, header http.Header) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, b.tr.url+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header = header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// sanity sends one request per route and checks that each does what its
// figures claim: the plugin routes sign (the trivial upstream sees a signed
// body at the vendor path; the emulator accepts the signature), the other
// routes forward unchanged, Redis holds the shared record.
func (b *bench) sanity(ctx context.Context) error {
	probe := http.Header{probeHeader: {"1"}}
	for _, c := range []struct{ path, wantPrefix, wantInBody string }{
		{"/bare/faceid/queryfacerecord", "/bare/faceid/queryfacerecord " + requestBody, ""},
		{"/pass/faceid/queryfacerecord", "/pass/faceid/queryfacerecord " + requestBody, ""},
		{"/floor/faceid/queryfacerecord", "/api/v2/base/queryfacerecord?orderNo=orderNo596551 {\"appId\":\"IDAFLOOR\"", `"sign":"`},
		{"/sign/faceid/queryfacerecord", "/api/v2/base/queryfacerecord?orderNo=orderNo596551 {\"appId\":\"" + appID + "\"", `"sign":"`},
		{"/redis/faceid/queryfacerecord", "/api/v2/base/queryfacerecord?orderNo=orderNo596551 {\"appId\":\"" + redisAppID + "\"", `"sign":"`},
	} {
		status, answer, err := b.post(c.path, []byte(requestBody), probe)
		if err != nil {
			return fmt.Errorf("sanity check %s: %w", c.path, err)
		}
		got := b.fast.lastProbe()
		if status != http.StatusOK || !strings.HasPrefix(got, c.wantPrefix) || !strings.Contains(got, c.wantInBody) {
			return fmt.Errorf("sanity check %s: status %d (%.200s); upstream saw %q, want it to start with %q", c.path, status, answer, got, c.wantPrefix)
		}
		fmt.Printf("sanity %-32s upstream saw %.110s...\n", c.path, got)
	}
	keys, err := b.redis.client.Do(ctx, "KEYS", "*")
	if err != nil || len(keys.Array) == 0 {
		return fmt.Errorf("sanity check: Redis holds no keys after a request through the shared-store route (%v)", err)
	}
	if err := b.presign(); err != nil {
		return err
	}
	for _, v := range b.emuVariants() {
		status, answer, err := b.post(v.path, v.body, nil)
		if err != nil {
			return fmt.Errorf("sanity check %s: %w", v.path, err)
		}
		if status != http.StatusOK || vendorCode(answer) != faceidtest.CodeOK {
			return fmt.Errorf("sanity check %s: status %d, answer %.300s", v.path, status, answer)
		}
		fmt.Printf("sanity %-32s emulator answered code 0\n", strings.SplitN(v.path, "?", 2)[0])
	}
	return nil
}

// presign makes the app-signed bodies of the emulator's bare and
// pass-through routes with the ticket the plugin holds (fetched by a first
// request through the plugin route).
func (b *bench) presign() error {
	status, answer, err := b.post("/emu/sign/faceid/queryfacerecord", []byte(requestBody), nil)
	if err != nil || status != http.StatusOK {
		return fmt.Errorf("first request through /emu/sign/: status %d, %v: %.300s", status, err, answer)
	}
	ticket, err := pluginTicket(b.emu, b.emuUp, appID, orderNo)
	if err != nil {
		return err
	}
	b.signedPath, b.signedBody, err = presigned(appID, ticket, orderNo, "")
	if err != nil {
		return err
	}
	b.bigSignedPath, b.bigSignedBody, err = presigned(appID, ticket, bigOrderNo, "1")
	return err
}
