#!/usr/bin/env bash
# build-traefik.sh builds the Traefik binary that the end-to-end tests drive,
# into <repo>/.bin/traefik, from the Traefik version pinned in e2e/go.mod
# (a `tool` requirement, so the build uses the same module graph as the tests).
#
# It rebuilds only when the binary is missing or was built from another
# Traefik or Yaegi version (e2e/go.mod can raise Yaegi above what Traefik
# pins, which changes how plugins run) or with another Go toolchain; the
# binary's own build info
# (`go version -m`) is the truth, .bin/traefik.version is a record for humans.
# Needs nothing but Go and bash. Safe to run from any directory and from
# several processes at once (a lock directory serialises builds).
#
# Usage: scripts/build-traefik.sh [--force]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="$root/.bin"
bin="$bin_dir/traefik"
stamp="$bin_dir/traefik.version"
lock="$bin_dir/.traefik.build.lock"
pkg="github.com/traefik/traefik/v3/cmd/traefik"
mod="github.com/traefik/traefik/v3"
yaegi="github.com/traefik/yaegi"

log() { echo "build-traefik: $*" >&2; }

command -v go >/dev/null 2>&1 || { log "Go is not on PATH; install Go (see e2e/go.mod for the version) and retry"; exit 1; }

force=0
if [ "${1:-}" = "--force" ]; then force=1; fi

go_version="$(cd "$root/e2e" && go env GOVERSION)"
want_traefik="$(cd "$root/e2e" && go list -m -f '{{.Version}}' "$mod")"
want_yaegi="$(cd "$root/e2e" && go list -m -f '{{.Version}}' "$yaegi")"
want="traefik $want_traefik yaegi $want_yaegi $go_version"

# version_of prints the version of module $2 in the build info $1.
version_of() {
	printf '%s\n' "$1" | awk -v m="$2" '($1=="dep" || $1=="mod") && $2==m {print $3}'
}

# have prints "traefik <v> yaegi <v> <goversion>" read from the binary's build info.
have() {
	[ -x "$bin" ] || return 0
	local info tv yv gv
	info="$(go version -m "$bin" 2>/dev/null)" || return 0
	gv="$(printf '%s\n' "$info" | awk 'NR==1 {print $2}')"
	tv="$(version_of "$info" "$mod")"
	yv="$(version_of "$info" "$yaegi")"
	[ -n "$tv" ] && [ -n "$yv" ] && [ -n "$gv" ] && echo "traefik $tv yaegi $yv $gv"
	return 0
}

up_to_date() { [ "$force" = 0 ] && [ "$(have)" = "$want" ]; }

if up_to_date; then
	[ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] || echo "$want" >"$stamp"
	log "$bin is up to date ($want)"
	echo "$bin"
	exit 0
fi

mkdir -p "$bin_dir"

# Serialise concurrent builds (parallel `go test` packages): the first takes the
# lock, the others wait and then find the binary up to date. A lock left by a
# dead process is taken over.
while ! mkdir "$lock" 2>/dev/null; do
	owner="$(cat "$lock/pid" 2>/dev/null || true)"
	if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then
		log "removing stale lock of dead process $owner"
		rm -rf "$lock"
		continue
	fi
	log "another build (pid ${owner:-?}) is running; waiting"
	sleep 5
done
echo $$ >"$lock/pid"
trap 'rm -rf "$lock"' EXIT

if up_to_date; then
	echo "$want" >"$stamp"
	log "$bin was built meanwhile ($want)"
	echo "$bin"
	exit 0
fi

log "building $pkg@$want_traefik with $go_version into $bin (cold build: 10-15 min on 2 cores)"
tmp="$bin.tmp.$$"
start=$(date +%s)
if ! (cd "$root/e2e" && go build -o "$tmp" "$pkg"); then
	rm -f "$tmp"
	log "go build failed; see the output above"
	exit 1
fi
mv -f "$tmp" "$bin"
echo "$want" >"$stamp"
log "built $bin ($want) in $(($(date +%s) - start))s"
echo "$bin"
