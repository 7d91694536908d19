package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// settle is how long to wait after a response for the counter to record the
// upstream requests that fed it.
const settle = 20 * time.Millisecond

// caseCold is case 3: the first pull of a signed image (manifest, signature
// lookup, verification) against a direct manifest GET, both through the
// counter, over distinct images so each pull is cold. Goal: no more than two
// upstream round trips added.
func caseCold(ctx context.Context, e *env, r *report) {
	const label = "3 cold GET tag"
	direct, proxied := newClient(1), newClient(1)
	var dLat, pLat []time.Duration
	var reqs, rnds []int
	var trace string
	for i, img := range e.cold {
		path := "/v2/" + img.repo + "/manifests/" + img.tag
		t := time.Now()
		if err := doOnce(ctx, direct, http.MethodGet, e.counter.url()+path); err != nil {
			r.fail(label, "latency (direct)", err)
			return
		}
		dLat = append(dLat, time.Since(t))

		time.Sleep(settle)
		e.counter.reset()
		t = time.Now()
		if err := doOnce(ctx, proxied, http.MethodGet, e.proxyCount.url()+path); err != nil {
			r.fail(label, "latency (proxy)", err)
			return
		}
		pLat = append(pLat, time.Since(t))
		time.Sleep(settle)
		hits := e.counter.snapshot()
		reqs = append(reqs, len(hits))
		rnds = append(rnds, rounds(hits))
		if i == 0 {
			trace = describeHits(hits)
		}
	}
	n := len(e.cold)
	dm, pm := median(dLat), median(pLat)
	r.add(row{kase: label, metric: fmt.Sprintf("latency, median of %d", n), baseline: "direct " + fMS(dm),
		proxy: fMS(pm), ratio: fRatio(ratio(float64(pm), float64(dm)))})
	rm, qm := medianInt(rnds), medianInt(reqs)
	r.add(row{kase: label, metric: "upstream round trips (requests)", baseline: "direct 1",
		proxy: fmt.Sprintf("%d (%d requests)", rm, qm), ratio: fmt.Sprintf("%+d", rm-1),
		goal: "added <= 2", met: met(rm-1 <= 2)})
	r.note("Case 3, upstream requests of one cold pull through the proxy, in order: %s.", trace)
}

// medianInt is the median of ints (upper middle for an even count).
func medianInt(v []int) int {
	if len(v) == 0 {
		return 0
	}
	s := append([]int(nil), v...)
	sort.Ints(s)
	return s[len(s)/2]
}

// caseStampede is case 5: many concurrent pulls of one cold signed tag.
// Goal: one upstream lookup of the signature manifest.
func caseStampede(ctx context.Context, e *env, r *report) {
	n := e.o.stampede
	label := fmt.Sprintf("5 stampede %d GETs", n)
	img := e.stampede
	url := e.proxyCount.url() + "/v2/" + img.repo + "/manifests/" + img.tag
	c := newClient(n)
	time.Sleep(settle)
	e.counter.reset()

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lat      []time.Duration
		failures []string
		gate     = make(chan struct{})
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			t := time.Now()
			err := doOnce(ctx, c, http.MethodGet, url)
			d := time.Since(t)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures = append(failures, err.Error())
				return
			}
			lat = append(lat, d)
		}()
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	wall := time.Since(start)
	time.Sleep(settle)
	hits := e.counter.snapshot()
	c.CloseIdleConnections()

	sigSuffix := "/manifests/" + strings.Replace(img.digest, ":", "-", 1) + ".sig"
	sig := countMatching(hits, "", sigSuffix)
	tagGets := countMatching(hits, "", "/manifests/"+img.tag)
	r.add(row{kase: label, metric: "upstream .sig manifest requests", proxy: fmt.Sprint(sig),
		goal: "1", met: met(sig == 1)})
	r.add(row{kase: label, metric: "upstream requests (tag manifest)", proxy: fmt.Sprintf("%d (%d)", len(hits), tagGets)})
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r.add(row{kase: label, metric: "answered 2xx; p50 / p99; wall",
		proxy: fmt.Sprintf("%d/%d; %s / %s; %s", len(lat), n, fMS(quantile(lat, 0.5)), fMS(quantile(lat, 0.99)), fSec(wall))})
	if len(failures) > 0 {
		r.note("Case 5: %d of %d pulls failed, first: %s", len(failures), n, failures[0])
	}
}
