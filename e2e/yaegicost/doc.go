// Package yaegicost measures what Go constructs cost when they run
// interpreted by yaegi v0.16.1, the interpreter Traefik v3.6 embeds: a call
// of an interpreted function or method, a call into the standard library,
// turning a closure into a compiled func value, a regexp match, a JSON
// decode and so on. These figures are why the plugin's hot path
// (fastpath.go) looks the way it does; BENCHMARKS.md quotes them.
//
//	cd e2e && go test -run '^$' -bench . -benchmem ./yaegicost
package yaegicost
