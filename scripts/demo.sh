#!/usr/bin/env bash
# demo.sh (make demo): a real Traefik with the faceidsigner plugin signs an
# unsigned request to the FaceID emulator, and prints the vendor's answer.
#
#   1. builds (or reuses) .bin/traefik with scripts/build-traefik.sh and
#      .bin/faceid-emulator from cmd/faceid-emulator;
#   2. starts the emulator on a free loopback port with one app, its secret
#      and a registered order with a small photo and video;
#   3. lays out a temporary Traefik working directory with this checkout as a
#      local plugin, and the shipped examples/file-provider/static-local.yml
#      and dynamic.yml with the vendor URL, the secret file and the ports
#      replaced;
#   4. starts Traefik, waits for /ping and the router, and sends the request
#      an internal app would send, without appId, nonce or sign;
#   5. stops everything it started. It exits non-zero unless the vendor's
#      answer has code "0".
#
# Needs Go, bash and curl (without curl, a small Go client from
# e2e/cmd/democlient is built instead; DEMO_HTTP_CLIENT=go forces it). Run
# from anywhere.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="$root/.bin"
app_id="IDAXXXXX"
order="orderNo596551"
examples="$root/examples/file-provider"
vendor_literal="https://miniprogram-kyc.tencentcloudapi.com"
secret_literal="/etc/traefik/faceid-secret"
port_literal='":8081"'
dynamic_literal="/etc/traefik/dynamic.yml"

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "Go is not on PATH; install Go and retry"

