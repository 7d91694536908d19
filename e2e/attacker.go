package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What someone who can push anything to an upstream registry, but holds no
// trusted key, can put there: exact manifest and blob bytes pushed over the
// distribution API, with every descriptor field under their control. The
// gate's regression tests build their attacks from these helpers.

// Media types the attacks use.
const (
	simpleSigningType = "application/vnd.dev.cosign.simplesigning.v1+json"
	bundleType        = "application/vnd.dev.sigstore.bundle.v0.3+json"
	emptyConfigType   = "application/vnd.oci.empty.v1+json"
)

// craftedDescriptor is a descriptor with every field an attacker may set.
type craftedDescriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	URLs         []string          `json:"urls,omitempty"`
	Platform     *v1.Platform      `json:"platform,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// craftedManifest is an image manifest or index as an attacker writes it.
// Layers and Manifests are pointers to slices so that an empty array can
// be written as [] and an absent one left out.
type craftedManifest struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType,omitempty"`
	Config        *craftedDescriptor   `json:"config,omitempty"`
	Layers        *[]craftedDescriptor `json:"layers,omitempty"`
	Manifests     *[]craftedDescriptor `json:"manifests,omitempty"`
	Subject       *craftedDescriptor   `json:"subject,omitempty"`
	Annotations   map[string]string    `json:"annotations,omitempty"`
}

// rawRegistry pushes exact bytes to a registry (host:port, plain HTTP).
type rawRegistry struct {
	t      testing.TB
	host   string
	client *http.Client
}

func newRawRegistry(t testing.TB, host string) *rawRegistry {
	return &rawRegistry{t: t, host: host, client: &http.Client{Timeout: time.Minute}}
}

