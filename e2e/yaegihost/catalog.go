package yaegihost

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"
	"golang.org/x/mod/modfile"
)

// catalogTimeout bounds the import, and separately the call to New, in
// CheckCatalog. The plugin catalog gives the import 10 s.
var catalogTimeout = 10 * time.Second

// CatalogMiddlewareName is the middleware name CheckCatalog passes to New.
const CatalogMiddlewareName = "plugin-catalog-check"

// CheckCatalog checks pluginDir the way the public Traefik plugin catalog
// analyses a plugin before listing it:
//   - go.mod exists and requires neither github.com/traefik/yaegi nor
//     github.com/traefik/traefik, and the manifest passes Traefik's checks
//     (type middleware, import under the module path, displayName, summary,
//     testData present);
//   - a fresh interpreter (stdlib symbols only, no environment variables)
//     imports the plugin within 10 s;
//   - CreateConfig is exactly `func() *Config` and New exactly
//     `func(context.Context, http.Handler, *Config, string) (http.Handler, error)`;
//   - CreateConfig's result, decoded from testData as Traefik decodes
//     configuration, is passed to New, which must return a handler and no
//     error within 10 s. The check itself makes no network call; run it
//     where the network is unavailable to prove New needs none.
//
// The error says which step failed, and ends with what the plugin printed.
func CheckCatalog(pluginDir string) error {
	dir, err := filepath.Abs(pluginDir)
	if err != nil {
		return fmt.Errorf("catalog: plugin directory %q: %w", pluginDir, err)
	}
	manifest, err := ReadManifest(dir)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	module, err := checkCatalogGoMod(dir)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	if err := checkLocalManifest(manifest, module); err != nil {
		return fmt.Errorf("catalog: manifest: %w", err)
	}
	if manifest.UseUnsafe {
		return fmt.Errorf("catalog: %s: useUnsafe is not supported by this check", module)
	}

	output := &LogBuffer{}
	var pipes []*pipeCapture
	defer func() {
		for _, c := range pipes {
			c.close()
		}
	}()
	withOutput := func(err error) error {
		for _, c := range pipes {
			c.flush()
		}
		if output.Len() == 0 {
			return fmt.Errorf("catalog: %w", err)
		}
		return fmt.Errorf("catalog: %w\nplugin output:\n%s", err, output.String())
	}

	goPath, cleanup, err := mountGoPath(dir, module)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	defer cleanup()

	i := interp.New(interp.Options{GoPath: goPath, Env: []string{}, Stdout: output, Stderr: output})
	if err := i.Use(stdlib.Symbols); err != nil {
		return fmt.Errorf("catalog: failed to load symbols: %w", err)
	}
	// Capture direct writes to os.Stdout and os.Stderr for the error message.
	for _, name := range []string{"Stdout", "Stderr"} {
		c, err := newPipeCapture(output)
		if err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
		pipes = append(pipes, c)
		if err := i.Use(interp.Exports{"os/os": {name: reflect.ValueOf(&c.w).Elem()}}); err != nil {
			return fmt.Errorf("catalog: failed to redirect os.%s: %w", name, err)
		}
	}

	importCtx, cancelImport := context.WithTimeout(context.Background(), catalogTimeout)
	defer cancelImport()
	if _, err := i.EvalWithContext(importCtx, fmt.Sprintf(`import "%s"`, manifest.Import)); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return withOutput(fmt.Errorf("importing %q took more than %s", manifest.Import, catalogTimeout))
		}
		return withOutput(fmt.Errorf("failed to import plugin code %q: %w", manifest.Import, err))
	}

	basePkg := manifest.PackageName()
	fnNew, fnCreateConfig, err := checkSignatures(i, basePkg)
	if err != nil {
		return withOutput(err)
	}

	cfg, err := createConfig(fnCreateConfig, manifest.TestData)
	if err != nil {
		return withOutput(fmt.Errorf("testData: %w", err))
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // stops what New started, as a configuration reload would
	type result struct {
		handler http.Handler
		err     error
	}
	done := make(chan result, 1)
	go func() {
		h, err := callNew(ctx, fnNew, http.NotFoundHandler(), cfg, CatalogMiddlewareName)
		done <- result{handler: h, err: err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return withOutput(fmt.Errorf("%s.New with testData failed: %w", basePkg, r.err))
		}
	case <-time.After(catalogTimeout):
		return withOutput(fmt.Errorf("%s.New with testData did not return within %s (network I/O in New?)", basePkg, catalogTimeout))
	}
	return nil
}

