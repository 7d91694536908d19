package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

func TestQuantileIsNearestRank(t *testing.T) {
	sorted := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty gives zero", nil, 0.5, 0},
		{"median of ten", sorted, 0.5, 5},
		{"p99 of ten is the largest", sorted, 0.99, 10},
		{"p0 is the smallest", sorted, 0, 1},
		{"single value", []time.Duration{7}, 0.99, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := quantile(tt.in, tt.q); got != tt.want {
				t.Errorf("quantile(%v, %v) = %v, want %v", tt.in, tt.q, got, tt.want)
			}
		})
	}
}

func TestMedianSortsItsInput(t *testing.T) {
	if got := median([]time.Duration{9, 1, 5}); got != 5 {
		t.Errorf("median = %v, want 5", got)
	}
	if got := medianInt([]int{4, 1, 3, 2}); got != 3 {
		t.Errorf("medianInt = %v, want the upper middle 3", got)
	}
}

func TestRoundsCountsSequentialTrips(t *testing.T) {
	t0 := time.Now()
	span := func(from, to float64) hit {
		return hit{start: t0.Add(ms(from)), end: t0.Add(ms(to))}
	}
	tests := []struct {
		name string
		hits []hit
		want int
	}{
		{"none", nil, 0},
		{"one request", []hit{span(0, 1)}, 1},
		{"manifest then sig then blob", []hit{span(0, 1), span(2, 3), span(4, 5)}, 3},
		{"concurrent blobs are one round", []hit{span(0, 1), span(2, 3), span(4, 6), span(4.1, 5)}, 3},
		{"sig and referrers together", []hit{span(0, 1), span(2, 3), span(2.05, 3.5), span(4, 5)}, 3},
		{"order of recording does not matter", []hit{span(4, 5), span(0, 1), span(2, 3)}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rounds(tt.hits); got != tt.want {
				t.Errorf("rounds = %d, want %d", got, tt.want)
			}
		})
	}
}

const sampleBench = `goos: linux
goarch: amd64
pkg: github.com/cosign-dev/cosign/verifier
cpu: AMD EPYC
BenchmarkEvaluate/ed25519-2         	   30000	     41000 ns/op	    2048 B/op	      30 allocs/op
BenchmarkEvaluate/ecdsa-2           	   20000	     60000 ns/op	    4096 B/op	      50 allocs/op
BenchmarkBareVerify/ed25519-2       	   30000	     40000 ns/op	       0 B/op	       0 allocs/op
BenchmarkBareVerify/ECDSA-2         	   20000	     50000 ns/op	       0 B/op	       0 allocs/op
BenchmarkDecideCached/1k-2          	 1000000	       210 ns/op	       180 bytes/entry	       0 B/op
BenchmarkDecideCached/100k-2        	 1000000	       250.5 ns/op	       175 bytes/entry	       0 B/op
PASS
ok  	github.com/cosign-dev/cosign/verifier	12.3s
`

func TestParseBenchOutputReadsEveryMetric(t *testing.T) {
	lines := parseBenchOutput(sampleBench)
	if len(lines) != 6 {
		t.Fatalf("parsed %d lines, want 6: %+v", len(lines), lines)
	}
	last := lines[5]
	if last.name != "BenchmarkDecideCached/100k" {
		t.Errorf("name = %q, want the GOMAXPROCS suffix stripped", last.name)
	}
	if last.metrics["ns/op"] != 250.5 || last.metrics["bytes/entry"] != 175 || last.n != 1000000 {
		t.Errorf("metrics = %v n=%d", last.metrics, last.n)
	}
}

func TestParseBenchOutputSkipsNonResults(t *testing.T) {
	out := "BenchmarkFoo\n--- FAIL: BenchmarkBar\nBenchmarkBaz-2 12 not-a-number ns/op\nok x 1s\n"
	if got := parseBenchOutput(out); len(got) != 0 {
		t.Errorf("parsed %+v from lines that are not results", got)
	}
}

func TestPairBenchesMatchesByNameCaseInsensitively(t *testing.T) {
	pairs := pairBenches(parseBenchOutput(sampleBench))
	if len(pairs) != 2 {
		t.Fatalf("pairs = %+v, want ed25519 and ecdsa", pairs)
	}
	for _, p := range pairs {
		if benchKey(p.bare.name, "BenchmarkBareVerify") != p.key {
			t.Errorf("pair %q joined %s with %s", p.key, p.eval.name, p.bare.name)
		}
	}
}

func TestPairBenchesPairsALoneCouple(t *testing.T) {
	lines := []benchLine{
		{name: "BenchmarkEvaluateSimpleSigning", metrics: map[string]float64{"ns/op": 1}},
		{name: "BenchmarkBareVerifyEd25519", metrics: map[string]float64{"ns/op": 1}},
	}
	if got := pairBenches(lines); len(got) != 1 {
		t.Errorf("pairs = %+v, want the only two paired", got)
	}
}