work="$(mktemp -d "${TMPDIR:-/tmp}/faceidsigner-demo.XXXXXX")"
emu_pid=""
traefik_pid=""
cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if [ -n "$traefik_pid" ]; then kill "$traefik_pid" 2>/dev/null || true; fi
	if [ -n "$emu_pid" ]; then kill "$emu_pid" 2>/dev/null || true; fi
	if [ -n "$traefik_pid" ]; then wait "$traefik_pid" 2>/dev/null || true; fi
	if [ -n "$emu_pid" ]; then wait "$emu_pid" 2>/dev/null || true; fi
	if [ "$status" != 0 ]; then
		for log in "$work"/*.log; do
			[ -s "$log" ] || continue
			printf '\n--- last lines of %s ---\n' "$(basename "$log")" >&2
			tail -n 25 "$log" >&2
		done
	fi
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# http URL [DATA] -> prints the body; "http -s OUT URL [DATA]" writes the body
# to OUT and prints the status code. curl if present, else democlient.
client=""
if [ "${DEMO_HTTP_CLIENT:-}" = go ] || ! command -v curl >/dev/null 2>&1; then
	client="$bin_dir/democlient"
fi
http() {
	local out="" url data
	if [ "$1" = "-s" ]; then out="$2"; shift 2; fi
	url="$1"
	data="${2:-}"
	if [ -z "$client" ]; then
		local args=(-sS --max-time 30)
		[ -n "$data" ] && args+=(-X POST -H 'Content-Type: application/json' --data-binary "$data")
		if [ -n "$out" ]; then
			curl "${args[@]}" -o "$out" -w '%{http_code}' "$url"
		else
			curl "${args[@]}" -f "$url"
		fi
	else
		local args=()
		[ -n "$data" ] && args+=(-d "$data")
		if [ -n "$out" ]; then
			"$client" ${args[@]+"${args[@]}"} -o "$out" -w "$url"
		else
			"$client" ${args[@]+"${args[@]}"} -f "$url"
		fi
	fi
}

# wait_for WHAT SECONDS COMMAND...: runs COMMAND every 0.2 s until it succeeds.
wait_for() {
	local what="$1" limit="$2"
	shift 2
	local tries=$((limit * 5))
	while ! "$@" >/dev/null 2>&1; do
		tries=$((tries - 1))
		if [ "$tries" -le 0 ]; then die "$what did not happen within ${limit}s"; fi
		if [ -n "$traefik_pid" ] && ! kill -0 "$traefik_pid" 2>/dev/null; then die "Traefik exited"; fi
		sleep 0.2
	done
}

# free_port prints a loopback TCP port nobody listens on (bash's /dev/tcp:
# a refused connection means free). Another process may take it meanwhile;
# good enough for a demo.
taken_ports=" "
free_port() {
	local p
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		case "$taken_ports" in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			taken_ports="$taken_ports$p "
			echo "$p"
			return 0
		fi
	done
	die "cannot find a free loopback port"
}

step "Building Traefik (reused when up to date), the FaceID emulator${client:+ and a small Go HTTP client (instead of curl)}"
traefik="$("$root/scripts/build-traefik.sh" 2>"$work/build.log" | tail -n 1)" || die "scripts/build-traefik.sh failed: $(cat "$work/build.log")"
[ -x "$traefik" ] || die "scripts/build-traefik.sh did not print a Traefik binary path"
mkdir -p "$bin_dir"
(cd "$root" && go build -o "$bin_dir/faceid-emulator" ./cmd/faceid-emulator) >"$work/build.log" 2>&1 ||
	die "building cmd/faceid-emulator failed: $(cat "$work/build.log")"
if [ -n "$client" ]; then
	(cd "$root/e2e" && go build -o "$client" ./cmd/democlient) >"$work/build.log" 2>&1 ||
		die "building e2e/cmd/democlient failed: $(cat "$work/build.log")"
fi
echo "    $traefik ($(cat "$bin_dir/traefik.version" 2>/dev/null || echo "version unknown"))"

step "Starting the FaceID emulator (app $app_id, order $order)"
secret="demo$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$secret" >"$work/faceid-secret"
chmod 600 "$work/faceid-secret"
"$bin_dir/faceid-emulator" -listen 127.0.0.1:0 -app "$app_id" -secret "$secret" -order "$order" \
	-photo-bytes 30000 -video-bytes 60000 >"$work/emulator.log" 2>&1 &
emu_pid=$!
wait_for "the emulator's start" 15 grep -q 'listening on http://' "$work/emulator.log"
vendor_url="$(sed -n 's|.*listening on \(http://[0-9.:]*\).*|\1|p' "$work/emulator.log" | head -n 1)"
[ -n "$vendor_url" ] || die "cannot read the emulator's address from its output"
echo "    $vendor_url stands in for $vendor_literal"

step "Laying out Traefik's working directory from examples/file-provider/static-local.yml and dynamic.yml"
for f in static-local.yml dynamic.yml; do
	[ -f "$examples/$f" ] || die "examples/file-provider/$f is missing"
done
grep -qF "$port_literal" "$examples/static-local.yml" || die 'static-local.yml no longer has the entry point address ":8081" this demo replaces'
grep -qF "$dynamic_literal" "$examples/static-local.yml" || die "static-local.yml no longer reads /etc/traefik/dynamic.yml"
grep -qF "$vendor_literal" "$examples/dynamic.yml" || die "dynamic.yml no longer has the vendor URL $vendor_literal"
grep -qF "$secret_literal" "$examples/dynamic.yml" || die "dynamic.yml no longer has the secret file $secret_literal"
web_port="$(free_port)"
api_port="$(free_port)"
mkdir -p "$work/plugins-local/src/github.com/kycgate"
ln -s "$root" "$work/plugins-local/src/github.com/kycgate/faceidsigner"
# static: the entry point on a free loopback port, the dynamic file in the
# working directory, abortOnPluginFailure on, /ping and the API on a second
# loopback port ("traefik" entry point) to know when it is ready, no colours
# in the log, no calls home.
{
	while IFS= read -r line || [ -n "$line" ]; do
		line="${line//"$port_literal"/"\"127.0.0.1:$web_port\""}"
		line="${line//"$dynamic_literal"/$work/dynamic.yml}"
		line="${line//"# abortOnPluginFailure: true"/abortOnPluginFailure: true}"
		printf '%s\n' "$line"
		if [ "$line" = "entryPoints:" ]; then
			printf '  traefik:\n    address: "127.0.0.1:%s"\n' "$api_port"
		fi
		if [ "$line" = "log:" ]; then
			printf '  noColor: true\n'
		fi
	done <"$examples/static-local.yml"
	# Top-level keys the example does not set (a repeated key is an error).
	grep -q '^ping:' "$examples/static-local.yml" || printf 'ping: {}\n'
	grep -q '^api:' "$examples/static-local.yml" || printf 'api:\n  insecure: true\n  dashboard: false\n'
	grep -q '^global:' "$examples/static-local.yml" || printf 'global:\n  checkNewVersion: false\n  sendAnonymousUsage: false\n'
} >"$work/traefik.yml"
{
	while IFS= read -r line || [ -n "$line" ]; do
		line="${line//"$vendor_literal"/$vendor_url}"
		line="${line//"$secret_literal"/$work/faceid-secret}"
		printf '%s\n' "$line"
	done <"$examples/dynamic.yml"
} >"$work/dynamic.yml"
echo "    $work"

step "Starting Traefik (entry point faceid on 127.0.0.1:$web_port)"
(cd "$work" && exec "$traefik" --configFile="$work/traefik.yml") >"$work/traefik.log" 2>&1 &
traefik_pid=$!
wait_for "Traefik's /ping" 60 http "http://127.0.0.1:$api_port/ping"
router_enabled() {
	http "http://127.0.0.1:$api_port/api/http/routers/faceid-queryfacerecord@file" | grep -q '"status":"enabled"'
}
wait_for "the router faceid-queryfacerecord" 30 router_enabled
echo "    ready; router faceid-queryfacerecord -> middleware faceid-sign -> $vendor_url"

request="{\"orderNo\":\"$order\",\"getFile\":\"1\"}"
url="http://127.0.0.1:$web_port/faceid/queryfacerecord"
step "An internal app sends the unsigned request"
echo "    curl -sS -X POST $url -d '$request'"
status="$(http -s "$work/answer.json" "$url" "$request")" || die "the request failed"

step "The vendor's answer (HTTP $status, $(wc -c <"$work/answer.json" | tr -d ' ') bytes; base64 photo and video cut to 40 characters)"
sed -E 's/"(photo|video)":"([A-Za-z0-9+/=]{40})[A-Za-z0-9+/=]*"/"\1":"\2..."/g' "$work/answer.json"
echo
code="$(grep -o '"code":"[^"]*"' "$work/answer.json" | head -n 1 | sed 's/"code":"\(.*\)"/\1/')"
if [ "$status" != 200 ] || [ "$code" != 0 ]; then
	die "expected HTTP 200 with code \"0\", got HTTP $status with code \"$code\""
fi
step "Signed by the plugin and accepted by the vendor (code \"0\"); the app never saw the secret, token or ticket"
