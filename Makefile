# faceidsigner: make demo runs the main job, make test runs every test.
SHELL := /bin/bash
GO ?= go
FUZZTIME ?= 20000x

.PHONY: test test-unit test-e2e check fuzz demo bench traefik vendor

## test: every check and test (what CI runs)
test: check test-unit fuzz test-e2e

## check: formatting, vet, vendor/ in sync with go.mod
check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^vendor/')); \
	  if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	cd e2e && $(GO) vet ./...
	@tmp=$$(mktemp -d); $(GO) mod vendor -o $$tmp/vendor && \
	  if ! diff -r $$tmp/vendor vendor >/dev/null; then \
	    echo "vendor/ drifted from go.mod: run 'go mod vendor' and commit"; rm -rf $$tmp; exit 1; fi; rm -rf $$tmp
	@grep -qE 'github.com/traefik/(yaegi|traefik)' go.mod && { echo "root go.mod must not require yaegi or traefik"; exit 1; } || true

## test-unit: natively compiled tests, with the race detector
test-unit:
	$(GO) test -race -count=1 ./...

## fuzz: each fuzz target briefly. The budget is a count of executions,
## not a duration: with -fuzztime <duration>, Go 1.26's fuzz coordinator can
## fail a target with a bare "context deadline exceeded" as the time runs out
## on a loaded machine (golang/go#75804, fixed in Go 1.27; seen on this
## project's CI). A failure prints the fuzzer's output.
fuzz:
	@set -e; out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for pkg in $$($(GO) list ./...); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$target"; \
	    $(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg >$$out 2>&1 || { cat $$out; exit 1; }; \
	  done; \
	done

## test-e2e: the plugin under yaegi and inside a real Traefik (no -race: yaegi trips it)
test-e2e: traefik
	cd e2e && $(GO) test -count=1 -timeout 40m ./...

## traefik: build or reuse .bin/traefik (v3.6.12)
traefik:
	./scripts/build-traefik.sh

## demo: Traefik with the plugin signs an unsigned request to the FaceID emulator
demo: traefik
	./scripts/demo.sh

## bench: performance figures (see BENCHMARKS.md)
bench: traefik
	./scripts/bench.sh

vendor:
	$(GO) mod tidy && $(GO) mod vendor
