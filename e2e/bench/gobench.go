package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// benchLine is one result line of `go test -bench`.
type benchLine struct {
	name    string             // without the -GOMAXPROCS suffix
	n       int64              // iterations
	metrics map[string]float64 // unit -> value, e.g. "ns/op", "B/op", "bytes/entry"
}

var benchRE = regexp.MustCompile(`^(Benchmark\S+)\s+(\d+)\s+(.+)$`)
var procsRE = regexp.MustCompile(`-\d+$`)

// parseBenchOutput reads the benchmark lines of `go test -bench` output.
func parseBenchOutput(out string) []benchLine {
	var lines []benchLine
	s := bufio.NewScanner(strings.NewReader(out))
	for s.Scan() {
		m := benchRE.FindStringSubmatch(strings.TrimSpace(s.Text()))
		if m == nil {
			continue
		}
		n, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			continue
		}
		f := strings.Fields(m[3])
		bl := benchLine{name: procsRE.ReplaceAllString(m[1], ""), n: n, metrics: map[string]float64{}}
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			bl.metrics[f[i+1]] = v
		}
		if _, ok := bl.metrics["ns/op"]; ok {
			lines = append(lines, bl)
		}
	}
	return lines
}

// fastest keeps, for each benchmark name, the run with the lowest ns/op:
// with -count, the run least disturbed by other work on the machine. The
// order of first appearance is kept.
func fastest(lines []benchLine) []benchLine {
	idx := map[string]int{}
	var out []benchLine
	for _, l := range lines {
		i, ok := idx[l.name]
		switch {
		case !ok:
			idx[l.name] = len(out)
			out = append(out, l)
		case l.metrics["ns/op"] < out[i].metrics["ns/op"]:
			out[i] = l
		}
	}
	return out
}

// testBinary is a compiled test binary of one package of the module.
type testBinary struct {
	path string
	dir  string // the package directory: tests find testdata from there
}

// compileTest builds the tests of pkg (e.g. "./verifier/") into dir.
func compileTest(ctx context.Context, repo, pkg, dir string) (*testBinary, error) {
	name := strings.Trim(strings.ReplaceAll(pkg, "/", "_"), "._") + ".test"
	bin := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, pkg)
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go test -c %s: %w: %s", pkg, err, lastChars(string(out), 600))
	}
	return &testBinary{path: bin, dir: filepath.Join(repo, pkg)}, nil
}

// bench runs the benchmarks matching pattern once and returns the output.
func (t *testBinary) bench(ctx context.Context, pattern, benchtime string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, t.path, "-test.run", "^$", "-test.bench", pattern,
		"-test.benchtime", benchtime, "-test.benchmem")
	cmd.Dir = t.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s -test.bench %s: %w: %s", filepath.Base(t.path), pattern, err, lastChars(string(out), 600))
	}
	return string(out), nil
}

// lastChars is the end of s, trimmed, for error messages.
func lastChars(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// benchKey reduces a benchmark name after its prefix to a key that pairs
// BenchmarkEvaluateEd25519 with BenchmarkBareVerify/ed25519.
func benchKey(name, prefix string) string {
	rest := strings.TrimPrefix(name, prefix)
	var b strings.Builder
	for _, r := range strings.ToLower(rest) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// benchPair is an Evaluate benchmark and the bare verification it is
// compared with.
type benchPair struct {
	key        string
	eval, bare benchLine
}

// pairBenches matches BenchmarkEvaluate* with BenchmarkBareVerify* by the
// rest of their names; with exactly one of each they pair regardless.
func pairBenches(lines []benchLine) []benchPair {
	const ep, bp = "BenchmarkEvaluate", "BenchmarkBareVerify"
	var evals, bares []benchLine
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l.name, ep):
			evals = append(evals, l)
		case strings.HasPrefix(l.name, bp):
			bares = append(bares, l)
		}
	}
	if len(evals) == 1 && len(bares) == 1 {
		return []benchPair{{key: benchKey(evals[0].name, ep), eval: evals[0], bare: bares[0]}}
	}
	var pairs []benchPair
	for _, ev := range evals {
		k := benchKey(ev.name, ep)
		for _, b := range bares {
			if benchKey(b.name, bp) == k {
				pairs = append(pairs, benchPair{key: k, eval: ev, bare: b})
				break
			}
		}
	}
	return pairs
}

