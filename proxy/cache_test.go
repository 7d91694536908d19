package proxy

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cosign-dev/cosign/sigstore"
)

func testManifest(n int, fill byte) *manifest {
	body := bytes.Repeat([]byte{fill}, n)
	return newManifest(body, "application/vnd.oci.image.manifest.v1+json", sha256.Sum256(body), false)
}

func TestManifestCacheBoundsBytesAndExpires(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newManifestCache(100, time.Minute)
	c.now = func() time.Time { return now }
	key := func(b byte) cacheKey { return cacheKey{registry: "r", repo: "a", digest: [32]byte{b}} }

	c.add(key(1), testManifest(40, 1))
	c.add(key(2), testManifest(40, 2))
	if c.get(key(1)) == nil { // 1 is now the most recently used
		t.Fatal("entry 1 missing")
	}
	c.add(key(3), testManifest(40, 3)) // 120 bytes > 100: evicts the least recently used, 2
	if n, size := c.stats(); n != 2 || size != 80 {
		t.Fatalf("%d entries, %d bytes; want 2, 80", n, size)
	}
	if c.get(key(2)) != nil || c.get(key(1)) == nil || c.get(key(3)) == nil {
		t.Fatal("wrong entry evicted")
	}
	c.add(key(4), testManifest(101, 4)) // larger than the whole cache: not kept
	if c.get(key(4)) != nil {
		t.Fatal("oversized entry kept")
	}
	for _, k := range []cacheKey{
		{registry: "other", repo: "a", digest: [32]byte{1}},
		{registry: "r", repo: "b", digest: [32]byte{1}},
		{registry: "r", repo: "a", digest: [32]byte{1}, cred: credential("Basic eDp5")},
	} {
		if c.get(k) != nil {
			t.Fatalf("key %+v shares an entry with another upstream, repository or credential", k)
		}
	}
	now = now.Add(time.Minute)
	if c.get(key(1)) != nil {
		t.Fatal("expired entry served")
	}
	if n, size := c.stats(); n != 1 || size != 40 {
		t.Fatalf("after expiry: %d entries, %d bytes", n, size)
	}
	off := newManifestCache(-1, time.Minute)
	off.add(key(1), testManifest(1, 1))
	if off.get(key(1)) != nil {
		t.Fatal("a disabled cache kept an entry")
	}
}

func TestSignatureArtifactIndex(t *testing.T) {
	e := newEnv(t)
	// A referrers-tag index whose one entry claims to be a bundle but is a
	// runnable image: the index is served, the entry is still gated.
	img, runnable := e.pushRandom("prod/app", "runnable")
	raw, mt := rawManifest(t, img)
	index := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",`+
		`"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"artifactType":%q}]}`, mt, runnable, len(raw), sigstore.BundleMediaType)
	tag := "sha256-" + strings.Repeat("1", 64)
	putManifest(t, e.up, "prod/app", tag, "application/vnd.oci.image.index.v1+json", []byte(index))
	wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/"+tag), http.StatusOK, "")
	wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/"+runnable.String()), http.StatusForbidden, "DENIED")
}

func TestAccessLog(t *testing.T) {
	var buf bytes.Buffer
	e := newEnv(t)
	_, d := e.pushRandom("prod/app", "v1")
	e.sign("prod/app", d, e.key)
	srv, err := New(e.cfg, WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.proxy.Config.Handler = srv.Handler()
	wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/v1"), 200, "")
	wantStatus(t, e.do(http.MethodGet, "/v2/prod/nope/manifests/v1"), 404, "")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one line per request, got %q", lines)
	}
	for i, want := range []string{
		`method=GET path=/v2/prod/app/manifests/v1 status=200 bytes=`,
		`method=GET path=/v2/prod/nope/manifests/v1 status=404`,
	} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %q lacks %q", lines[i], want)
		}
	}
	if !strings.Contains(lines[0], `decision=verified`) {
		t.Errorf("line %q lacks the decision", lines[0])
	}
}

func FuzzCheckManifest(f *testing.F) {
	for _, s := range []string{
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`,
		`{"manifests":[{"artifactType":"` + sigstore.BundleMediaType + `"}]}`,
		`{"layers":[{"mediaType":"` + sigstore.SimpleSigningMediaType + `"}]}`,
		`{"a":1,"A":2}`, `[]`, `{"layers":[{"MediaType":"x"}]}`,
	} {
		f.Add([]byte(s), "application/vnd.oci.image.manifest.v1+json")
	}
	up := &upstream{registry: "r.example"}
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		m, err := checkManifest(target{up: up, repo: "a"}, body, contentType, sha256.Sum256(body))
		if err != nil {
			if e, ok := err.(*Error); !ok || e.Status != http.StatusBadGateway {
				t.Fatalf("error %v is not a 502 *Error", err)
			}
			return
		}
		doc, err := parseManifestDoc(body)
		if err != nil || (doc.Manifests != nil && (doc.Layers != nil || doc.Config != nil)) {
			t.Fatalf("accepted an ambiguous document %q", body)
		}
		if m.mediaType == "" || !bytes.Equal(m.body, body) {
			t.Fatalf("accepted %q as %+v", body, m)
		}
	})
}
