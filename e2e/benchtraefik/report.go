package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Markers of the generated section of BENCHMARKS.md.
const (
	beginMarker = "<!-- BEGIN GENERATED: make bench -->"
	endMarker   = "<!-- END GENERATED: make bench -->"
)

// Goals of the issue that asked for these figures.
const (
	goalVsPass   = 0.95
	goalVsBare   = 0.85
	goalAddedP50 = 0.1 // ms
	// headlineConc is the concurrency of the headline throughput ratios.
	headlineConc = 16
)

// report collects every figure of one run.
type report struct {
	machine           machine
	opts              *options
	args              string
	started, finished time.Time
	startup           time.Duration
	samples           map[string][]sample // by sampleKey
	rss               []rssRun
	goBenchs          []*goBenchFile
}

func (r *report) add(key string, s sample) { r.samples[key] = append(r.samples[key], s) }

// stat is the median of a per-round figure and its range.
type stat struct {
	med, lo, hi float64
	n           int
}

func statOf(xs []float64) stat {
	lo, hi := spread(xs)
	return stat{med: median(xs), lo: lo, hi: hi, n: len(xs)}
}

func (s stat) format(f string) string {
	if s.n == 0 {
		return "n/a"
	}
	if s.n == 1 {
		return fmt.Sprintf(f, s.med)
	}
	return fmt.Sprintf(f+" ["+f+"–"+f+"]", s.med, s.lo, s.hi)
}

// figure returns one figure of every run of a variant.
func (r *report) figure(key string, conc int, f func(sample) float64) stat {
	var xs []float64
	for _, s := range r.samples[sampleKey(key, conc)] {
		xs = append(xs, f(s))
	}
	return statOf(xs)
}

// perRound combines a variant's and a baseline's runs of the same round,
// which ran minutes apart at most, and returns the statistic of the results.
func (r *report) perRound(key, base string, conc int, f func(v, b sample) float64) stat {
	bases := map[int]sample{}
	for _, s := range r.samples[sampleKey(base, conc)] {
		bases[s.round] = s
	}
	var xs []float64
	for _, s := range r.samples[sampleKey(key, conc)] {
		if b, ok := bases[s.round]; ok {
			xs = append(xs, f(s, b))
		}
	}
	return statOf(xs)
}

func rpsRatio(v, b sample) float64     { return v.rps / b.rps }
func p50Added(v, b sample) float64     { return ms(v.p50) - ms(b.p50) }
func cpuAdded(v, b sample) float64     { return us(v.traefikCPU) - us(b.traefikCPU) }
func cpuRatio(v, b sample) float64     { return float64(b.traefikCPU) / float64(v.traefikCPU) }
func rpsOf(s sample) float64           { return s.rps }
func p50Of(s sample) float64           { return ms(s.p50) }
func p99Of(s sample) float64           { return ms(s.p99) }
func traefikCPUOf(s sample) float64    { return us(s.traefikCPU) }
func benchCPUOf(s sample) float64      { return us(s.benchCPU) }
func redisPerRequest(s sample) float64 { return float64(s.redisOps) / float64(s.sent) }

