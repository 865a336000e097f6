// Package yaegihost loads a Traefik middleware plugin from its source
// directory through yaegi v0.16.1 the way Traefik v3.6.12 loads a local plugin
// (pkg/plugins: ReadManifest, checkLocalPluginManifest, newInterpreter,
// newYaegiMiddlewareBuilder), so that tests can drive the interpreted plugin
// in-process, and it checks a plugin the way the public plugin catalog does
// (CheckCatalog). Each Load creates its own interpreter, hence its own copy of
// the plugin's package-level state: one Plugin stands for one Traefik process.
//
// Tests that call into interpreted code must not run with -race: the race
// detector reports races inside yaegi itself.
package yaegihost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"sync"

	"github.com/mitchellh/mapstructure"
	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"
	"golang.org/x/mod/modfile"
	"gopkg.in/yaml.v3"
)

// ManifestFile is the name of the plugin manifest in the plugin directory.
const ManifestFile = ".traefik.yml"

// Manifest is the plugin manifest, decoded with yaml.v3 into the same struct
// shape as Traefik's plugins.Manifest.
type Manifest struct {
	DisplayName   string         `yaml:"displayName"`
	Type          string         `yaml:"type"`
	Runtime       string         `yaml:"runtime"`
	WasmPath      string         `yaml:"wasmPath"`
	Import        string         `yaml:"import"`
	BasePkg       string         `yaml:"basePkg"`
	Compatibility string         `yaml:"compatibility"`
	Summary       string         `yaml:"summary"`
	UseUnsafe     bool           `yaml:"useUnsafe"`
	TestData      map[string]any `yaml:"testData"`
}

// PackageName is the Go package name Traefik evaluates CreateConfig and New
// in: BasePkg, or else the last element of Import with "-" replaced by "_".
func (m *Manifest) PackageName() string {
	if m.BasePkg != "" {
		return m.BasePkg
	}
	return strings.ReplaceAll(path.Base(m.Import), "-", "_")
}

// ReadManifest reads and decodes pluginDir/.traefik.yml.
func ReadManifest(pluginDir string) (*Manifest, error) {
	p := filepath.Join(pluginDir, ManifestFile)
	file, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("failed to open the plugin manifest %s: %w", p, err)
	}
	defer func() { _ = file.Close() }()

	m := &Manifest{}
	if err := yaml.NewDecoder(file).Decode(m); err != nil {
		return nil, fmt.Errorf("failed to decode the plugin manifest %s: %w", p, err)
	}
	return m, nil
}

// Options tunes Load. The zero value is valid.
type Options struct {
	// ModuleName is the module path under which the plugin directory is
	// mounted in the interpreter's GOPATH (Traefik's
	// experimental.localPlugins.<alias>.moduleName). Default: the module
	// path in pluginDir/go.mod, else the manifest's import.
	ModuleName string
	// Env is the interpreter's environment, the only one os.Getenv sees in
	// plugin code. Default: none, like the plugin catalog. Traefik passes
	// os.Environ().
	Env []string
	// Stdout and Stderr, when set, also receive everything the plugin
	// prints to standard output and standard error by any route (see
	// Plugin.Output). Writes may come from several goroutines.
	Stdout, Stderr io.Writer
}

// Plugin is one loaded plugin: one interpreter, that is one Traefik
// process's worth of package-level state. Its methods may be called from
// several goroutines.
type Plugin struct {
	dir      string
	module   string
	manifest *Manifest
	interp   *interp.Interpreter

	fnNew          reflect.Value
	fnCreateConfig reflect.Value

	stdout, stderr, processStdout, processStderr, output *LogBuffer
	pipes                                                []*pipeCapture
	closeOnce                                            sync.Once
}

// Constructor is Traefik's plugins.Constructor: it builds the handler for one
// router from an already decoded configuration.
type Constructor func(ctx context.Context, next http.Handler) (http.Handler, error)