func TestParseStatusField(t *testing.T) {
	status := "Name:\tcosign\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\n"
	tests := []struct {
		field   string
		want    int64
		wantErr bool
	}{
		{"VmHWM", 40 << 20, false},
		{"VmRSS", 20 << 20, false},
		{"VmSwap", 0, true},
		{"Name", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			got, err := parseStatusField(strings.NewReader(status), tt.field)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatusField(%s) = %d, %v; want %d, error %v", tt.field, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseCases(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"1,2,5", "1,2,5", false},
		{" 8 , 3 ", "3,8", false},
		{"all", "1,2,3,4,5,6,7,8,9,10,11", false},
		{"12", "", true},
		{"x", "", true},
		{",", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseCases(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseCases(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err == nil && got.String() != tt.want {
				t.Errorf("parseCases(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestQuickShortensDefaultsButKeepsExplicitFlags(t *testing.T) {
	o, err := parseOptions([]string{"-quick", "-blob-size", "1024", "-repo", t.TempDir()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.duration != time.Second || o.blobSize != 1024 || o.coldImages != 5 {
		t.Errorf("quick options = duration %s blob %d cold %d", o.duration, o.blobSize, o.coldImages)
	}
	if _, err := parseOptions([]string{"-duration", "0", "-repo", t.TempDir()}, io.Discard); err == nil {
		t.Error("a zero duration was accepted")
	}
}

func TestPseudoRandomIsDeterministicAndSized(t *testing.T) {
	a, _ := io.ReadAll(newPseudoRandom(1, 100000))
	b, _ := io.ReadAll(newPseudoRandom(1, 100000))
	c, _ := io.ReadAll(newPseudoRandom(2, 100000))
	if len(a) != 100000 {
		t.Fatalf("read %d bytes, want 100000", len(a))
	}
	if !bytes.Equal(a, b) {
		t.Error("same seed gave different bytes")
	}
	if bytes.Equal(a, c) {
		t.Error("different seeds gave the same bytes")
	}
}

func TestRawRegistryStreamsABlobAndAManifest(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	ctx := context.Background()
	rr := &rawRegistry{base: srv.URL, client: srv.Client()}
	const size = 3<<20 + 17
	layer, err := pushBigImage(ctx, rr, "bench/big", "v1", size)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := io.ReadAll(newPseudoRandom(7, size))
	sum := sha256.Sum256(want)
	if layer != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("layer digest %s does not hash the generated bytes", layer)
	}
	mbps, err := readBlob(ctx, srv.URL+"/v2/bench/big/blobs/"+layer, size)
	if err != nil || mbps <= 0 {
		t.Errorf("readBlob = %v, %v", mbps, err)
	}
	if _, err := readBlob(ctx, srv.URL+"/v2/bench/big/blobs/"+layer, size+1); err == nil {
		t.Error("readBlob accepted a blob of the wrong length")
	}
	if err := doOnce(ctx, srv.Client(), http.MethodHead, srv.URL+"/v2/bench/big/manifests/v1"); err != nil {
		t.Errorf("manifest not stored: %v", err)
	}
}

func TestCounterForwardsAndRecords(t *testing.T) {
	up := httptest.NewServer(registry.New())
	defer up.Close()
	c, err := newCounter(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	defer c.close()
	cl := newClient(1)
	sigTag := "sha256-" + strings.Repeat("ab", 32) + ".sig"
	_ = doOnce(context.Background(), cl, http.MethodGet, c.url()+"/v2/a/manifests/"+sigTag)
	_ = doOnce(context.Background(), cl, http.MethodHead, c.url()+"/v2/a/manifests/v1")
	hits := c.snapshot()
	if len(hits) != 2 {
		t.Fatalf("recorded %d requests, want 2", len(hits))
	}
	if hits[0].status != http.StatusNotFound {
		t.Errorf("status = %d, want the upstream's 404", hits[0].status)
	}
	if n := countMatching(hits, "", ".sig"); n != 1 {
		t.Errorf("countMatching .sig = %d, want 1", n)
	}
	if n := countMatching(hits, http.MethodGet, "/v1"); n != 0 {
		t.Errorf("countMatching GET /v1 = %d, want 0 (it was a HEAD)", n)
	}
	if d := describeHits(hits); !strings.Contains(d, "GET manifests/sha256-abababab….sig 404 [0.0-") {
		t.Errorf("describeHits = %q", d)
	}
	c.reset()
	if len(c.snapshot()) != 0 {
		t.Error("reset kept requests")
	}
}

func TestRunLoadStopsAtTheRequestCap(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		if r.Header.Get("Accept") == "" {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	res := runLoad(context.Background(), newClient(4), loadSpec{method: http.MethodGet, url: srv.URL, conc: 4, dur: time.Minute, max: 50})
	if res.ok != 50 || res.errs != 0 || served.Load() != 50 {
		t.Errorf("ok=%d errs=%d served=%d (%s), want 50 requests exactly", res.ok, res.errs, served.Load(), res.firstErr)
	}
	if res.rps() <= 0 || res.quantile(0.5) <= 0 {
		t.Errorf("rps=%v p50=%v", res.rps(), res.quantile(0.5))
	}
}

func TestRunLoadCountsErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	}))
	defer srv.Close()
	res := runLoad(context.Background(), newClient(2), loadSpec{method: http.MethodGet, url: srv.URL, conc: 2, dur: time.Minute, max: 10})
	if res.ok != 0 || res.errs != 10 || !strings.Contains(res.firstErr, "403") {
		t.Errorf("ok=%d errs=%d first=%q, want 10 errors naming 403", res.ok, res.errs, res.firstErr)
	}
}

func TestReportMarkdownFillsEmptyCellsAndEscapesErrors(t *testing.T) {
	r := &report{}
	r.add(row{kase: "1 GET tag c=1", metric: "throughput", baseline: "direct 10 req/s", proxy: "9 req/s",
		ratio: "0.90x", goal: ">= 0.8x", met: met(true)})
	r.fail("4 blob", "nginx", io.ErrUnexpectedEOF)
	r.add(row{kase: "x", metric: "y", proxy: "a|b"})
	r.fail("5", "z", &strError{"bad | pipe\nline"})
	r.note("a note")
	md := r.markdown("machine", "cmd", time.Second)
	for _, want := range []string{
		"| 1 GET tag c=1 | throughput | direct 10 req/s | 9 req/s | 0.90x | >= 0.8x | yes |",
		"| 4 blob | nginx | — | error: unexpected EOF | — | — | — |",
		"error: bad / pipe line",
		"- a note",
		`| x | y | — | a\|b |`,
		"Machine: machine",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

type strError struct{ s string }

func (e *strError) Error() string { return e.s }

func TestProxyConfigNamesUpstreamAndKey(t *testing.T) {
	cfg := proxyConfig("127.0.0.1:1", "127.0.0.1:2", "http://127.0.0.1:3", "/k/cosign.pub")
	for _, want := range []string{
		"listen: 127.0.0.1:1", "registry: 127.0.0.1:2", "url: http://127.0.0.1:3",
		"defaultUpstream: 127.0.0.1:2", `match: ["127.0.0.1:2/**"]`, "keys: [/k/cosign.pub]", "mode: enforce",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
}

func TestMergeAddsSlices(t *testing.T) {
	a := loadResult{ok: 2, elapsed: time.Second, lat: []time.Duration{3, 5}}
	a.merge(loadResult{ok: 1, errs: 1, elapsed: time.Second, lat: []time.Duration{1}, firstErr: "x"})
	if a.ok != 3 || a.errs != 1 || a.elapsed != 2*time.Second || a.firstErr != "x" || a.lat[0] != 1 || a.rps() != 1.5 {
		t.Errorf("merged = %+v", a)
	}
}

func TestLoadNoteWarnsOnABusyMachine(t *testing.T) {
	if s := loadNote(0, 0); strings.Contains(s, "busy") {
		t.Errorf("idle machine called busy: %s", s)
	}
	if s := loadNote(0, 100); strings.Contains(s, "busy") {
		t.Errorf("the bench's own load at the end called busy: %s", s)
	}
	if s := loadNote(100, 0); !strings.Contains(s, "busy") {
		t.Errorf("no warning at load 100: %s", s)
	}
}

func TestParseStatCPUAddsUserAndSystemTime(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr bool
	}{
		{"plain", "12 (cat) R 1 1 1 0 -1 4194304 99 0 0 0 250 50 0 0 20 0 1 0", 3 * time.Second, false},
		{"command with spaces and parens", "12 (a (b) c) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0", 30 * time.Millisecond, false},
		{"truncated", "12 (cat) R 1 1", 0, true},
		{"no command", "garbage", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU(tt.stat)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatCPU = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestCPUMeterAccountsThisProcess(t *testing.T) {
	m := newCPUMeter(nil)
	m.begin()
	start, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = sha256.Sum256([]byte{byte(x)})
		if x%1000 == 0 {
			if now, _ := cpuTime(os.Getpid()); now-start >= 50*time.Millisecond {
				break
			}
		}
	}
	m.end()
	if m.used["bench"] < 50*time.Millisecond {
		t.Errorf("a busy loop of at least 50ms CPU was accounted as %v", m.used["bench"])
	}
	if s := m.perUnit(1, "µs"); !strings.HasPrefix(s, "bench ") {
		t.Errorf("perUnit = %q", s)
	}
}

func TestFastestKeepsTheQuickestRunPerName(t *testing.T) {
	out := `BenchmarkEvaluate/ed25519-2   10  90000 ns/op
BenchmarkBareVerify/ed25519-2 10  70000 ns/op
BenchmarkEvaluate/ed25519-2   10  75000 ns/op
BenchmarkEvaluate/ed25519-2   10  80000 ns/op
`
	got := fastest(parseBenchOutput(out))
	if len(got) != 2 || got[0].name != "BenchmarkEvaluate/ed25519" || got[0].metrics["ns/op"] != 75000 {
		t.Errorf("fastest = %+v, want Evaluate at 75000 first, then BareVerify", got)
	}
}