func yesNo(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

// markdown renders the generated section.
func (r *report) markdown() string {
	var b strings.Builder
	o := r.opts
	m := r.machine
	fmt.Fprintf(&b, "Measured %s in one run of `%s` (%s). Machine: nproc %d, %s, %s, Linux %s; load average at the start %s",
		r.started.UTC().Format("2006-01-02 15:04 UTC"), o.command, r.finished.Sub(r.started).Round(time.Second),
		m.CPUs, m.CPUModel, m.GoVersion, m.Kernel, m.LoadAvg)
	if m.LoadAvg != "" {
		b.WriteString(" (anything above 0 is other work sharing the CPUs)")
	}
	fmt.Fprintf(&b, ". Load generator, upstreams, Redis and Traefik all share those CPUs. Traefik with both plugins was ready %.1f s after exec.\n\n",
		r.startup.Seconds())

	r.writeHeadline(&b)
	r.writeThroughput(&b)
	r.writeRedis(&b)
	r.writeGoBench(&b)
	r.writeRSS(&b)

	b.WriteString("#### Commands\n\n")
	fmt.Fprintf(&b, "- Everything above: `%s`.\n", o.command)
	fmt.Fprintf(&b, "- Through Traefik (throughput, latency, Redis, RSS): `cd e2e && go run ./benchtraefik %s`.\n", r.args)
	for _, f := range r.goBenchs {
		if f.Command != "" {
			fmt.Fprintf(&b, "- `%s`\n", f.Command)
		}
	}
	return b.String()
}

func (r *report) writeHeadline(b *strings.Builder) {
	c := headlineConc
	if !r.has("sign", c) {
		c = r.opts.conc[len(r.opts.conc)-1]
	}
	vsBare := r.perRound("sign", "bare", c, rpsRatio)
	vsPass := r.perRound("sign", "pass", c, rpsRatio)
	unloaded := r.opts.conc[0]
	addBare := r.perRound("sign", "bare", unloaded, p50Added)
	addPass := r.perRound("sign", "pass", unloaded, p50Added)
	addBareC := r.perRound("sign", "bare", c, p50Added)
	floorVsPass := r.perRound("floor", "pass", c, rpsRatio)
	fmt.Fprintf(b, "#### Headline (trivial upstream, concurrency %d, median of %d interleaved rounds)\n\n", c, vsBare.n)
	b.WriteString("```\n")
	fmt.Fprintf(b, "throughput ratio vs bare Traefik: %.3f\n", vsBare.med)
	fmt.Fprintf(b, "throughput ratio vs pass-through plugin: %.3f\n", vsPass.med)
	fmt.Fprintf(b, "p50 added latency vs bare Traefik: %.3f ms at concurrency %d, %.3f ms at concurrency %d\n", addBare.med, unloaded, addBareC.med, c)
	fmt.Fprintf(b, "p50 added latency vs pass-through plugin: %.3f ms at concurrency %d\n", addPass.med, unloaded)
	if floorVsPass.n > 0 {
		fmt.Fprintf(b, "floor: minimal signing plugin vs pass-through plugin: %.3f\n", floorVsPass.med)
	}
	b.WriteString("```\n\n")
	b.WriteString("| goal | target | measured | |\n| --- | --- | --- | --- |\n")
	fmt.Fprintf(b, "| throughput vs pass-through plugin (c=%d) | ≥ %.2f | %s | %s |\n", c, goalVsPass, vsPass.format("%.3f"), yesNo(vsPass.med >= goalVsPass))
	fmt.Fprintf(b, "| throughput vs bare Traefik (c=%d) | ≥ %.2f | %s | %s |\n", c, goalVsBare, vsBare.format("%.3f"), yesNo(vsBare.med >= goalVsBare))
	fmt.Fprintf(b, "| added p50 vs bare Traefik (c=%d) | ≤ %.1f ms | %s ms | %s |\n\n", unloaded, goalAddedP50, addBare.format("%.3f"), yesNo(addBare.med <= goalAddedP50))
	b.WriteString("Ranges in brackets are the smallest and largest per-round value; a ratio is taken between runs of the same round.\n\n")
	if floorVsPass.n > 0 {
		fmt.Fprintf(b, "The floor (`e2e/testdata/signfloor`) is the least per-request work of any Yaegi plugin that signs (read the body, nonce, sort, SHA-1, write the body, no checks, no ticket cache, no held answer): its throughput against the pass-through plugin, %s, is the most that interpretation leaves to a signing plugin.\n\n", floorVsPass.format("%.3f"))
	}
}

func (r *report) has(key string, conc int) bool { return len(r.samples[sampleKey(key, conc)]) > 0 }

func (r *report) writeThroughput(b *strings.Builder) {
	b.WriteString("#### Through Traefik\n\n")
	fmt.Fprintf(b, "Each run: %s of load after %s of warmup, closed loop, keep-alive, POST `%s`. Medians of %d rounds. CPU columns are CPU time (user+system, from /proc) divided by requests: Traefik's, and the benchmark process's (load generator and upstream).\n\n",
		r.opts.duration, r.opts.warmup, requestBody, r.opts.rounds)
	b.WriteString("| upstream | conc. | route | req/s | p50 ms | p99 ms | Traefik CPU µs/req | client+upstream CPU µs/req |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	type group struct {
		upstream string
		concs    []int
		variants []variant
	}
	fake := &bench{}
	groups := []group{
		{"trivial", r.opts.conc, fake.fastVariants()},
		{"emulator", r.opts.emuConc, fake.emuVariants()},
	}
	for _, g := range groups {
		for _, c := range g.concs {
			for _, v := range g.variants {
				if !r.has(v.key, c) {
					continue
				}
				fmt.Fprintf(b, "| %s | %d | %s | %.0f | %.3f | %.3f | %.1f | %.1f |\n", g.upstream, c, v.label,
					r.figure(v.key, c, rpsOf).med, r.figure(v.key, c, p50Of).med, r.figure(v.key, c, p99Of).med,
					r.figure(v.key, c, traefikCPUOf).med, r.figure(v.key, c, benchCPUOf).med)
			}
		}
	}
	b.WriteString("\nThe plugin against its baselines (per-round ratios and differences, median [range]). \"Traefik CPU capacity ratio\" is baseline CPU per request over the plugin's: the throughput ratio Traefik would reach if it had the CPUs to itself.\n\n")
	b.WriteString("| upstream | conc. | throughput vs bare | throughput vs pass-through | p50 added vs bare, ms | p50 added vs pass-through, ms | Traefik CPU added vs bare, µs/req | Traefik CPU capacity ratio vs bare |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, g := range groups {
		sign, bare, pass := "sign", "bare", "pass"
		if g.upstream == "emulator" {
			sign, bare, pass = "emu-sign", "emu-bare", "emu-pass"
		}
		for _, c := range g.concs {
			if !r.has(sign, c) {
				continue
			}
			fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", g.upstream, c,
				r.perRound(sign, bare, c, rpsRatio).format("%.3f"), r.perRound(sign, pass, c, rpsRatio).format("%.3f"),
				r.perRound(sign, bare, c, p50Added).format("%.3f"), r.perRound(sign, pass, c, p50Added).format("%.3f"),
				r.perRound(sign, bare, c, cpuAdded).format("%.1f"), r.perRound(sign, bare, c, cpuRatio).format("%.3f"))
		}
	}
	b.WriteString("\n")
}

