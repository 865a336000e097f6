package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// goBench is one Go benchmark's runs (go test -bench -count N).
type goBench struct {
	Name    string // without the -GOMAXPROCS suffix
	NsOp    []float64
	BytesOp []float64
	Allocs  []float64
}

// goBenchFile is one go test -bench output, with the command that made it.
type goBenchFile struct {
	Command string // from a "command: ..." line that bench.sh writes first
	Benches []*goBench
}

// readGoBench parses the output of go test -bench -benchmem. Lines that are
// not results (goos, pkg, PASS, ok, logs) are skipped.
func readGoBench(path string) (*goBenchFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := &goBenchFile{}
	byName := map[string]*goBench{}
	// A benchmark that logs to stdout splits its result line: the name,
	// the log, and the numbers on a later line of their own.
	pending := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if cmd, ok := strings.CutPrefix(line, "command: "); ok {
			out.Command = cmd
			continue
		}
		fields := strings.Fields(line)
		if len(fields) >= 3 && pending != "" && fields[2] == "ns/op" {
			fields = append([]string{pending}, fields...)
		}
		if len(fields) == 0 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		if len(fields) < 4 {
			pending = fields[0] // its numbers follow the log
			continue
		}
		if _, err := strconv.Atoi(fields[1]); err != nil {
			pending = fields[0]
			continue
		}
		pending = ""
		name := fields[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		b := byName[name]
		if b == nil {
			b = &goBench{Name: name}
			byName[name] = b
			out.Benches = append(out.Benches, b)
		}
		// Then value-unit pairs: "9512 ns/op", "4096 B/op", "50 allocs/op".
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: bad value %q in %q", path, fields[i], line)
			}
			switch fields[i+1] {
			case "ns/op":
				b.NsOp = append(b.NsOp, v)
			case "B/op":
				b.BytesOp = append(b.BytesOp, v)
			case "allocs/op":
				b.Allocs = append(b.Allocs, v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out.Benches) == 0 {
		return nil, fmt.Errorf("%s holds no benchmark results", path)
	}
	return out, nil
}

// median returns the median of xs (0 for none); xs is not changed.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// spread returns the smallest and largest of xs.
func spread(xs []float64) (lo, hi float64) {
	for i, x := range xs {
		if i == 0 || x < lo {
			lo = x
		}
		if i == 0 || x > hi {
			hi = x
		}
	}
	return lo, hi
}
