package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// manifestAccept is what registry clients send when they fetch a manifest.
const manifestAccept = "application/vnd.oci.image.index.v1+json, " +
	"application/vnd.oci.image.manifest.v1+json, " +
	"application/vnd.docker.distribution.manifest.list.v2+json, " +
	"application/vnd.docker.distribution.manifest.v2+json"

// newClient is an HTTP client tuned for conc concurrent requests to one host,
// ignoring any proxy of the environment.
func newClient(conc int) *http.Client {
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			MaxIdleConns:        conc + 8,
			MaxIdleConnsPerHost: conc + 8,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		},
	}
}

// loadSpec is one closed-loop load: conc workers send method url back to back
// until dur passes or max requests were sent. With urls, worker w sends
// urls[w%len(urls)] instead.
type loadSpec struct {
	method string
	url    string
	urls   []string
	conc   int
	dur    time.Duration
	max    int
}

// urlFor is the URL worker w sends.
func (s loadSpec) urlFor(w int) string {
	if len(s.urls) > 0 {
		return s.urls[w%len(s.urls)]
	}
	return s.url
}

// loadResult is what a load measured.
type loadResult struct {
	ok, errs int
	elapsed  time.Duration
	lat      []time.Duration // sorted latencies of the successful requests
	firstErr string
}

// rps is successful requests per second.
func (r loadResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

// quantile returns the q-quantile (0..1) of the latencies, 0 when there are none.
func (r loadResult) quantile(q float64) time.Duration { return quantile(r.lat, q) }

// quantile returns the q-quantile of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

// median of unsorted durations.
func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return quantile(s, 0.5)
}

// doOnce sends one request with the manifest Accept header, drains the body
// and checks for a 2xx status.
func doOnce(ctx context.Context, c *http.Client, method, url string) error {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 8<<20))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: status %d", method, url, resp.StatusCode)
	}
	return err
}

// runLoad drives the load described by s and records every latency.
func runLoad(ctx context.Context, c *http.Client, s loadSpec) loadResult {
	ctx, cancel := context.WithTimeout(ctx, s.dur+30*time.Second)
	defer cancel()
	var (
		sent     atomic.Int64
		mu       sync.Mutex
		res      loadResult
		wg       sync.WaitGroup
		deadline = time.Now().Add(s.dur)
	)
	perWorker := make([][]time.Duration, s.conc)
	start := time.Now()
	for w := 0; w < s.conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			lat := make([]time.Duration, 0, min(s.max/s.conc+1, 1<<16))
			errs := 0
			url := s.urlFor(w)
			for time.Now().Before(deadline) && sent.Add(1) <= int64(s.max) && ctx.Err() == nil {
				t := time.Now()
				if err := doOnce(ctx, c, s.method, url); err != nil {
					errs++
					mu.Lock()
					if res.firstErr == "" {
						res.firstErr = err.Error()
					}
					mu.Unlock()
					continue
				}
				lat = append(lat, time.Since(t))
			}
			perWorker[w] = lat
			mu.Lock()
			res.errs += errs
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	for _, l := range perWorker {
		res.lat = append(res.lat, l...)
	}
	sort.Slice(res.lat, func(i, j int) bool { return res.lat[i] < res.lat[j] })
	res.ok = len(res.lat)
	return res
}

// merge adds the figures of another slice of the same load.
func (r *loadResult) merge(o loadResult) {
	r.ok += o.ok
	r.errs += o.errs
	r.elapsed += o.elapsed
	if r.firstErr == "" {
		r.firstErr = o.firstErr
	}
	r.lat = append(r.lat, o.lat...)
	sort.Slice(r.lat, func(i, j int) bool { return r.lat[i] < r.lat[j] })
}

// warmUp sends n requests (or for at most d) so connections and caches are hot.
func warmUp(ctx context.Context, c *http.Client, s loadSpec, n int, d time.Duration) error {
	s.dur, s.max = d, n
	res := runLoad(ctx, c, s)
	if res.ok == 0 {
		return fmt.Errorf("warm-up of %s %s failed: %s", s.method, s.urlFor(0), res.firstErr)
	}
	return nil
}