// caseVerify is case 6: signatures verified per second by verifier.Evaluate
// against bare crypto verification of the same payloads. Goal: >= 0.9x.
// The two benchmarks run alternately, benchCount times each, and the
// fastest run of each counts, so that other work on the machine weighs on
// both alike.
func caseVerify(ctx context.Context, e *env, r *report) {
	const label = "6 verification"
	bin, err := compileTest(ctx, e.o.repo, "./verifier/", e.ws)
	if err != nil {
		r.fail(label, "Go benchmark", err)
		return
	}
	var out strings.Builder
	for i := 0; i < e.o.benchCount; i++ {
		for _, pattern := range []string{"^BenchmarkEvaluate", "^BenchmarkBareVerify"} {
			o, err := bin.bench(ctx, pattern, e.o.benchtime)
			if err != nil {
				r.fail(label, "Go benchmark", err)
				return
			}
			out.WriteString(o)
		}
	}
	pairs := pairBenches(fastest(parseBenchOutput(out.String())))
	if len(pairs) == 0 {
		r.fail(label, "Go benchmark", fmt.Errorf("no BenchmarkEvaluate*/BenchmarkBareVerify* pair in ./verifier/"))
		return
	}
	for _, p := range pairs {
		bare, eval := 1e9/p.bare.metrics["ns/op"], 1e9/p.eval.metrics["ns/op"]
		rt := ratio(eval, bare)
		r.add(row{kase: label + " " + p.key, metric: "signatures/s (Evaluate)",
			baseline: fmt.Sprintf("bare %.0f/s", bare), proxy: fmt.Sprintf("%.0f/s", eval),
			ratio: fRatio(rt), goal: ">= 0.9x", met: met(rt >= 0.9)})
		if a, ok := p.eval.metrics["allocs/op"]; ok {
			r.note("Case 6 %s: Evaluate %.0f ns/op, %.0f B/op, %.0f allocs/op; bare %.0f ns/op (fastest of %d runs each).",
				p.key, p.eval.metrics["ns/op"], p.eval.metrics["B/op"], a, p.bare.metrics["ns/op"], e.o.benchCount)
		}
	}
}

// caseGrowth is case 7: warm decision latency and memory per cached
// decision at growing cache sizes, fastest of benchCount runs. Goal: flat
// latency (within 1.5x of the smallest size).
func caseGrowth(ctx context.Context, e *env, r *report) {
	const label = "7 growth"
	bin, err := compileTest(ctx, e.o.repo, "./verifier/", e.ws)
	if err != nil {
		r.fail(label, "Go benchmark", err)
		return
	}
	var out strings.Builder
	for i := 0; i < e.o.benchCount; i++ {
		o, err := bin.bench(ctx, "^BenchmarkDecideCached", e.o.benchtime)
		if err != nil {
			r.fail(label, "Go benchmark", err)
			return
		}
		out.WriteString(o)
	}
	var lines []benchLine
	for _, l := range fastest(parseBenchOutput(out.String())) {
		if strings.HasPrefix(l.name, "BenchmarkDecideCached") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		r.fail(label, "Go benchmark", fmt.Errorf("no BenchmarkDecideCached* in ./verifier/"))
		return
	}
	base := lines[0].metrics["ns/op"]
	for _, l := range lines {
		size := strings.TrimPrefix(strings.TrimPrefix(l.name, "BenchmarkDecideCached"), "/")
		ns := l.metrics["ns/op"]
		rt := ratio(ns, base)
		r.add(row{kase: label + " " + size, metric: "warm Decide latency",
			baseline: fmt.Sprintf("%s: %.0f ns", strings.TrimPrefix(lines[0].name, "BenchmarkDecideCached/"), base),
			proxy:    fmt.Sprintf("%.0f ns", ns), ratio: fRatio(rt), goal: "<= 1.5x (flat)", met: met(rt <= 1.5)})
		for unit, v := range l.metrics {
			if strings.Contains(unit, "entry") {
				r.add(row{kase: label + " " + size, metric: unit, proxy: fmt.Sprintf("%.0f", v)})
			}
		}
	}
}
