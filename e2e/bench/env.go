package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"
)

// env is everything a run started: components, seeded images, paths.
type env struct {
	o      *options
	ws     string // temporary workspace
	cosign string // built binary
	key    string // private key
	pub    string // public key

	upstream    *server  // docker-registry, the source of truth
	counter     *counter // counting reverse proxy in front of upstream
	proxy       *server  // cosign proxy straight to upstream (warm, blob, clients)
	proxyCount  *server  // cosign proxy through the counter (cold, stampede)
	nginx       *server
	pullThrough *server
	containerd  *containerd

	warm     seeded
	cold     []seeded
	stampede seeded
	multi    seeded
	bigBlob  string // digest of the throughput blob in repo bigRepo
	bigSize  int64

	procs   []*proc
	closers []func() // in-process proxies
}

// bigRepo holds the throughput blob.
const bigRepo = "bench/big"

// registry is the name clients use for the upstream, which the proxies map
// to it and which the signatures carry.
func (e *env) registry() string { return e.upstream.addr }

// pids names the processes whose CPU time a case accounts: the upstream
// and, with proxy, the cosign proxy serving straight to it (when it runs
// as its own process).
func (e *env) pids(proxy bool) map[string]int {
	m := map[string]int{"upstream": e.upstream.pid()}
	if proxy && e.proxy != nil && e.proxy.proc != nil {
		m["proxy"] = e.proxy.pid()
	}
	return m
}

// setUp starts the components the selected cases need and seeds the
// upstream. On error the returned env still needs tearDown.
func setUp(ctx context.Context, o *options) (*env, error) {
	ws, err := os.MkdirTemp("", "cosign-bench-")
	if err != nil {
		return nil, fmt.Errorf("workspace: %w", err)
	}
	e := &env{o: o, ws: ws}
	if !o.cases.any(1, 2, 3, 4, 5, 8, 9) {
		return e, nil // cases 6 and 7 only run Go benchmarks
	}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"build cosign", e.build},
		{"start upstream docker-registry", e.startUpstream},
		{"seed and sign images", e.seed},
		{"start cosign proxies", e.startProxies},
		{"start peers", e.startPeers},
	}
	for _, s := range steps {
		t := time.Now()
		if err := s.fn(ctx); err != nil {
			return e, fmt.Errorf("%s: %w", s.name, err)
		}
		log.Printf("%s: %s", s.name, time.Since(t).Round(time.Millisecond))
	}
	return e, nil
}

func (e *env) build(ctx context.Context) error {
	bin, err := buildCosign(ctx, e.o.repo, e.ws)
	e.cosign = bin
	return err
}

func (e *env) startUpstream(ctx context.Context) error {
	up, err := startRegistry(ctx, e.ws, "upstream", "")
	if err != nil {
		return err
	}
	e.upstream = up
	e.procs = append(e.procs, up.proc)
	if e.o.cases.any(3, 5) {
		c, err := newCounter(up.url())
		if err != nil {
			return err
		}
		if err := c.start(); err != nil {
			return fmt.Errorf("counter: %w", err)
		}
		e.counter = c
	}
	return nil
}

// seed pushes and signs what the selected cases pull.
func (e *env) seed(ctx context.Context) error {
	keyDir := filepath.Join(e.ws, "keys")
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return err
	}
	var err error
	if e.key, e.pub, err = keyPair(ctx, e.cosign, keyDir); err != nil {
		return err
	}
	reg := e.registry()
	var toSign []string
	push := func(repo, tag string, size, layers int64) (seeded, error) {
		s, err := pushRandom(ctx, reg, repo, tag, size, layers)
		if err == nil {
			toSign = append(toSign, s.ref(reg))
		}
		return s, err
	}
	if e.o.cases.any(1, 2) {
		if e.warm, err = push("bench/warm", "v1", 1024, 2); err != nil {
			return err
		}
		if err := tagCopies(ctx, reg, e.warm, warmTags); err != nil {
			return err
		}
	}
	if e.o.cases[3] {
		for i := 0; i < e.o.coldImages; i++ {
			s, err := push(fmt.Sprintf("bench/cold-%02d", i), "v1", 512, 1)
			if err != nil {
				return err
			}
			e.cold = append(e.cold, s)
		}
	}
	if e.o.cases[5] {
		if e.stampede, err = push("bench/stampede", "v1", 512, 1); err != nil {
			return err
		}
	}
	if e.o.cases[8] {
		if e.multi, err = push("bench/multi", "v1", 8<<20, 8); err != nil {
			return err
		}
	}
	if err := signAll(ctx, e.cosign, e.key, toSign); err != nil {
		return err
	}
	if e.o.cases[4] {
		rr := &rawRegistry{base: e.upstream.url(), client: newClient(1)}
		t := time.Now()
		if e.bigBlob, err = pushBigImage(ctx, rr, bigRepo, "v1", e.o.blobSize); err != nil {
			return err
		}
		e.bigSize = e.o.blobSize
		log.Printf("pushed %d MiB blob in %s", e.bigSize>>20, time.Since(t).Round(time.Millisecond))
	}
	return nil
}

func (e *env) startProxies(ctx context.Context) error {
	if e.o.cases.any(1, 2, 4, 8) {
		p, err := e.startProxy(ctx, "proxy", e.upstream.url())
		if err != nil {
			return err
		}
		e.proxy = p
	}
	if e.o.cases.any(3, 5) {
		p, err := e.startProxy(ctx, "proxy-counted", e.counter.url())
		if err != nil {
			return err
		}
		e.proxyCount = p
	}
	return nil
}

// startProxy starts a cosign proxy to url, as a subprocess or, with
// -profile, inside this process.
func (e *env) startProxy(ctx context.Context, name, url string) (*server, error) {
	if e.o.profile != "" {
		p, stop, err := startProxyInProcess(ctx, e.ws, name, e.registry(), url, e.pub)
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, stop)
		return p, nil
	}
	p, err := startProxy(ctx, e.ws, name, e.cosign, e.registry(), url, e.pub)
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, p.proc)
	return p, nil
}

func (e *env) startPeers(ctx context.Context) error {
	if e.o.cases[4] {
		n, err := startNginx(ctx, e.ws, e.upstream.addr)
		if err != nil {
			return err
		}
		e.nginx = n
		e.procs = append(e.procs, n.proc)
		pt, err := startRegistry(ctx, e.ws, "pull-through", e.upstream.url())
		if err != nil {
			return err
		}
		e.pullThrough = pt
		e.procs = append(e.procs, pt.proc)
	}
	if e.o.cases[8] {
		if _, err := os.Stat(skopeoBin); err != nil {
			return fmt.Errorf("skopeo: %w", err)
		}
		c, err := startContainerd(ctx, e.ws)
		if err != nil {
			return err
		}
		e.containerd = c
		e.procs = append(e.procs, c.proc)
	}
	return nil
}

// tearDown stops every component, newest first, and removes the workspace
// unless -keep was given.
func (e *env) tearDown() {
	for _, c := range e.closers {
		c()
	}
	for i := len(e.procs) - 1; i >= 0; i-- {
		e.procs[i].stop()
	}
	if e.counter != nil {
		e.counter.close()
	}
	if e.o.keep {
		log.Printf("workspace kept: %s", e.ws)
		return
	}
	if err := os.RemoveAll(e.ws); err != nil {
		log.Printf("remove workspace: %v", err)
	}
}