// Load reads pluginDir/.traefik.yml, applies the checks Traefik makes on a
// local plugin at start-up, mounts pluginDir at GOPATH/src/<module> in a
// temporary GOPATH, and creates a fresh interpreter exactly like Traefik's
// newInterpreter: stdlib symbols (plus Traefik's provider-plugin symbols),
// then `import "<manifest.Import>"`, then <basePkg>.New and
// <basePkg>.CreateConfig. The temporary GOPATH is removed before Load
// returns: yaegi has read every source file by then.
func Load(pluginDir string, opts Options) (*Plugin, error) {
	dir, err := filepath.Abs(pluginDir)
	if err != nil {
		return nil, fmt.Errorf("plugin directory %q: %w", pluginDir, err)
	}
	manifest, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	module := opts.ModuleName
	if module == "" {
		module, err = modulePath(dir, manifest)
		if err != nil {
			return nil, err
		}
	}
	if err := checkLocalManifest(manifest, module); err != nil {
		return nil, err
	}
	if manifest.UseUnsafe {
		// Traefik refuses such a plugin unless settings.useUnsafe is set,
		// which this host does not offer.
		return nil, fmt.Errorf("%s: this plugin uses restricted imports (useUnsafe: true); yaegihost does not load unsafe/syscall symbols", module)
	}

	p := &Plugin{
		dir:           dir,
		module:        module,
		manifest:      manifest,
		stdout:        &LogBuffer{},
		stderr:        &LogBuffer{},
		processStdout: &LogBuffer{},
		processStderr: &LogBuffer{},
		output:        &LogBuffer{},
	}
	stdout := sinks(opts.Stdout, p.stdout, p.output)
	stderr := sinks(opts.Stderr, p.stderr, p.output)
	osStdout, err := newPipeCapture(sinks(opts.Stdout, p.processStdout, p.output))
	if err != nil {
		return nil, err
	}
	p.pipes = append(p.pipes, osStdout)
	osStderr, err := newPipeCapture(sinks(opts.Stderr, p.processStderr, p.output))
	if err != nil {
		p.Close()
		return nil, err
	}
	p.pipes = append(p.pipes, osStderr)
	loaded := false
	defer func() {
		if !loaded {
			p.Close()
		}
	}()

	goPath, cleanup, err := mountGoPath(dir, module)
	if err != nil {
		return nil, err
	}
	defer cleanup()

	i := interp.New(interp.Options{
		GoPath: goPath,
		Env:    opts.Env,
		Stdout: stdout,
		Stderr: stderr,
	})
	if err := i.Use(stdlib.Symbols); err != nil {
		return nil, fmt.Errorf("failed to load symbols: %w", err)
	}
	if err := i.Use(ppSymbols()); err != nil {
		return nil, fmt.Errorf("failed to load provider symbols: %w", err)
	}
	// Not in Traefik: there os.Stdout and os.Stderr stay the process's own
	// streams. Here they become pipes, so that direct writes are captured too.
	if err := i.Use(interp.Exports{"os/os": {
		"Stdout": reflect.ValueOf(&osStdout.w).Elem(),
		"Stderr": reflect.ValueOf(&osStderr.w).Elem(),
	}}); err != nil {
		return nil, fmt.Errorf("failed to redirect os.Stdout and os.Stderr: %w", err)
	}
	if _, err := i.Eval(fmt.Sprintf(`import "%s"`, manifest.Import)); err != nil {
		return nil, fmt.Errorf("failed to create Yaegi interpreter: failed to import plugin code %q: %w", manifest.Import, err)
	}
	p.interp = i

	basePkg := manifest.PackageName()
	p.fnNew, err = i.Eval(basePkg + `.New`)
	if err != nil {
		return nil, fmt.Errorf("failed to eval New: %w", err)
	}
	p.fnCreateConfig, err = i.Eval(basePkg + `.CreateConfig`)
	if err != nil {
		return nil, fmt.Errorf("failed to eval CreateConfig: %w", err)
	}
	loaded = true
	return p, nil
}

// sinks returns a writer to every non-nil w.
func sinks(extra io.Writer, buffers ...*LogBuffer) io.Writer {
	ws := make([]io.Writer, 0, len(buffers)+1)
	for _, b := range buffers {
		ws = append(ws, b)
	}
	if extra != nil {
		ws = append(ws, extra)
	}
	return io.MultiWriter(ws...)
}

