package yaegihost

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckCatalogAcceptsGoodPlugins(t *testing.T) {
	interpreted(t)
	for _, dir := range []string{passthroughDir, configechoDir} {
		if err := CheckCatalog(dir); err != nil {
			t.Errorf("CheckCatalog(%s): %v", dir, err)
		}
	}
}

func TestCheckCatalogRejectsWrongSignatures(t *testing.T) {
	interpreted(t)
	err := CheckCatalog(badsignatureDir)
	if err == nil || !strings.Contains(err.Error(), "badsignature.New must be func(context.Context, http.Handler, *Config, string) (http.Handler, error)") {
		t.Fatalf("err = %v, want the New signature named", err)
	}

	cases := map[string]struct{ source, want string }{
		"CreateConfig returns a value": {`package passthrough
import ("context"; "net/http")
type Config struct{}
func CreateConfig() Config { return Config{} }
func New(ctx context.Context, next http.Handler, config *Config, name string) (http.Handler, error) { return next, nil }
`, "passthrough.CreateConfig must be func() *passthrough.Config"},
		"config type is not named Config": {`package passthrough
import ("context"; "net/http")
type Settings struct{}
func CreateConfig() *Settings { return &Settings{} }
func New(ctx context.Context, next http.Handler, config *Settings, name string) (http.Handler, error) { return next, nil }
`, "CreateConfig must be func() *passthrough.Config"},
		"New returns a concrete handler": {`package passthrough
import ("context"; "net/http")
type Config struct{}
type h struct{}
func (h) ServeHTTP(rw http.ResponseWriter, req *http.Request) {}
func CreateConfig() *Config { return &Config{} }
func New(ctx context.Context, next http.Handler, config *Config, name string) (*h, error) { return &h{}, nil }
`, "passthrough.New must be func("},
		"New returns nil handler": {`package passthrough
import ("context"; "net/http")
type Config struct{}
func CreateConfig() *Config { return &Config{} }
func New(ctx context.Context, next http.Handler, config *Config, name string) (http.Handler, error) { return nil, nil }
`, "invalid handler type"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := copyFixture(t, passthroughDir)
			writeFile(t, filepath.Join(dir, "passthrough.go"), c.source)
			if err := CheckCatalog(dir); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestCheckCatalogRejectsGoModRequiringYaegiOrTraefik(t *testing.T) {
	interpreted(t)
	for _, req := range []string{"github.com/traefik/yaegi v0.16.1", "github.com/traefik/traefik/v3 v3.6.12"} {
		dir := copyFixture(t, passthroughDir)
		writeFile(t, filepath.Join(dir, "go.mod"), "module github.com/kycgate/passthrough\n\ngo 1.24\n\nrequire "+req+"\n")
		err := CheckCatalog(dir)
		if err == nil || !strings.Contains(err.Error(), "the catalog rejects plugins that require yaegi or Traefik") {
			t.Errorf("require %s: err = %v", req, err)
		}
	}
	dir := copyFixture(t, passthroughDir)
	if err := os.Remove(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatal(err)
	}
	if err := CheckCatalog(dir); err == nil || !strings.Contains(err.Error(), "needs a go.mod") {
		t.Errorf("no go.mod: err = %v", err)
	}
}

func TestCheckCatalogCallsNewWithTestData(t *testing.T) {
	interpreted(t)
	dir := copyFixture(t, configechoDir)
	writeFile(t, filepath.Join(dir, ManifestFile), `displayName: x
type: middleware
import: github.com/kycgate/configecho
summary: s
testData:
  failWith: "endpoint is required: set endpoint in testData"
`)
	err := CheckCatalog(dir)
	if err == nil || !strings.Contains(err.Error(), "configecho.New with testData failed: endpoint is required") {
		t.Fatalf("err = %v, want New's error", err)
	}

	writeFile(t, filepath.Join(dir, ManifestFile), "displayName: x\ntype: middleware\nimport: github.com/kycgate/configecho\nsummary: s\ntestData:\n  interval: 5s\n")
	if err := CheckCatalog(dir); err == nil || !strings.Contains(err.Error(), "testData: failed to decode configuration") {
		t.Fatalf("err = %v, want a testData decode error", err)
	}
}

func TestCheckCatalogSeesNoEnvironment(t *testing.T) {
	interpreted(t)
	t.Setenv("YAEGIHOST_PROBE", "set-in-test-process")
	dir := copyFixture(t, passthroughDir)
	writeFile(t, filepath.Join(dir, "passthrough.go"), `package passthrough
import ("context"; "errors"; "net/http"; "os")
type Config struct{}
func CreateConfig() *Config { return &Config{} }
func New(ctx context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	if os.Getenv("YAEGIHOST_PROBE") == "" { return nil, errors.New("YAEGIHOST_PROBE is not set") }
	return next, nil
}
`)
	if err := CheckCatalog(dir); err == nil || !strings.Contains(err.Error(), "YAEGIHOST_PROBE is not set") {
		t.Fatalf("err = %v, want New to see no environment", err)
	}
}

func TestCheckCatalogTimeLimits(t *testing.T) {
	interpreted(t)
	saved := catalogTimeout
	catalogTimeout = time.Second
	t.Cleanup(func() { catalogTimeout = saved })

	dir := copyFixture(t, passthroughDir)
	writeFile(t, filepath.Join(dir, "slow.go"), `package passthrough
import "time"
func init() { time.Sleep(30 * time.Second) }
`)
	if err := CheckCatalog(dir); err == nil || !strings.Contains(err.Error(), "took more than 1s") {
		t.Errorf("slow import: err = %v", err)
	}

	dir = copyFixture(t, passthroughDir)
	writeFile(t, filepath.Join(dir, "passthrough.go"), `package passthrough
import ("context"; "fmt"; "net/http"; "os"; "time")
type Config struct{}
func CreateConfig() *Config { return &Config{} }
func New(ctx context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	fmt.Fprintln(os.Stderr, "dialing the vendor from New")
	time.Sleep(30 * time.Second)
	return next, nil
}
`)
	err := CheckCatalog(dir)
	if err == nil || !strings.Contains(err.Error(), "did not return within 1s") || !strings.Contains(err.Error(), "dialing the vendor from New") {
		t.Errorf("slow New: err = %v, want a timeout with the plugin's output", err)
	}
}