// checkCatalogGoMod returns the module path of dir/go.mod, refusing a go.mod
// that requires yaegi or Traefik (the catalog rejects those).
func checkCatalogGoMod(dir string) (string, error) {
	p := filepath.Join(dir, "go.mod")
	data, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("the catalog needs a go.mod: %w", err)
	}
	f, err := modfile.ParseLax(p, data, nil)
	if err != nil {
		return "", err
	}
	if f.Module == nil || f.Module.Mod.Path == "" {
		return "", fmt.Errorf("%s has no module line", p)
	}
	var errs []error
	for _, r := range f.Require {
		if r.Mod.Path == "github.com/traefik/yaegi" || strings.HasPrefix(r.Mod.Path, "github.com/traefik/traefik") {
			errs = append(errs, fmt.Errorf("%s requires %s: the catalog rejects plugins that require yaegi or Traefik; move such tests to a nested module", p, r.Mod.Path))
		}
	}
	return f.Module.Mod.Path, errors.Join(errs...)
}

// checkSignatures evaluates <basePkg>.New and <basePkg>.CreateConfig and
// checks their exact types twice: by name, through the interpreter's own
// type checker, and structurally, through reflection.
func checkSignatures(i *interp.Interpreter, basePkg string) (fnNew, fnCreateConfig reflect.Value, err error) {
	fnNew, err = i.Eval(basePkg + `.New`)
	if err != nil {
		return reflect.Value{}, reflect.Value{}, fmt.Errorf("failed to eval New: %w", err)
	}
	fnCreateConfig, err = i.Eval(basePkg + `.CreateConfig`)
	if err != nil {
		return reflect.Value{}, reflect.Value{}, fmt.Errorf("failed to eval CreateConfig: %w", err)
	}

	if _, err := i.Eval(`import yaegihost_context "context"`); err != nil {
		return reflect.Value{}, reflect.Value{}, fmt.Errorf("import context: %w", err)
	}
	if _, err := i.Eval(`import yaegihost_http "net/http"`); err != nil {
		return reflect.Value{}, reflect.Value{}, fmt.Errorf("import net/http: %w", err)
	}
	wantCreateConfig := fmt.Sprintf(`func() *%s.Config`, basePkg)
	if _, err := i.Eval(fmt.Sprintf(`var _ %s = %s.CreateConfig`, wantCreateConfig, basePkg)); err != nil {
		return reflect.Value{}, reflect.Value{}, fmt.Errorf("%s.CreateConfig must be %s: %w", basePkg, wantCreateConfig, err)
	}
	wantNew := fmt.Sprintf(`func(yaegihost_context.Context, yaegihost_http.Handler, *%s.Config, string) (yaegihost_http.Handler, error)`, basePkg)
	if _, err := i.Eval(fmt.Sprintf(`var _ %s = %s.New`, wantNew, basePkg)); err != nil {
		return reflect.Value{}, reflect.Value{}, fmt.Errorf("%s.New must be func(context.Context, http.Handler, *Config, string) (http.Handler, error): %w", basePkg, err)
	}

	cc := fnCreateConfig.Type()
	if cc.Kind() != reflect.Func || cc.NumIn() != 0 || cc.NumOut() != 1 || cc.Out(0).Kind() != reflect.Pointer {
		return reflect.Value{}, reflect.Value{}, fmt.Errorf("%s.CreateConfig has type %s, want func() *Config", basePkg, cc)
	}
	configPtr := cc.Out(0)
	ctxType := reflect.TypeOf((*context.Context)(nil)).Elem()
	handlerType := reflect.TypeOf((*http.Handler)(nil)).Elem()
	errorType := reflect.TypeOf((*error)(nil)).Elem()
	want := reflect.FuncOf(
		[]reflect.Type{ctxType, handlerType, configPtr, reflect.TypeOf("")},
		[]reflect.Type{handlerType, errorType}, false)
	if got := fnNew.Type(); got != want {
		return reflect.Value{}, reflect.Value{}, fmt.Errorf("%s.New has type %s, want %s", basePkg, got, want)
	}
	return fnNew, fnCreateConfig, nil
}