// Build is Traefik's Builder.Build for this plugin: it calls CreateConfig,
// decodes config into the result, and returns the constructor Traefik then
// calls once per router that uses the middleware (all those calls share the
// same *Config).
func (p *Plugin) Build(config map[string]any, middlewareName string) (Constructor, error) {
	cfg, err := createConfig(p.fnCreateConfig, config)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, next http.Handler) (http.Handler, error) {
		return callNew(ctx, p.fnNew, next, cfg, middlewareName)
	}, nil
}

// New builds a handler the way Traefik builds one router's instance of the
// middleware: CreateConfig, decode config, then New(ctx, next, cfg, name).
func (p *Plugin) New(ctx context.Context, next http.Handler, config map[string]any, name string) (http.Handler, error) {
	build, err := p.Build(config, name)
	if err != nil {
		return nil, err
	}
	return build(ctx, next)
}

// TestData returns the manifest's testData (nil when absent).
func (p *Plugin) TestData() map[string]any { return p.manifest.TestData }

// Manifest returns the decoded manifest.
func (p *Plugin) Manifest() *Manifest { return p.manifest }

// Dir returns the plugin directory, absolute.
func (p *Plugin) Dir() string { return p.dir }

// ModuleName returns the module path the plugin was mounted under.
func (p *Plugin) ModuleName() string { return p.module }

// Stdout captures what the plugin printed with fmt.Print*, Print and
// Println: the interpreter's standard output, which Traefik turns into log
// events at debug level.
func (p *Plugin) Stdout() *LogBuffer { p.flush(); return p.stdout }

// Stderr captures what the plugin printed with the log package's default
// logger (log.Print*, log.Fatal*, log.Panic*): the interpreter's standard
// error, which Traefik turns into log events at error level.
func (p *Plugin) Stderr() *LogBuffer { p.flush(); return p.stderr }

// ProcessStdout captures what the plugin wrote to os.Stdout directly (for
// instance fmt.Fprintln(os.Stdout, ...) or a logger built on os.Stdout).
// Traefik does not see these writes: they go to its process's standard
// output, outside its log (and its log file, level and format).
func (p *Plugin) ProcessStdout() *LogBuffer { p.flush(); return p.processStdout }

// ProcessStderr is ProcessStdout for os.Stderr.
func (p *Plugin) ProcessStderr() *LogBuffer { p.flush(); return p.processStderr }

// Output captures everything the plugin printed by any of the four routes
// above, in about the order it was written. Search it for leaked secrets.
// Only writes to file descriptors 1 and 2 by number, and log/slog's default
// handler (which writes through the native log package to the real
// os.Stderr), escape it.
func (p *Plugin) Output() *LogBuffer { p.flush(); return p.output }

// flush makes every write the plugin completed so far visible in the buffers.
func (p *Plugin) flush() {
	for _, c := range p.pipes {
		c.flush()
	}
}

// Close stops capturing direct writes to os.Stdout and os.Stderr and
// releases the pipes behind them; what was captured stays readable. The
// interpreter itself cannot be stopped: goroutines the plugin started keep
// running. Close is optional and may be called more than once.
func (p *Plugin) Close() {
	p.closeOnce.Do(func() {
		for _, c := range p.pipes {
			c.close()
		}
	})
}

// createConfig replicates yaegiMiddlewareBuilder.createConfig.
func createConfig(fnCreateConfig reflect.Value, config map[string]any) (cfg reflect.Value, err error) {
	defer recoverInto(&err, "CreateConfig")

	results := fnCreateConfig.Call(nil)
	if len(results) != 1 {
		return reflect.Value{}, fmt.Errorf("invalid number of return for the CreateConfig function: %d", len(results))
	}

	vConfig := results[0]
	if len(config) == 0 {
		return vConfig, nil
	}

	decoder, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook:       mapstructure.StringToSliceHookFunc(","),
		WeaklyTypedInput: true,
		Result:           vConfig.Interface(),
	})
	if err != nil {
		return reflect.Value{}, fmt.Errorf("failed to create configuration decoder: %w", err)
	}
	if err := decoder.Decode(config); err != nil {
		return reflect.Value{}, fmt.Errorf("failed to decode configuration: %w", err)
	}
	return vConfig, nil
}

