package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// benchEnv is an env with one signed image, its decision and bytes warm.
func benchEnv(b *testing.B) (*env, string) {
	e := newEnv(b)
	_, d := e.pushRandom("prod/app", "v1")
	e.sign("prod/app", d, e.key)
	resp, err := http.Get(e.proxy.URL + "/v2/prod/app/manifests/v1")
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("warm-up: %v %v", resp, err)
	}
	resp.Body.Close()
	return e, d.String()
}

func benchGet(b *testing.B, url string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkManifest compares a warm manifest GET through the proxy with the
// same GET straight to the upstream.
func BenchmarkManifest(b *testing.B) {
	e, d := benchEnv(b)
	b.Run("direct by tag", func(b *testing.B) { benchGet(b, e.up.URL+"/v2/prod/app/manifests/v1") })
	b.Run("proxy by tag", func(b *testing.B) { benchGet(b, e.proxy.URL+"/v2/prod/app/manifests/v1") })
	b.Run("direct by digest", func(b *testing.B) { benchGet(b, e.up.URL+"/v2/prod/app/manifests/"+d) })
	b.Run("proxy by digest", func(b *testing.B) { benchGet(b, e.proxy.URL+"/v2/prod/app/manifests/"+d) })
}

// BenchmarkHandler measures the proxy's own work on a warm request, without
// the client side of HTTP.
func BenchmarkHandler(b *testing.B) {
	e, d := benchEnv(b)
	for name, path := range map[string]string{"by tag": "/v2/prod/app/manifests/v1", "by digest": "/v2/prod/app/manifests/" + d} {
		b.Run(name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				e.srv.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
