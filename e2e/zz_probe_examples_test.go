package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

func TestZZProbe(t *testing.T) {
	yml := "http:\n  middlewares:\n    m:\n      plugin:\n        p:\n          retryCodes: [502, 503]\n          words: [a, b]\n          floats: [1.5, 2]\n"
	toml := "[http.middlewares.m.plugin.p]\nretryCodes = [502, 503]\nwords = [\"a\", \"b\"]\n"
	for name, content := range map[string]string{"d.yml": yml, "d.toml": toml} {
		path := filepath.Join(t.TempDir(), name)
		os.WriteFile(path, []byte(content), 0o600)
		conf := provideFile(t, path)
		pc := conf.HTTP.Middlewares["m"].Plugin["p"]
		for k, v := range pc {
			for _, e := range v.([]any) {
				t.Logf("%s %s elem %T %#v", name, k, e, e)
			}
		}
		func() {
			defer func() { t.Logf("%s deepcopy recover: %v", name, recover()) }()
			conf.DeepCopy()
		}()
	}
}