// callNew replicates yaegiMiddlewareBuilder.newHandler, except that a panic
// (for instance New declared with the wrong parameter types) becomes an
// error instead of crashing the test binary.
func callNew(ctx context.Context, fnNew reflect.Value, next http.Handler, cfg reflect.Value, middlewareName string) (handler http.Handler, err error) {
	defer recoverInto(&err, "New")

	args := []reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(next), cfg, reflect.ValueOf(middlewareName)}
	results := fnNew.Call(args)

	if len(results) > 1 && results[1].Interface() != nil {
		err, ok := results[1].Interface().(error)
		if !ok {
			return nil, fmt.Errorf("invalid error type: %T", results[0].Interface())
		}
		return nil, err
	}

	handler, ok := results[0].Interface().(http.Handler)
	if !ok {
		return nil, fmt.Errorf("invalid handler type: %T", results[0].Interface())
	}
	return handler, nil
}

func recoverInto(err *error, what string) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("panic while calling the plugin's %s (Traefik would not survive this either): %v", what, r)
	}
}

// checkLocalManifest replicates Traefik's checkLocalPluginManifest for a
// middleware: Traefik refuses to load a local plugin that fails it.
func checkLocalManifest(m *Manifest, module string) error {
	var errs []error
	switch m.Type {
	case "middleware":
		if m.Runtime != "yaegi" && m.Runtime != "" {
			errs = append(errs, fmt.Errorf("%s: runtime %q: yaegihost only runs yaegi middleware plugins", module, m.Runtime))
		}
	default:
		errs = append(errs, fmt.Errorf("%s: unsupported type %q: yaegihost only runs middleware plugins", module, m.Type))
	}
	if m.Import == "" {
		errs = append(errs, fmt.Errorf("%s: missing import in %s", module, ManifestFile))
	}
	if !strings.HasPrefix(m.Import, module) {
		errs = append(errs, fmt.Errorf("the import %q must be related to the module name %q", m.Import, module))
	}
	if m.DisplayName == "" {
		errs = append(errs, fmt.Errorf("%s: missing DisplayName", module))
	}
	if m.Summary == "" {
		errs = append(errs, fmt.Errorf("%s: missing Summary", module))
	}
	if m.TestData == nil {
		errs = append(errs, fmt.Errorf("%s: missing TestData (write `testData: {}` if the plugin needs none)", module))
	}
	return errors.Join(errs...)
}

// modulePath returns the module path declared in dir/go.mod, or the
// manifest's import when there is no go.mod.
func modulePath(dir string, m *Manifest) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if errors.Is(err, os.ErrNotExist) {
		if m.Import == "" {
			return "", fmt.Errorf("%s: no go.mod and no import in %s: cannot tell the module path", dir, ManifestFile)
		}
		return m.Import, nil
	}
	if err != nil {
		return "", fmt.Errorf("read go.mod: %w", err)
	}
	module := modfile.ModulePath(data)
	if module == "" {
		return "", fmt.Errorf("%s/go.mod has no module line", dir)
	}
	return module, nil
}

// mountGoPath creates a temporary GOPATH whose src/<module> is a symlink to
// dir, as a local plugin is mounted at ./plugins-local/src/<module>.
func mountGoPath(dir, module string) (goPath string, cleanup func(), err error) {
	goPath, err = os.MkdirTemp("", "yaegihost-gopath-")
	if err != nil {
		return "", nil, fmt.Errorf("create temporary GOPATH: %w", err)
	}
	cleanup = func() { _ = os.RemoveAll(goPath) } // removes the link, not its target
	link := filepath.Join(goPath, "src", filepath.FromSlash(module))
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("create temporary GOPATH: %w", err)
	}
	if err := os.Symlink(dir, link); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("mount plugin in temporary GOPATH: %w", err)
	}
	return goPath, cleanup, nil
}
