package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Case 11: keyless verification beside key verification. The verifier's
// Go benchmarks BenchmarkKeylessEvaluate and BenchmarkKeylessDecide run in
// one test process, so that every keyless figure has its key baseline
// measured alongside it:
//
//   - Evaluate: a cold decision on one signature, no I/O, no cache: ECDSA
//     P-256 key signatures (the baselines), a keyless bundle and a keyless
//     legacy .sig layer of a private Sigstore, and the public-good vector
//     (refused after its certificate, SCT and log entry verified: it binds
//     an npm tarball, not an image). Each keyless kind is compared with the
//     key signature of its format: a bundle with a key bundle, a .sig layer
//     with a key .sig layer, as their parsing and lookups differ.
//   - Decide, cold (cache off): the signature lookup in a docker-registry
//     of the case's own, as the proxy does it on a first pull, then the
//     decision; warm: a cache hit, as on every later pull.
//
// The keyless signatures are made by sigstore/sigstoretest, which no main
// package of the module may link (its TestNotImportedByBinary), so the
// case runs the verifier's test binary rather than signing in this one;
// that is also why there is no keyless pull through the proxy process.

func init() {
	allCases = append(allCases, benchCase{11, "keyless vs key verification (Go benchmark)", caseKeyless})
}

// keylessBenchPattern selects the two benchmarks; the '|' is inside
// parentheses, so the testing package does not split on it.
const keylessBenchPattern = "^BenchmarkKeyless(Evaluate|Decide)$"

// The key sub-benchmarks keyless figures are divided by: the .sig layer
// for a kind whose name ends in "-sig", the bundle for the others.
const (
	keyBundleBase = "key-ecdsa-p256-bundle"
	keySigBase    = "key-ecdsa-p256-sig"
)

// keylessBase is the key sub-benchmark a keyless kind is compared with.
func keylessBase(kind string) string {
	if strings.HasSuffix(kind, "-sig") {
		return keySigBase
	}
	return keyBundleBase
}

// keylessGroup is one benchmark of case 11 and how its rows read.
type keylessGroup struct {
	prefix string // benchmark name up to the kind, with its trailing '/'
	label  string // row label after "11 "
	metric string
	goal   string
	within func(ratio float64) bool // the goal's check; nil: no goal
}

var keylessGroups = []keylessGroup{
	{prefix: "BenchmarkKeylessEvaluate/", label: "Evaluate", metric: "ns per cold decision (Evaluate: no I/O, no cache)"},
	{prefix: "BenchmarkKeylessDecide/cold/", label: "cold Decide", metric: "ns per cold Decide (lookup in docker-registry + decision)"},
	{prefix: "BenchmarkKeylessDecide/warm/", label: "warm Decide", metric: "ns per warm Decide (cached decision)",
		goal: "~1.0x (0.8x-1.25x)", within: func(r float64) bool { return r >= 0.8 && r <= 1.25 }},
}

// caseKeyless is case 11.
func caseKeyless(ctx context.Context, e *env, r *report) {
	const label = "11 keyless vs key"
	bin, err := compileTest(ctx, e.o.repo, "./verifier/", e.ws)
	if err != nil {
		r.fail(label, "Go benchmark", err)
		return
	}
	up, err := startRegistry(ctx, e.ws, "upstream-keyless", "")
	if err != nil {
		r.fail(label, "docker-registry", err)
		return
	}
	defer up.stop()

	var out strings.Builder
	for i := 0; i < e.o.benchCount; i++ {
		o, err := runKeylessBench(ctx, bin, e.o.benchtime, up.addr)
		if err != nil {
			r.fail(label, "Go benchmark", err)
			return
		}
		out.WriteString(o)
	}
	lines := fastest(parseBenchOutput(out.String()))
	byName := make(map[string]benchLine, len(lines))
	for _, l := range lines {
		byName[l.name] = l
	}
	for _, g := range keylessGroups {
		keylessRows(r, g, byName, lines, e.o.benchCount)
	}
	r.note("Case 11: keyless/key is the time of a decision on a keyless signature over that on an ECDSA P-256 key signature of the same format (bundle or .sig layer), %s each, measured in one process. "+
		"A key decision verifies one signature; a keyless one (sigstore-go, against the trusted root) also verifies the certificate chain to a Fulcio CA, "+
		"the Rekor entry (its signed entry timestamp, and for a bundle its inclusion proof and signed checkpoint), the RFC 3161 timestamp when the bundle carries one (the private Sigstore's do), "+
		"and an SCT when the root names CT logs (the public-good root does; the private Sigstore's, which signs the bundle and .sig rows, names none), then matches the identity. "+
		"Cold Decide adds the signature lookup in the registry to both, so the ratio shrinks; warm, the cached decision hides the difference.", fastestOf(e.o.benchCount))
}

// keylessRows adds the rows of one group: every keyless kind against the
// key signature of its format, and a note with every kind's figures.
func keylessRows(r *report, g keylessGroup, byName map[string]benchLine, lines []benchLine, runs int) {
	label := "11 keyless vs key, " + g.label
	var figures []string
	found := 0
	for _, l := range lines {
		kind, ok := strings.CutPrefix(l.name, g.prefix)
		if !ok || strings.Contains(kind, "/") {
			continue
		}
		ns := l.metrics["ns/op"]
		figures = append(figures, fmt.Sprintf("%s %.0f ns, %.0f B, %.0f allocs", kind, ns, l.metrics["B/op"], l.metrics["allocs/op"]))
		if strings.HasPrefix(kind, "key-") {
			continue
		}
		found++
		baseName := keylessBase(kind)
		base, ok := byName[g.prefix+baseName]
		if !ok {
			r.fail(label+" "+kind, g.metric, fmt.Errorf("no baseline %s%s in the benchmark output", g.prefix, baseName))
			continue
		}
		rt := ratio(ns, base.metrics["ns/op"])
		x := row{kase: label + " " + kind, metric: g.metric,
			baseline: strings.TrimPrefix(baseName, "key-ecdsa-p256-") + " with a key: " + fNs(base.metrics["ns/op"]),
			proxy:    fNs(ns), ratio: fRatio(rt), goal: g.goal}
		if g.within != nil {
			x.met = met(g.within(rt))
		}
		r.add(x)
	}
	if found == 0 {
		r.fail(label, g.metric, fmt.Errorf("no keyless %s* benchmark in the output", g.prefix))
		return
	}
	r.note("Case 11 %s, per operation (%s): %s.", g.label, fastestOf(runs), strings.Join(figures, "; "))
}

// fastestOf says how many runs a figure is the fastest of.
func fastestOf(runs int) string {
	if runs == 1 {
		return "one run"
	}
	return fmt.Sprintf("fastest of %d runs", runs)
}

// runKeylessBench runs the two benchmarks once, BenchmarkKeylessDecide
// against the docker-registry at addr.
func runKeylessBench(ctx context.Context, t *testBinary, benchtime, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, t.path, "-test.run", "^$", "-test.bench", keylessBenchPattern,
		"-test.benchtime", benchtime, "-test.benchmem", "-bench.registry", addr)
	cmd.Dir = t.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s -test.bench %s: %w: %s", filepath.Base(t.path), keylessBenchPattern, err, lastChars(string(out), 600))
	}
	return string(out), nil
}

// fNs formats nanoseconds, as case 7 does.
func fNs(ns float64) string { return fmt.Sprintf("%.0f ns", ns) }
