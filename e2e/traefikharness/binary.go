package traefikharness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var binary struct {
	once sync.Once
	path string
	err  error
}

// BinaryPath returns the path of the Traefik binary, running
// scripts/build-traefik.sh (once per test process) to build it if it is
// missing or stale; it fails the test if that does not work.
func BinaryPath(t testing.TB) string {
	t.Helper()
	path, err := BuildBinary()
	if err != nil {
		t.Fatalf("traefikharness: %v", err)
	}
	return path
}

// BuildBinary is BinaryPath without a test.
func BuildBinary() (string, error) {
	binary.once.Do(func() {
		binary.path, binary.err = buildBinary()
	})
	return binary.path, binary.err
}

func buildBinary() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, "scripts", "build-traefik.sh")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s failed (%v); run it by hand to see why:\n%s", script, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	path := lines[len(lines)-1]
	if info, err := os.Stat(path); err != nil || info.IsDir() {
		return "", fmt.Errorf("%s did not print the path of a Traefik binary (got %q)", script, path)
	}
	return path, nil
}

// repoRoot finds the repository root (the directory holding
// scripts/build-traefik.sh): upwards from the working directory (go test
// runs in the package directory), else from this source file's location.
func repoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if _, err := os.Stat(filepath.Join(dir, "scripts", "build-traefik.sh")); err == nil {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("cannot find scripts/build-traefik.sh above the working directory: run the tests from inside the repository")
}