func (r *report) writeRedis(b *strings.Builder) {
	b.WriteString("#### Shared store (Redis) against in-process tickets\n\n")
	b.WriteString("Same plugin, same upstream, a router whose middleware sets `redisAddress` (its own app id, so its ticket cache is its own). Redis commands are counted with `INFO commandstats` before and after each run (INFO itself left out), over the whole run including warmup.\n\n")
	b.WriteString("| conc. | throughput Redis / in-process | p50 added, ms | Traefik CPU added, µs/req | Redis commands per request | Redis commands in the run |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, c := range r.opts.conc {
		if !r.has("redis", c) {
			continue
		}
		var cmds []string
		var total int64
		for _, s := range r.samples[sampleKey("redis", c)] {
			total += s.redisOps
			if s.redisWhat != "" {
				cmds = append(cmds, s.redisWhat)
			}
		}
		what := "none"
		if len(cmds) > 0 {
			what = strings.Join(cmds, "; ")
		}
		fmt.Fprintf(b, "| %d | %s | %s | %s | %s | %d over %d runs (%s) |\n", c,
			r.perRound("redis", "sign", c, rpsRatio).format("%.3f"), r.perRound("redis", "sign", c, p50Added).format("%.3f"),
			r.perRound("redis", "sign", c, cpuAdded).format("%.1f"), r.figure("redis", c, redisPerRequest).format("%.5f"),
			total, len(r.samples[sampleKey("redis", c)]), what)
	}
	b.WriteString("\n")
}

