package yaegihost

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"
	"github.com/traefik/traefik/v3/pkg/plugins"
)

// traefikBuilder loads the fixture in dir with Traefik v3.6.12's own code, as
// a local plugin: ./plugins-local/src/<module> relative to the working
// directory (so this changes directory: no t.Parallel here), then
// SetupLocalPlugins and NewBuilder. Traefik's plugin output goes to its
// global zerolog logger, which is redirected into the returned buffer.
func traefikBuilder(t *testing.T, dir, module, alias string) (*plugins.Builder, *LogBuffer) {
	t.Helper()
	work := t.TempDir()
	link := filepath.Join(work, "plugins-local", "src", filepath.FromSlash(module))
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	t.Chdir(work)

	logs := &LogBuffer{}
	saved := log.Logger
	log.Logger = zerolog.New(logs)
	t.Cleanup(func() { log.Logger = saved })

	local := map[string]plugins.LocalDescriptor{alias: {ModuleName: module}}
	if err := plugins.SetupLocalPlugins(local); err != nil {
		t.Fatalf("Traefik's SetupLocalPlugins: %v", err)
	}
	b, err := plugins.NewBuilder(nil, nil, local)
	if err != nil {
		t.Fatalf("Traefik's NewBuilder: %v", err)
	}
	return b, logs
}

// TestSameResultsAsTraefikBuilder runs the same configurations through
// Traefik's plugins.Builder and through Load, and compares what the plugin
// received: decoded config, name, environment, package state, output.
func TestSameResultsAsTraefikBuilder(t *testing.T) {
	interpreted(t)
	t.Setenv("YAEGIHOST_PROBE", "from-os-environ")
	traefik, traefikLogs := traefikBuilder(t, configechoDir, "github.com/kycgate/configecho", "echo")
	ours := load(t, configechoDir, Options{Env: os.Environ()})

	configs := []map[string]any{
		nil,
		{},
		ours.TestData(),
		{"NAME": "n", "count": "30", "enabled": "true", "ratio": 0.5, "tags": "x,y,z", "interval": 5000000000,
			"headers": map[string]any{"X-A": "1"}, "upstream": map[string]any{"url": "http://u", "retries": "2"},
			"secret_file": "/ignored", "SecretFile": "/run/secret", "typoKey": "dropped"},
		{"tags": []any{"p", "q"}, "count": 7.0, "enabled": 1},
		{"interval": "5s"},
		{"count": "many"},
		{"upstream": "not-a-map"},
		{"failWith": "endpoint is required"},
	}
	for i, config := range configs {
		name := "echo-" + string(rune('a'+i)) + "@file"
		tCtor, tErr := traefik.Build("echo", config, name)
		oCtor, oErr := ours.Build(config, name)
		if !sameError(tErr, oErr) {
			t.Errorf("config %v: Build errors differ:\ntraefik: %v\nours:    %v", config, tErr, oErr)
			continue
		}
		if tErr != nil {
			continue
		}
		th, tErr := tCtor(context.Background(), http.NotFoundHandler())
		oh, oErr := oCtor(context.Background(), http.NotFoundHandler())
		if !sameError(tErr, oErr) {
			t.Errorf("config %v: New errors differ:\ntraefik: %v\nours:    %v", config, tErr, oErr)
			continue
		}
		if tErr != nil {
			continue
		}
		tv, ov := serveEcho(t, th), serveEcho(t, oh)
		if tv.Name != ov.Name || tv.Instance != ov.Instance || tv.Env != ov.Env || !reflect.DeepEqual(tv.Config, ov.Config) {
			t.Errorf("config %v: plugin saw\ntraefik: %+v\nours:    %+v", config, tv, ov)
		}
		if ov.Env != "from-os-environ" {
			t.Errorf("env = %q", ov.Env)
		}
		for _, line := range []string{"configecho: stdout: New " + name, "configecho: stderr: New " + name} {
			if !traefikLogs.Contains(line) || !ours.Output().Contains(line) {
				t.Errorf("line %q: in Traefik's log %v, in ours %v", line, traefikLogs.Contains(line), ours.Output().Contains(line))
			}
		}
	}
	// Traefik logs the plugin's stdout at debug level and its stderr at error level.
	for _, l := range traefikLogs.Lines() {
		if strings.Contains(l, "configecho: stdout:") && !strings.Contains(l, `"level":"debug"`) ||
			strings.Contains(l, "configecho: stderr:") && !strings.Contains(l, `"level":"error"`) {
			t.Errorf("Traefik log line %s: unexpected level", l)
		}
	}
}

// TestBadFixturesFailInTraefikToo shows that the failures Load and
// CheckCatalog report are failures in Traefik as well.
func TestBadFixturesFailInTraefikToo(t *testing.T) {
	interpreted(t)
	t.Run("badimport", func(t *testing.T) {
		work := t.TempDir()
		link := filepath.Join(work, "plugins-local", "src", "github.com", "kycgate", "badimport")
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(badimportDir, link); err != nil {
			t.Fatal(err)
		}
		t.Chdir(work)
		_, err := plugins.NewBuilder(nil, nil, map[string]plugins.LocalDescriptor{"bad": {ModuleName: "github.com/kycgate/badimport"}})
		if err == nil || !strings.Contains(err.Error(), `failed to import plugin code "github.com/kycgate/badimport"`) {
			t.Fatalf("Traefik's NewBuilder err = %v", err)
		}
	})
	t.Run("badsignature", func(t *testing.T) {
		b, _ := traefikBuilder(t, badsignatureDir, "github.com/kycgate/badsignature", "bad")
		ctor, err := b.Build("bad", nil, "bad@file")
		if err != nil {
			t.Fatalf("Traefik's Build: %v", err)
		}
		defer func() {
			if r := recover(); r == nil {
				t.Error("Traefik's constructor did not panic on New(Config) called with *Config")
			}
		}()
		_, _ = ctor(context.Background(), http.NotFoundHandler())
	})
}

func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Error() == b.Error()
}
