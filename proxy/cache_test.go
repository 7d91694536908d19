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
	return newManifest(body, &sigstore.Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json"}, sha256.Sum256(body))
}

func TestManifestCacheBoundsBytesAndExpires(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newManifestCache(100, time.Minute)
	c.now = func() time.Time { return now }
	key := func(b byte) cacheKey { return cacheKey{registry: "r", repo: "a", digest: [32]byte{b}} }
	anon := credential{}
	has := func(k cacheKey) bool { m, _ := c.get(k, anon); return m != nil }

	c.add(key(1), testManifest(40, 1), anon)
	c.add(key(2), testManifest(40, 2), anon)
	if !has(key(1)) { // 1 is now the most recently used
		t.Fatal("entry 1 missing")
	}
	c.add(key(3), testManifest(40, 3), anon) // 120 bytes > 100: evicts the least recently used, 2
	if n, size := c.stats(); n != 2 || size != 80 {
		t.Fatalf("%d entries, %d bytes; want 2, 80", n, size)
	}
	if has(key(2)) || !has(key(1)) || !has(key(3)) {
		t.Fatal("wrong entry evicted")
	}
	c.add(key(4), testManifest(101, 4), anon) // larger than the whole cache: not kept
	if has(key(4)) {
		t.Fatal("oversized entry kept")
	}
	for _, k := range []cacheKey{
		{registry: "other", repo: "a", digest: [32]byte{1}},
		{registry: "r", repo: "b", digest: [32]byte{1}},
	} {
		if has(k) {
			t.Fatalf("key %+v shares an entry with another upstream or repository", k)
		}
	}
	now = now.Add(time.Minute)
	if has(key(1)) {
		t.Fatal("expired entry served")
	}
	if n, size := c.stats(); n != 1 || size != 40 {
		t.Fatalf("after expiry: %d entries, %d bytes", n, size)
	}
	off := newManifestCache(-1, time.Minute)
	off.add(key(1), testManifest(1, 1), anon)
	if m, _ := off.get(key(1), anon); m != nil {
		t.Fatal("a disabled cache kept an entry")
	}
}

// TestManifestCacheOneCopyPerDigest: the bytes of a digest are held once
// whoever fetched them; a credential that did not fetch them is not
// allowed to read them until allow says so, and the readers an entry
// remembers are bounded.
func TestManifestCacheOneCopyPerDigest(t *testing.T) {
	c := newManifestCache(1<<20, time.Minute)
	k := cacheKey{registry: "r", repo: "a", digest: [32]byte{1}}
	alice, bob := credentialOf("Basic YWxpY2U6eA=="), credentialOf("Basic Ym9iOng=")
	first := testManifest(1000, 1)
	if got := c.add(k, first, alice); got != first {
		t.Fatal("add did not keep the first copy")
	}
	if got := c.add(k, testManifest(1000, 1), bob); got != first {
		t.Fatal("a second copy of the same digest was kept")
	}
	if _, size := c.stats(); size != 1000 {
		t.Fatalf("%d bytes held for one 1000-byte manifest", size)
	}
	carol := credentialOf("Bearer carol")
	if m, ok := c.get(k, carol); m != first || ok {
		t.Fatalf("carol: %v, allowed %v; want the bytes, not yet allowed", m != nil, ok)
	}
	c.allow(k, carol)
	for _, who := range []credential{alice, bob, carol} {
		if _, ok := c.get(k, who); !ok {
			t.Fatalf("%x not allowed", who[:4])
		}
	}
	for i := range maxReaders {
		c.allow(k, credentialOf(fmt.Sprint("Bearer ", i)))
	}
	if _, ok := c.get(k, alice); ok {
		t.Fatal("more readers remembered than maxReaders")
	}
}

func TestSignatureArtifactIndex(t *testing.T) {
	e := newEnv(t)
	// A referrers-tag index whose one entry claims to be a bundle but is a
	// runnable image: the index is served, the entry is still gated.
	img, runnable := e.pushRandom("prod/app", "runnable")
	raw, _ := rawManifest(t, img)
	entry := fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"artifactType":%q`,
		runnable, len(raw), sigstore.BundleMediaType)
	index := func(entry string) []byte {
		return []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + entry + `]}`)
	}
	tag := "sha256-" + strings.Repeat("1", 64)
	putManifest(t, e.up, "prod/app", tag, "application/vnd.oci.image.index.v1+json", index(entry+"}"))
	wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/"+tag), http.StatusOK, "")
	wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/"+runnable.String()), http.StatusForbidden, "DENIED")

	// The same entry with urls or a platform could lead a client to the
	// runnable image without asking the proxy for it (containerd fetches
	// from urls): such an index needs signatures like any image.
	for _, extra := range []string{
		`,"urls":["` + e.up.URL + `/v2/prod/app/manifests/` + runnable.String() + `"],"platform":{"architecture":"amd64","os":"linux"}}`,
		`,"urls":["` + e.proxy.URL + `/v2/prod/app/blobs/` + runnable.String() + `"]}`,
		`,"platform":{"architecture":"amd64","os":"linux"}}`,
	} {
		putManifest(t, e.up, "prod/app", "evil", "application/vnd.oci.image.index.v1+json", index(entry+extra))
		wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/evil"), http.StatusForbidden, "DENIED")
		wantStatus(t, e.do(http.MethodHead, "/v2/prod/app/manifests/evil"), http.StatusForbidden, "")
	}
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
	var lines, decisions []string
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		switch {
		case strings.Contains(l, "msg=request "):
			lines = append(lines, l)
		case strings.Contains(l, "msg=decision "):
			decisions = append(decisions, l)
		}
	}
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
	if !strings.Contains(lines[0], `decision="admit: verified"`) {
		t.Errorf("line %q lacks the decision", lines[0])
	}
	// One audit line per decision, naming the digest decided on and the
	// key that counted.
	if len(decisions) != 1 {
		t.Fatalf("want one decision line, got %q", decisions)
	}
	for _, want := range []string{"upstream=" + e.up.host, "repository=prod/app", "reference=v1", "digest=" + d.String(),
		"policy=all", "result=admit", "reason=verified", "keys=" + e.key.pub.ID(), "cached=false", "latency="} {
		if !strings.Contains(decisions[0], want) {
			t.Errorf("decision line %q lacks %q", decisions[0], want)
		}
	}
}
