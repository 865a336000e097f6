#!/usr/bin/env bash
# bench.sh (make bench): every performance figure of BENCHMARKS.md, measured
# in one run, printed and written into BENCHMARKS.md's generated section.
#
#   1. Go benchmarks: the plugin's CPU time per signed request compiled
#      natively (root package) and under yaegi as Traefik runs it
#      (e2e/pluginyaegi), each against its pass-through baseline;
#   2. e2e/benchtraefik: one real Traefik (.bin/traefik) with bare,
#      pass-through and faceidsigner routes (in-process and Redis tickets) in
#      front of a trivial upstream and of the FaceID emulator: throughput,
#      p50/p99 latency and CPU per request at several concurrencies, in
#      interleaved rounds; Redis commands per request; then Traefik's peak
#      RSS while large photo+video answers stream, on fresh processes.
#
# Takes about 7 minutes on 2 CPUs. Needs Go and redis-server (not running:
# a private one is started on a free port). Settings, from the environment:
#   BENCH_COUNT (5) and BENCH_TIME (1s): go test -count and -benchtime
#   BENCH_DURATION (3s), BENCH_WARMUP (1s), BENCH_ROUNDS (5),
#   BENCH_CONCURRENCY (1,16,64), BENCH_EMU_CONCURRENCY (16): load runs
#   BENCH_MARKDOWN (BENCHMARKS.md; empty: print only)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
count="${BENCH_COUNT:-5}"
benchtime="${BENCH_TIME:-1s}"
duration="${BENCH_DURATION:-3s}"
warmup="${BENCH_WARMUP:-1s}"
rounds="${BENCH_ROUNDS:-5}"
concurrency="${BENCH_CONCURRENCY:-1,16,64}"
emu_concurrency="${BENCH_EMU_CONCURRENCY:-16}"
markdown="${BENCH_MARKDOWN-$root/BENCHMARKS.md}"

command -v go >/dev/null 2>&1 || { echo "bench: Go is not on PATH" >&2; exit 1; }
command -v redis-server >/dev/null 2>&1 || {
	echo "bench: redis-server is not on PATH; the shared-store figures need it (Debian/Ubuntu: apt-get install redis-server)" >&2
	exit 1
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# gobench DIR OUTFILE PKG REGEXP runs one package's benchmarks, keeps the
# command and the result lines in OUTFILE and shows the result lines.
gobench() {
	local dir="$1" out="$2" pkg="$3" re="$4"
	local cmd="go test -run '^\$' -bench '$re' -benchmem -benchtime $benchtime -count $count $pkg"
	local shown="$cmd"
	if [ "$dir" != "$root" ]; then shown="cd ${dir#"$root"/} && $cmd"; fi
	echo "command: $shown" >"$out"
	echo "\$ $shown"
	# The native benchmarks let the plugin log "ticket fetched" to stdout,
	# which splits a result line in two ("BenchmarkX-2 <log>", then the
	# numbers): join them, and keep only what go test reports.
	(cd "$dir" && eval "$cmd") | awk '
		/^Benchmark[^ \t]*[ \t]+[0-9]+[ \t]/ { print; pending = ""; next }
		/^Benchmark/ { pending = $1; next }
		pending != "" && /^[ \t]*[0-9]+[ \t]+[0-9.]+ ns\/op/ { sub(/^[ \t]*/, ""); print pending "\t" $0; pending = ""; next }
		/^(goos|goarch|pkg|cpu|PASS|ok|FAIL|---)/ { print }
	' | tee -a "$out"
	if grep -q '^FAIL\|^--- FAIL' "$out"; then
		echo "bench: $pkg benchmarks failed" >&2
		exit 1
	fi
}

began=$(date +%s)
echo "== machine: nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(go env GOVERSION), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "== 1. CPU time per request inside the plugin (Go benchmarks)"
gobench "$root" "$tmp/native.txt" . '^Benchmark(Sign|Passthrough)Native$'
gobench "$root/e2e" "$tmp/yaegi.txt" ./pluginyaegi '^Benchmark(Sign|SignFloor|Passthrough)Yaegi$'

echo
echo "== 2. Through Traefik: throughput, latency, Redis, RSS"
args=(-duration "$duration" -warmup "$warmup" -rounds "$rounds"
	-concurrency "$concurrency" -emu-concurrency "$emu_concurrency")
(cd "$root/e2e" && go run ./benchtraefik "${args[@]}" \
	-gobench "$tmp/native.txt,$tmp/yaegi.txt" -markdown "$markdown" -command "make bench")
echo "bench: done in $(( $(date +%s) - began ))s"
