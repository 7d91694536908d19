package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// scrapeMetrics reads the proxy's /metrics at base: each sample's value by
// its name with labels as written ("go_goroutines",
// `cosign_proxy_upstream_manifest_requests_total{method="GET",upstream="..."}`).
// It returns nil when the page cannot be read.
func scrapeMetrics(ctx context.Context, c *http.Client, base string) map[string]float64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i <= 0 {
			continue
		}
		if f, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = f
		}
	}
	return out
}

// metricOr is the sample name of m, or def when m lacks it.
func metricOr(m map[string]float64, name string, def float64) float64 {
	if v, ok := m[name]; ok {
		return v
	}
	return def
}