func (r *report) writeGoBench(b *strings.Builder) {
	if len(r.goBenchs) == 0 {
		return
	}
	b.WriteString("#### CPU time per request inside the plugin (Go benchmarks)\n\n")
	b.WriteString("One goroutine calls the middleware's ServeHTTP in a loop with a warm ticket and a next handler that drains the body and writes the small answer; no network. Median [range] of the runs.\n\n")
	b.WriteString("| benchmark | ns/op | B/op | allocs/op | runs |\n| --- | --- | --- | --- | --- |\n")
	med := map[string]float64{}
	for _, f := range r.goBenchs {
		for _, g := range f.Benches {
			s := statOf(g.NsOp)
			med[g.Name] = s.med
			fmt.Fprintf(b, "| %s | %s | %.0f | %.0f | %d |\n", g.Name, s.format("%.0f"), median(g.BytesOp), median(g.Allocs), s.n)
		}
	}
	b.WriteString("\n")
	sn, pn := med["BenchmarkSignNative"], med["BenchmarkPassthroughNative"]
	sy, py := med["BenchmarkSignYaegi"], med["BenchmarkPassthroughYaegi"]
	if sn > 0 && pn > 0 && sy > 0 && py > 0 {
		native := sn - pn
		yaegi := sy - py
		fmt.Fprintf(b, "- The plugin's own work per signed request: **%.1f µs under yaegi** (SignYaegi − PassthroughYaegi), %.1f µs compiled natively (SignNative − PassthroughNative): yaegi is %.0f× slower.\n",
			yaegi/1000, native/1000, yaegi/native)
		fmt.Fprintf(b, "- The interpreter hop alone (pass-through plugin under yaegi, same harness): %.1f µs per request.\n", py/1000)
		if fy := med["BenchmarkSignFloorYaegi"]; fy > 0 {
			fmt.Fprintf(b, "- The floor (`e2e/testdata/signfloor`, the least work of any signing plugin) under yaegi: %.1f µs per request beyond the hop; faceidsigner's checks, ticket cache and held answer cost %.1f µs more.\n", (fy-py)/1000, (sy-fy)/1000)
		}
		b.WriteString("- The native benchmarks build a fresh httptest request and recorder per iteration, the yaegi ones reuse one request and a discarding writer: compare each with its own baseline, as above, not across.\n\n")
	}
}

func (r *report) writeRSS(b *strings.Builder) {
	if len(r.rss) == 0 {
		return
	}
	fmt.Fprintf(b, "#### Peak Traefik RSS while %d large answers stream\n\n", r.opts.streams)
	size := r.rss[0].answerBytes
	fmt.Fprintf(b, "Emulator result with a %.2f MiB photo and a %.2f MiB video (`getFile` \"1\"): a %.2f MiB answer (base64), read by %d clients at once at 64 KiB every 5 ms. Each row is a fresh Traefik (same configuration as above) after one such answer read at full speed; RSS is sampled every 2 ms from /proc. Held answers would need %.0f MiB.\n\n",
		mib(mediaBytes), mib(mediaBytes), mib(int64(size)), r.opts.streams, mib(int64(size*r.opts.streams)))
	b.WriteString("| route | RSS before, MiB | peak, MiB | growth, MiB | streaming took |\n| --- | --- | --- | --- | --- |\n")
	peaks := map[string][]float64{}
	growth := map[string][]float64{}
	for _, x := range r.rss {
		label := "bare Traefik (app signs)"
		if x.route == "emu-sign" {
			label = "faceidsigner"
		}
		fmt.Fprintf(b, "| %s | %.1f | %.1f | %.1f | %s |\n", label, mib(x.before), mib(x.peak), mib(x.peak-x.before), x.streamElapsed.Round(time.Millisecond))
		peaks[x.route] = append(peaks[x.route], mib(x.peak))
		growth[x.route] = append(growth[x.route], mib(x.peak-x.before))
	}
	fmt.Fprintf(b, "\npeak RSS through the plugin: %.1f MiB (growth %.1f MiB); through the bare route: %.1f MiB (growth %.1f MiB); medians.\n\n",
		median(peaks["emu-sign"]), median(growth["emu-sign"]), median(peaks["emu-bare"]), median(growth["emu-bare"]))
}

// writeGenerated replaces the generated section of the Markdown file at
// path with text, or appends the section when the file has no markers.
func writeGenerated(path, text string) error {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	out, err := replaceGenerated(string(data), text)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, []byte(out), 0o644)
}

func replaceGenerated(doc, text string) (string, error) {
	section := beginMarker + "\n\n" + strings.TrimSpace(text) + "\n\n" + endMarker
	i := strings.Index(doc, beginMarker)
	j := strings.Index(doc, endMarker)
	switch {
	case i < 0 && j < 0:
		if doc != "" && !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		if doc != "" {
			doc += "\n"
		}
		return doc + section + "\n", nil
	case i < 0 || j < i:
		return "", errors.New("the generated-section markers are broken: want " + beginMarker + " before " + endMarker)
	}
	return doc[:i] + section + doc[j+len(endMarker):], nil
}