// blob uploads data to repo monolithically (POST, then PUT with the digest)
// and returns its descriptor with the given media type.
func (r *rawRegistry) blob(repo, mediaType string, data []byte) craftedDescriptor {
	r.t.Helper()
	d, size, err := v1.SHA256(bytes.NewReader(data))
	if err != nil {
		r.t.Fatal(err)
	}
	resp, err := r.client.Post("http://"+r.host+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		r.t.Fatalf("starting a blob upload to %s: %v", repo, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		r.t.Fatalf("starting a blob upload to %s: %s", repo, resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		r.t.Fatalf("blob upload to %s: %v", repo, err)
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	r.do(http.MethodPut, loc.String(), "application/octet-stream", data, http.StatusCreated)
	return craftedDescriptor{MediaType: mediaType, Digest: d.String(), Size: size}
}

// manifest PUTs body as repo's manifest ref (a tag, or "" for by digest)
// with the media type as Content-Type, and returns its descriptor.
func (r *rawRegistry) manifest(repo, ref, mediaType string, body []byte) craftedDescriptor {
	r.t.Helper()
	d, err := r.putManifest(repo, ref, mediaType, body)
	if err != nil {
		r.t.Fatal(err)
	}
	return d
}

// putManifest is manifest for any goroutine: it returns the error.
func (r *rawRegistry) putManifest(repo, ref, mediaType string, body []byte) (craftedDescriptor, error) {
	d, size, err := v1.SHA256(bytes.NewReader(body))
	if err != nil {
		return craftedDescriptor{}, err
	}
	if ref == "" {
		ref = d.String()
	}
	if err := r.send(http.MethodPut, "http://"+r.host+"/v2/"+repo+"/manifests/"+ref, mediaType, body, http.StatusCreated); err != nil {
		return craftedDescriptor{}, err
	}
	return craftedDescriptor{MediaType: mediaType, Digest: d.String(), Size: size}, nil
}

// manifestJSON marshals m and pushes it (see manifest); it returns the
// descriptor and the exact bytes.
func (r *rawRegistry) manifestJSON(repo, ref string, m craftedManifest) (craftedDescriptor, []byte) {
	r.t.Helper()
	body, err := json.Marshal(m)
	if err != nil {
		r.t.Fatal(err)
	}
	return r.manifest(repo, ref, m.MediaType, body), body
}

func (r *rawRegistry) do(method, u, contentType string, body []byte, want int) {
	r.t.Helper()
	if err := r.send(method, u, contentType, body, want); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawRegistry) send(method, u, contentType string, body []byte, want int) error {
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, redactQuery(u), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %s: %s", method, redactQuery(u), resp.Status, msg)
	}
	return nil
}

// emptyConfig uploads the OCI empty JSON blob "{}" to repo.
func (r *rawRegistry) emptyConfig(repo string) craftedDescriptor {
	r.t.Helper()
	return r.blob(repo, emptyConfigType, []byte("{}"))
}

// runnableImage is an unsigned, runnable image pushed by digest.
type runnableImage struct {
	digest v1.Hash
	raw    []byte
	// blobs are the config and layer digests: what a client fetches to run
	// it.
	blobs []string
}

// descriptor is the image manifest's descriptor.
func (i runnableImage) descriptor() craftedDescriptor {
	return craftedDescriptor{MediaType: string(types.OCIManifestSchema1), Digest: i.digest.String(), Size: int64(len(i.raw))}
}

// pushRunnableImage pushes a random OCI image (two gzip tar layers) to
// host/repo by digest only, with no tag and no signature.
func pushRunnableImage(t testing.TB, host, repo string) runnableImage {
	t.Helper()
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewDigest(host+"/"+repo+"@"+d.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, crane.GetOptions(crane.Insecure).Remote...); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	out := runnableImage{digest: d, raw: raw, blobs: []string{cfg.String()}}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		ld, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out.blobs = append(out.blobs, ld.String())
	}
	return out
}

// recordedRequest is one request an upstream front saw.
type recordedRequest struct {
	Method        string
	URI           string // path and query
	Authorization string
}

func (r recordedRequest) String() string {
	auth := "no Authorization"
	if r.Authorization != "" {
		auth = "Authorization: " + r.Authorization
	}
	return r.Method + " " + r.URI + " (" + auth + ")"
}

// upstreamFront is a plain HTTP server in front of a real registry: it
// records every request with its Authorization header, counts the body
// bytes it serves, and passes each request to the registry unless
// intercept answers it first.
type upstreamFront struct {
	srv   *httptest.Server
	mu    sync.Mutex
	reqs  []recordedRequest
	bytes atomic.Int64
}

// newUpstreamFront starts a front for the registry at backend (host:port);
// intercept (may be nil) answers a request itself by returning true. It is
// closed when the test ends.
func newUpstreamFront(t testing.TB, backend string, intercept func(http.ResponseWriter, *http.Request) bool) *upstreamFront {
	t.Helper()
	target, err := url.Parse("http://" + backend)
	if err != nil {
		t.Fatal(err)
	}
	f := &upstreamFront{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		// A client (the proxy) that stops reading is expected here.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.reqs = append(f.reqs, recordedRequest{Method: r.Method, URI: r.URL.RequestURI(), Authorization: r.Header.Get("Authorization")})
		f.mu.Unlock()
		cw := &countingWriter{ResponseWriter: w, n: &f.bytes}
		if intercept != nil && intercept(cw, r) {
			return
		}
		rp.ServeHTTP(cw, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// host is the front's host:port.
func (f *upstreamFront) host() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// requests returns what the front saw so far.
func (f *upstreamFront) requests() []recordedRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recordedRequest(nil), f.reqs...)
}

// reset forgets the requests seen so far and the bytes served.
func (f *upstreamFront) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = nil
	f.bytes.Store(0)
}

// bytesServed is the response body bytes the front wrote since reset.
func (f *upstreamFront) bytesServed() int64 { return f.bytes.Load() }

// countingWriter counts the body bytes written through it.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// Unwrap lets http.ResponseController reach Flush on the real writer.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// containerdOf returns the private containerd daemon behind a Client made
// by NewContainerdClient, to run ctr commands of a test's own.
func containerdOf(t testing.TB, c Client) *containerdClient {
	t.Helper()
	cc, ok := c.(*containerdClient)
	if !ok {
		t.Fatalf("%T is not a containerd client", c)
	}
	return cc
}

// ctr runs ctr against c's daemon in namespace ns and returns its output.
func ctr(ctx context.Context, c *containerdClient, ns string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	return runTool(ctx, nil, "ctr", append([]string{"--address", c.sock, "--namespace", ns}, args...)...)
}

// ctrPull pulls UPSTREAM/path for the host's platform, as a kubelet would,
// through the hosts.toml that names the proxy as server.
func ctrPull(ctx context.Context, c *containerdClient, ns, path string) (string, error) {
	return ctr(ctx, c, ns, "images", "pull", "--snapshotter", "native", "--hosts-dir", c.hostsDir, c.m.Upstream+"/"+path)
}

// ctrContent returns every digest in c's content store, in every
// namespace, with the namespace that holds it.
func ctrContent(ctx context.Context, t testing.TB, c *containerdClient) map[string]string {
	t.Helper()
	out, err := ctr(ctx, c, "default", "namespaces", "ls", "-q")
	if err != nil {
		t.Fatalf("ctr namespaces ls: %v\n%s", err, out)
	}
	held := map[string]string{}
	for _, ns := range strings.Fields(out) {
		list, err := ctr(ctx, c, ns, "content", "ls", "-q")
		if err != nil {
			t.Fatalf("ctr content ls in %s: %v\n%s", ns, err, list)
		}
		for _, d := range strings.Fields(list) {
			held[d] = ns
		}
	}
	return held
}

// ctrImages returns the image names ctr lists in namespace ns.
func ctrImages(ctx context.Context, t testing.TB, c *containerdClient, ns string) []string {
	t.Helper()
	out, err := ctr(ctx, c, ns, "images", "ls", "-q")
	if err != nil {
		t.Fatalf("ctr images ls in %s: %v\n%s", ns, err, out)
	}
	return strings.Fields(out)
}

// httpAnswer is a proxy's answer to one request.
type httpAnswer struct {
	status int
	header http.Header
	body   []byte
	// code is the first OCI error code of the body, if any.
	code string
}

func (a httpAnswer) String() string {
	body := a.body
	if len(body) > 300 {
		body = body[:300]
	}
	return fmt.Sprintf("%d %s %q", a.status, a.code, body)
}

// send sends one request with the given headers (key, value pairs) and
// returns the answer.
func send(t testing.TB, method, u string, header ...string) httpAnswer {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{
		Timeout:       time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, u, err)
	}
	a := httpAnswer{status: resp.StatusCode, header: resp.Header, body: body}
	var e struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Errors) > 0 {
		a.code = e.Errors[0].Code
	}
	return a
}

// serveGzipped answers r, a blob request, with what registry serves for it,
// gzip-compressed and labelled with the Content-Encoding header lines
// encodings, as an upstream that compresses unasked would; an answer other
// than 200 is passed on as it is. It reports whether it answered.
func serveGzipped(w http.ResponseWriter, r *http.Request, registry string, encodings ...string) bool {
	req, err := http.NewRequest(r.Method, "http://"+registry+r.URL.RequestURI(), nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
		return true
	}
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	_, _ = zw.Write(body)
	_ = zw.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.Header().Set("Docker-Content-Digest", resp.Header.Get("Docker-Content-Digest"))
	w.Header()["Content-Encoding"] = encodings
	w.Header().Set("Vary", "Accept-Encoding")
	w.Header().Set("Content-Length", fmt.Sprint(zb.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(zb.Bytes())
	return true
}
