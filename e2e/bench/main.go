// Command bench measures what verifying signatures on pull costs: the cosign
// proxy side by side with going direct to the upstream registry, with nginx
// as a plain reverse proxy and with the CNCF distribution pull-through cache.
//
// It starts every part it needs on loopback (a Debian docker-registry
// upstream, the proxy built from this tree, nginx, a pull-through registry,
// a private containerd), seeds signed images, runs each case for a bounded
// time and prints one Markdown table; -out also writes it to a file.
//
//	go run ./e2e/bench -out e2e/bench/RESULTS.md
//	go run ./e2e/bench -quick            # smoke run, about 1s per case
//
// It prints figures and never fails on a slow machine: the exit status is
// non-zero only when a component could not be built or started.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"
)

// options are the command-line settings of one run.
type options struct {
	duration    time.Duration
	quick       bool
	out         string
	cases       caseSet
	maxRequests int
	blobSize    int64
	blobReps    int
	coldImages  int
	stampede    int
	clientRuns  int
	benchtime   string
	benchCount  int
	keep        bool
	profile     string
	verbose     bool
	repo        string
	slowReaders int
	slowHold    time.Duration
	// soakDuration is how long case 10 runs its load.
	soakDuration time.Duration
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	cases := fs.String("cases", "1,2,3,4,5,6,7,8,9,10,11", "comma-separated case numbers to run (or all)")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measuring time per load case and target")
	fs.BoolVar(&o.quick, "quick", false, "smoke run: 1s per case, fewer repetitions, a 256 MiB blob")
	fs.StringVar(&o.out, "out", "", "write the Markdown table to this file")
	fs.IntVar(&o.maxRequests, "max-requests", 500000, "request cap per load case and target")
	fs.Int64Var(&o.blobSize, "blob-size", 1<<30, "size of the throughput blob in bytes")
	fs.IntVar(&o.blobReps, "blob-reps", 3, "reads of the blob per target (median is reported)")
	fs.IntVar(&o.coldImages, "cold-images", 20, "distinct signed images pulled cold (case 3)")
	fs.IntVar(&o.stampede, "stampede", 200, "concurrent pulls of one cold tag (case 5)")
	fs.IntVar(&o.slowReaders, "slow-readers", 1500, "connections that never read their manifest (case 9)")
	fs.DurationVar(&o.slowHold, "slow-hold", 20*time.Second, "how long the slow readers hang on (case 9)")
	fs.DurationVar(&o.soakDuration, "soak-duration", time.Minute, "how long the soak's load runs (case 10)")
	fs.IntVar(&o.clientRuns, "client-runs", 3, "pulls per real client and target (case 8, median)")
	fs.StringVar(&o.benchtime, "benchtime", "1s", "-benchtime for the Go benchmarks (cases 6, 7)")
	fs.StringVar(&o.profile, "profile", "", "serve the proxies inside the bench process and write a CPU profile of the cases to this file\n(read it with: go tool pprof -top FILE; no RSS figure in this mode)")
	fs.IntVar(&o.benchCount, "benchcount", 3, "runs of each Go benchmark (cases 6, 7); the fastest run is kept")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary workspace (configs, logs, storage)")
	fs.BoolVar(&o.verbose, "v", false, "log progress details")
	fs.StringVar(&o.repo, "repo", "", "module root (default: nearest go.mod above the working directory)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		if !set["duration"] {
			o.duration = time.Second
		}
		if !set["blob-size"] {
			o.blobSize = 256 << 20
		}
		if !set["blob-reps"] {
			o.blobReps = 1
		}
		if !set["cold-images"] {
			o.coldImages = 5
		}
		if !set["client-runs"] {
			o.clientRuns = 1
		}
		if !set["benchtime"] {
			o.benchtime = "100ms"
		}
		if !set["slow-hold"] {
			o.slowHold = 5 * time.Second
		}
		if !set["soak-duration"] {
			o.soakDuration = 15 * time.Second
		}
		if !set["benchcount"] {
			o.benchCount = 1
		}
	}
	var err error
	if o.cases, err = parseCases(*cases); err != nil {
		return nil, err
	}
	if o.duration <= 0 || o.maxRequests <= 0 || o.blobSize <= 0 || o.blobReps <= 0 ||
		o.coldImages <= 0 || o.stampede <= 0 || o.clientRuns <= 0 || o.benchCount <= 0 ||
		o.slowReaders <= 0 || o.slowHold <= 0 {
		return nil, errors.New("durations, counts and sizes must be positive")
	}
	if o.repo == "" {
		if o.repo, err = findModuleRoot(); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// startProfile starts a CPU profile of this process into path.
func startProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		log.Printf("CPU profile written to %s", path)
	}, nil
}

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench: ")
	o, err := parseOptions(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		log.Print(err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

// run starts the components, runs the selected cases and writes the table.
// Only start-up failures are returned; a case that fails reports its error
// in the table.
func run(ctx context.Context, o *options) error {
	start, load := time.Now(), loadAverage()
	env, err := setUp(ctx, o)
	if env != nil {
		defer env.tearDown()
	}
	if err != nil {
		return fmt.Errorf("start-up: %w", err)
	}
	rep := &report{}
	if o.profile != "" {
		stopProfile, err := startProfile(o.profile)
		if err != nil {
			return err
		}
		defer stopProfile()
		rep.note("Profiled run (-profile): the proxies ran inside the bench process, sharing it with the load generator.")
	}
	for _, c := range allCases {
		if !o.cases[c.num] || ctx.Err() != nil {
			continue
		}
		log.Printf("case %d: %s", c.num, c.title)
		t := time.Now()
		c.run(ctx, env, rep)
		log.Printf("case %d done in %s", c.num, time.Since(t).Round(time.Millisecond))
	}
	rep.note("%s", loadNote(load, loadAverage()))
	md := rep.markdown(machineLine(), commandLine(o), time.Since(start))
	fmt.Print(md)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", o.out, err)
		}
		log.Printf("wrote %s", o.out)
	}
	return ctx.Err()
}
