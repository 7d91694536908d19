package sigstore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// Limits on what is read from a registry. They bound memory per lookup and
// close cosign's unbounded-attachment advisories (CVE-2023-46737,
// CVE-2024-29902, CVE-2024-29903).
const (
	// MaxSignatures is the most signatures accepted in one .sig manifest, and
	// the most bundle referrers accepted for one digest.
	MaxSignatures = 100
	// MaxPayloadSize is the largest payload or bundle blob read.
	MaxPayloadSize = 64 << 10
	// MaxManifestSize is the largest manifest or index read.
	MaxManifestSize = 4 << 20
)

const (
	// maxErrorBodySize caps how much of an error response is read.
	maxErrorBodySize = 64 << 10
	// maxConcurrentFetches bounds the blob and referrer fetches in flight
	// for one kind of signature in one lookup.
	maxConcurrentFetches = 8
	// defaultLookupTimeout bounds a lookup whose context has no deadline.
	defaultLookupTimeout = 60 * time.Second
	// emptyMediaType is the OCI empty descriptor's media type ("{}").
	emptyMediaType = "application/vnd.oci.empty.v1+json"
)

// ErrInvalidArtifact marks a signature artifact that is malformed,
// oversized or inconsistent with its descriptor: a reason to refuse, not an
// outage.
var ErrInvalidArtifact = errors.New("invalid signature artifact")

// RegistryError reports that the registry could not answer: a network
// error, a timeout, a truncated body, or a status other than success and
// "not found" (401, 403, 429, 5xx, ...). No decision should be made, and
// none cached, on such an error.
type RegistryError struct {
	// Op is the request that failed, e.g. "GET /v2/app/manifests/sha256-<hex>.sig".
	Op string
	// StatusCode is the HTTP status, 0 when no response arrived.
	StatusCode int
	// Code is the first OCI error code of the response body, if any
	// ("UNAUTHORIZED", "TOOMANYREQUESTS", ...).
	Code string
	// Message is the OCI error message, or a description of the failure.
	Message string
	// Err is the underlying error (network, context, read), if any.
	Err error
}

// Error implements error.
func (e *RegistryError) Error() string {
	var b strings.Builder
	b.WriteString("registry: ")
	if e.Op != "" {
		b.WriteString(e.Op + ": ")
	}
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, "status %d", e.StatusCode)
	}
	for _, part := range []string{e.Code, e.Message} {
		if part == "" {
			continue
		}
		if !strings.HasSuffix(b.String(), ": ") {
			b.WriteString(": ")
		}
		b.WriteString(part)
	}
	if e.Err != nil {
		if !strings.HasSuffix(b.String(), ": ") {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	return strings.TrimSuffix(b.String(), ": ")
}

// Unwrap returns the underlying error.
func (e *RegistryError) Unwrap() error { return e.Err }

// Timeout reports whether the registry did not answer in time: the
// context's deadline passed or the network timed out.
func (e *RegistryError) Timeout() bool {
	if errors.Is(e.Err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout()
}

// Fetcher reads signature artifacts from one registry over the distribution
// API. It sends no /v2/ ping: every request it makes is a lookup, so that a
// lookup costs as few round trips as the formats allow. Authentication, if
// any, is the RoundTripper's business.
type Fetcher struct {
	base   string
	client *http.Client
}

// NewFetcher returns a Fetcher for the registry at baseURL (scheme and host,
// e.g. "http://127.0.0.1:5000") using rt for every request;
// nil rt means http.DefaultTransport.
func NewFetcher(baseURL string, rt http.RoundTripper) *Fetcher {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &Fetcher{
		base:   strings.TrimSuffix(baseURL, "/"),
		client: &http.Client{Transport: rt},
	}
}

// FetcherFor returns a Fetcher for repo's registry whose requests carry the
// credentials kc resolves for repo, with pull scope on repo (nil kc means
// anonymous, nil rt means remote.DefaultTransport). Setting up the token
// exchange pings the registry once.
func FetcherFor(ctx context.Context, repo name.Repository, kc authn.Keychain, rt http.RoundTripper) (*Fetcher, error) {
	if kc == nil {
		kc = authn.NewMultiKeychain()
	}
	if rt == nil {
		rt = remote.DefaultTransport
	}
	auth, err := authn.Resolve(ctx, kc, repo)
	if err != nil {
		return nil, fmt.Errorf("resolving credentials for %s: %w", repo, err)
	}
	t, err := transport.NewWithContext(ctx, repo.Registry, auth, rt, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", repo.RegistryStr(), err)
	}
	return NewFetcher(repo.Registry.Scheme()+"://"+repo.RegistryStr(), t), nil
}

// Signatures returns every signature stored for digest in repo: the layers
// of the "sha256-<hex>.sig" manifest (simple signing) and the Sigstore
// bundles that refer to digest (the union of what the referrers API and the
// referrers tag list). Simple signatures come first. None found is no
// signature and a nil error.
//
// The .sig manifest, the referrers API and the referrers tag are requested
// at once, and every artifact as soon as what names it has arrived, so a
// lookup costs at most 2 sequential round trips for simple signatures and
// 3 for bundles, whether or not the registry has the referrers API.
//
// A malformed individual signature is returned with Signature.Err set. An
// error wrapping ErrInvalidArtifact means the signature manifests
// themselves are malformed or too large; a *RegistryError means the
// registry could not answer.
func (f *Fetcher) Signatures(ctx context.Context, repo string, digest v1.Hash) ([]Signature, error) {
	if err := checkRepository(repo); err != nil {
		return nil, err
	}
	if err := checkDigest(digest); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultLookupTimeout)
		defer cancel()
	}
	var legacy, bundles []Signature
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		legacy, err = f.simpleSignatures(gctx, repo, digest)
		return err
	})
	g.Go(func() (err error) {
		bundles, err = f.bundleSignatures(gctx, repo, digest)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return append(legacy, bundles...), nil
}

// repositoryPattern is the distribution spec's repository name grammar.
var repositoryPattern = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)

// checkRepository accepts repository names of the distribution spec.
func checkRepository(repo string) error {
	if len(repo) > 255 || !repositoryPattern.MatchString(repo) {
		return fmt.Errorf("invalid repository name %q", repo)
	}
	return nil
}

// invalidf returns an error wrapping ErrInvalidArtifact.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidArtifact, fmt.Sprintf(format, args...))
}

// --- simple signing (.sig tag) ---

// artifactDescriptor is the part of an OCI descriptor a lookup uses.
type artifactDescriptor struct {
	MediaType    string            `json:"mediaType"`
	Size         int64             `json:"size"`
	Digest       string            `json:"digest"`
	ArtifactType string            `json:"artifactType"`
	Annotations  map[string]string `json:"annotations"`
}

// manifestDocument is a manifest or index whose descriptor arrays are kept
// raw, so that they can be counted before anything is allocated per entry.
type manifestDocument struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	ArtifactType  string          `json:"artifactType"`
	Config        json.RawMessage `json:"config"`
	Layers        json.RawMessage `json:"layers"`
	Manifests     json.RawMessage `json:"manifests"`
	Subject       json.RawMessage `json:"subject"`
}

// absentJSON reports whether a raw JSON field is absent or null.
func absentJSON(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// simpleSignatures reads the .sig manifest of digest and its payloads.
func (f *Fetcher) simpleSignatures(ctx context.Context, repo string, digest v1.Hash) ([]Signature, error) {
	tag := SignatureTag(digest)
	resp, err := f.get(ctx, manifestPath(repo, tag), manifestAccept, MaxManifestSize, http.StatusNotFound)
	if err != nil {
		return nil, err
	}
	if resp.status == http.StatusNotFound {
		return nil, nil
	}
	layers, err := parseSignatureManifest(resp.body, resp.contentType)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tag, err)
	}
	return fetchAll(ctx, layers, func(ctx context.Context, i int, l artifactDescriptor) (Signature, error) {
		return f.simpleSignature(ctx, repo, fmt.Sprintf("%s layer %d", tag, i), l)
	})
}

// parseSignatureManifest checks that b is an image manifest of at most
// MaxSignatures layers and returns them.
func parseSignatureManifest(b []byte, contentType string) ([]artifactDescriptor, error) {
	if isIndexMediaType(contentType) {
		return nil, invalidf("signature tag holds an index (%s), want an image manifest", contentType)
	}
	var m manifestDocument
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, invalidf("signature manifest: %v", err)
	}
	if m.SchemaVersion != 2 {
		return nil, invalidf("signature manifest schemaVersion %d, want 2", m.SchemaVersion)
	}
	if !absentJSON(m.Manifests) || isIndexMediaType(m.MediaType) {
		return nil, invalidf("signature tag holds an index, want an image manifest")
	}
	if m.MediaType != "" && m.MediaType != string(types.OCIManifestSchema1) && m.MediaType != string(types.DockerManifestSchema2) {
		return nil, invalidf("signature manifest media type %q", m.MediaType)
	}
	layers, err := decodeArray(m.Layers, MaxSignatures, func(artifactDescriptor) bool { return true })
	if err != nil {
		return nil, invalidf("signature manifest layers: %v", err)
	}
	return layers, nil
}

// simpleSignature reads one .sig layer: its base64 signature annotation
// and its payload blob, checked against the descriptor.
func (f *Fetcher) simpleSignature(ctx context.Context, repo, where string, l artifactDescriptor) (Signature, error) {
	s := Signature{Format: FormatSimpleSigning, Where: where}
	if l.MediaType != SimpleSigningMediaType {
		s.Err = invalidf("layer media type %q, want %q", l.MediaType, SimpleSigningMediaType)
		return s, nil
	}
	sig, err := decodeSignatureAnnotation(l.Annotations)
	if err != nil {
		s.Err = err
		return s, nil
	}
	payload, err := f.verifiedBlob(ctx, repo, l, MaxPayloadSize)
	if err != nil {
		return abortOrKeep(s, err)
	}
	s.Signed, s.Payload, s.Sig = payload, payload, sig
	return s, nil
}

// decodeSignatureAnnotation decodes the standard base64 signature annotation.
func decodeSignatureAnnotation(annotations map[string]string) ([]byte, error) {
	b64, ok := annotations[SignatureAnnotation]
	if !ok {
		return nil, invalidf("no %s annotation", SignatureAnnotation)
	}
	sig, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, invalidf("annotation %s: bad base64: %v", SignatureAnnotation, err)
	}
	if len(sig) == 0 {
		return nil, invalidf("annotation %s is empty", SignatureAnnotation)
	}
	return sig, nil
}

// abortOrKeep returns err as the lookup's error when the registry failed,
// and otherwise records it on s: one bad artifact does not hide the others.
func abortOrKeep(s Signature, err error) (Signature, error) {
	var rerr *RegistryError
	if errors.As(err, &rerr) {
		return Signature{}, err
	}
	s.Err = err
	return s, nil
}

// --- Sigstore bundles (OCI 1.1 referrers) ---

// bundleSignatures finds the bundle referrers of digest and reads them.
func (f *Fetcher) bundleSignatures(ctx context.Context, repo string, digest v1.Hash) ([]Signature, error) {
	entries, err := f.bundleReferrers(ctx, repo, digest)
	if err != nil {
		return nil, err
	}
	return fetchAll(ctx, entries, func(ctx context.Context, _ int, e artifactDescriptor) (Signature, error) {
		return f.bundleSignature(ctx, repo, digest, e)
	})
}

// bundleReferrers lists the referrers of digest whose artifactType is a
// Sigstore bundle. It asks the referrers API and reads the referrers tag at
// once, so that a registry without the API costs no extra round trip, and
// returns the union of both, deduplicated by digest (the API's entries
// first): a registry may have gained the API after cosign wrote a
// referrers tag. Not found on both is no referrer. Any error on either is
// the lookup's error, never half an answer, and the union counts against
// MaxSignatures.
func (f *Fetcher) bundleReferrers(ctx context.Context, repo string, digest v1.Hash) ([]artifactDescriptor, error) {
	var fromAPI, fromTag []artifactDescriptor
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		fromAPI, err = f.referrersAPI(gctx, repo, digest)
		return err
	})
	g.Go(func() (err error) {
		fromTag, err = f.referrersTag(gctx, repo, digest)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	entries, err := unionByDigest(fromAPI, fromTag)
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", digest, err)
	}
	return entries, nil
}

// referrersAPI lists the bundle referrers of digest from the OCI 1.1
// referrers API. A registry without the API (404, 400, 405, 406, or a
// 200 that is not an OCI index) lists none.
func (f *Fetcher) referrersAPI(ctx context.Context, repo string, digest v1.Hash) ([]artifactDescriptor, error) {
	path := "/v2/" + repo + "/referrers/" + digest.String() + "?artifactType=" + url.QueryEscape(BundleMediaType)
	resp, err := f.get(ctx, path, string(types.OCIImageIndex), MaxManifestSize,
		http.StatusNotFound, http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusNotAcceptable)
	if err != nil {
		return nil, err
	}
	if resp.status != http.StatusOK || baseMediaType(resp.contentType) != string(types.OCIImageIndex) {
		return nil, nil
	}
	entries, err := parseReferrersIndex(resp.body)
	if err != nil {
		return nil, fmt.Errorf("referrers API for %s: %w", digest, err)
	}
	return entries, nil
}

// referrersTag lists the bundle referrers of digest from the referrers tag
// schema ("sha256-<hex>"); no such tag lists none.
func (f *Fetcher) referrersTag(ctx context.Context, repo string, digest v1.Hash) ([]artifactDescriptor, error) {
	tag := ReferrersTag(digest)
	resp, err := f.get(ctx, manifestPath(repo, tag), string(types.OCIImageIndex), MaxManifestSize, http.StatusNotFound)
	if err != nil {
		return nil, err
	}
	if resp.status == http.StatusNotFound {
		return nil, nil
	}
	entries, err := parseReferrersIndex(resp.body)
	if err != nil {
		return nil, fmt.Errorf("referrers tag %s: %w", tag, err)
	}
	return entries, nil
}

// unionByDigest concatenates lists, keeping the first entry of each
// digest, and fails when more than MaxSignatures remain.
func unionByDigest(lists ...[]artifactDescriptor) ([]artifactDescriptor, error) {
	var out []artifactDescriptor
	seen := make(map[string]bool)
	for _, list := range lists {
		for _, e := range list {
			if seen[e.Digest] {
				continue
			}
			if len(out) == MaxSignatures {
				return nil, invalidf("more than %d bundle referrers", MaxSignatures)
			}
			seen[e.Digest] = true
			out = append(out, e)
		}
	}
	return out, nil
}

// parseReferrersIndex returns the bundle entries of an OCI index, failing
// when there are more than MaxSignatures of them. Registries may ignore the
// artifactType filter, so it is applied here too.
func parseReferrersIndex(b []byte) ([]artifactDescriptor, error) {
	var idx manifestDocument
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, invalidf("referrers index: %v", err)
	}
	if idx.SchemaVersion != 2 || idx.MediaType != string(types.OCIImageIndex) || !absentJSON(idx.Layers) {
		return nil, invalidf("referrers index is not an OCI image index (schemaVersion %d, mediaType %q)", idx.SchemaVersion, idx.MediaType)
	}
	entries, err := decodeArray(idx.Manifests, MaxSignatures, func(d artifactDescriptor) bool {
		return d.ArtifactType == BundleMediaType
	})
	if err != nil {
		return nil, invalidf("referrers index bundles: %v", err)
	}
	return entries, nil
}

// bundleSignature reads one bundle referrer: its manifest (checked against
// the index entry and bound to digest), then its bundle layer.
func (f *Fetcher) bundleSignature(ctx context.Context, repo string, digest v1.Hash, e artifactDescriptor) (Signature, error) {
	s := Signature{Format: FormatBundle, Where: "referrer"}
	d, err := parseDigest(e.Digest)
	if err != nil {
		s.Err = invalidf("referrer descriptor: %v", err)
		return s, nil
	}
	where := "referrer " + d.String()
	s.Where = where
	if e.MediaType != string(types.OCIManifestSchema1) {
		s.Err = invalidf("referrer media type %q, want %q", e.MediaType, types.OCIManifestSchema1)
		return s, nil
	}
	raw, err := f.verifiedManifest(ctx, repo, e)
	if err != nil {
		return abortOrKeep(s, err)
	}
	layer, err := parseBundleManifest(raw, digest)
	if err != nil {
		s.Err = err
		return s, nil
	}
	bundle, err := f.verifiedBlob(ctx, repo, layer, MaxPayloadSize)
	if err != nil {
		return abortOrKeep(s, err)
	}
	sig := SignatureFromBundle(bundle, where)
	if sig.Where == "" {
		sig.Where = where
	}
	return sig, nil
}

// parseBundleManifest checks that raw is a Sigstore bundle artifact
// manifest whose subject is digest, and returns its bundle layer.
func parseBundleManifest(raw []byte, digest v1.Hash) (artifactDescriptor, error) {
	var m manifestDocument
	if err := json.Unmarshal(raw, &m); err != nil {
		return artifactDescriptor{}, invalidf("referrer manifest: %v", err)
	}
	if m.SchemaVersion != 2 || m.MediaType != string(types.OCIManifestSchema1) || !absentJSON(m.Manifests) {
		return artifactDescriptor{}, invalidf("referrer is not an OCI image manifest")
	}
	var config, subject artifactDescriptor
	if err := unmarshalOptional(m.Config, &config); err != nil {
		return artifactDescriptor{}, invalidf("referrer config: %v", err)
	}
	if err := unmarshalOptional(m.Subject, &subject); err != nil {
		return artifactDescriptor{}, invalidf("referrer subject: %v", err)
	}
	if artifactType := cmp.Or(m.ArtifactType, config.MediaType); artifactType != BundleMediaType {
		return artifactDescriptor{}, invalidf("referrer artifact type %q, want %q", artifactType, BundleMediaType)
	}
	if subject.Digest != digest.String() {
		return artifactDescriptor{}, invalidf("referrer subject %q is not %s", subject.Digest, digest)
	}
	layers, err := decodeArray(m.Layers, 1, func(d artifactDescriptor) bool { return d.MediaType == BundleMediaType })
	if err != nil {
		return artifactDescriptor{}, invalidf("referrer layers: %v", err)
	}
	if len(layers) != 1 {
		return artifactDescriptor{}, invalidf("referrer has no %s layer", BundleMediaType)
	}
	return layers[0], nil
}

// unmarshalOptional decodes raw into v unless it is absent or null.
func unmarshalOptional(raw json.RawMessage, v any) error {
	if absentJSON(raw) {
		return nil
	}
	return json.Unmarshal(raw, v)
}

// --- fetching ---

const manifestAccept = string(types.OCIManifestSchema1) + ", " + string(types.DockerManifestSchema2)

// manifestPath is the distribution API path of a manifest.
func manifestPath(repo, reference string) string {
	return "/v2/" + repo + "/manifests/" + reference
}

// fetchAll runs fn on every item, at most maxConcurrentFetches at once, and
// returns the results in the items' order. The first error cancels the
// rest and is returned.
func fetchAll[T any](ctx context.Context, items []T, fn func(ctx context.Context, i int, item T) (Signature, error)) ([]Signature, error) {
	if len(items) == 0 {
		return nil, nil
	}
	out := make([]Signature, len(items))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxConcurrentFetches)
	for i, item := range items {
		g.Go(func() error {
			s, err := fn(gctx, i, item)
			out[i] = s
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// Payload fetches the blob a signature layer describes: at most
// MaxPayloadSize bytes, checked against the descriptor's size and sha256.
// A descriptor that is malformed, too large or points at other content is
// an error wrapping ErrInvalidArtifact; an upstream failure a
// *RegistryError.
func (f *Fetcher) Payload(ctx context.Context, repo string, d v1.Descriptor) ([]byte, error) {
	if err := checkRepository(repo); err != nil {
		return nil, err
	}
	return f.verifiedBlob(ctx, repo, artifactDescriptor{MediaType: string(d.MediaType), Size: d.Size, Digest: d.Digest.String()}, MaxPayloadSize)
}

// verifiedManifest fetches the manifest e describes and checks it against e.
func (f *Fetcher) verifiedManifest(ctx context.Context, repo string, e artifactDescriptor) ([]byte, error) {
	return f.verified(ctx, manifestPath(repo, e.Digest), string(types.OCIManifestSchema1), e, MaxManifestSize)
}

// verifiedBlob fetches the blob d describes and checks it against d.
func (f *Fetcher) verifiedBlob(ctx context.Context, repo string, d artifactDescriptor, limit int64) ([]byte, error) {
	return f.verified(ctx, "/v2/"+repo+"/blobs/"+d.Digest, "", d, limit)
}

// verified fetches the content d describes, refusing before any request a
// malformed digest or a size over limit, and after it any content whose
// length or sha256 differ from the descriptor's. Not found is an invalid
// artifact (the descriptor points at nothing); other failures are
// *RegistryError.
func (f *Fetcher) verified(ctx context.Context, path, accept string, d artifactDescriptor, limit int64) ([]byte, error) {
	want, err := parseDigest(d.Digest)
	if err != nil {
		return nil, invalidf("descriptor: %v", err)
	}
	if d.Size < 0 || d.Size > limit {
		return nil, invalidf("descriptor size %d of %s exceeds the %d byte limit", d.Size, d.Digest, limit)
	}
	resp, err := f.get(ctx, path, accept, d.Size, http.StatusNotFound)
	if err != nil {
		return nil, err
	}
	if resp.status == http.StatusNotFound {
		return nil, invalidf("%s not found", d.Digest)
	}
	if int64(len(resp.body)) != d.Size {
		return nil, invalidf("%s is %d bytes, descriptor says %d", d.Digest, len(resp.body), d.Size)
	}
	if sum := sha256.Sum256(resp.body); hex.EncodeToString(sum[:]) != want.Hex {
		return nil, invalidf("content does not match descriptor digest %s", d.Digest)
	}
	return resp.body, nil
}

// response is a successful or passed-through registry answer.
type response struct {
	status      int
	contentType string
	body        []byte // read for 200 only
}

// get sends one GET for path. A 200 body is read whole, refused (with
// ErrInvalidArtifact) when over limit and a *RegistryError when truncated.
// Statuses in pass are returned without a body; any other status, and
// every transport failure, is a *RegistryError.
func (f *Fetcher) get(ctx context.Context, path, accept string, limit int64, pass ...int) (*response, error) {
	op := http.MethodGet + " " + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, &RegistryError{Op: op, Message: "request failed", Err: withContextErr(ctx, err)}
	}
	defer resp.Body.Close()
	out := &response{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type")}
	switch {
	case resp.StatusCode == http.StatusOK:
		out.body, err = readBody(ctx, op, resp, limit)
		return out, err
	case slices.Contains(pass, resp.StatusCode):
		return out, nil
	default:
		return nil, newRegistryError(op, resp)
	}
}

// readBody reads a 200 body of at most limit bytes.
func readBody(ctx context.Context, op string, resp *http.Response, limit int64) ([]byte, error) {
	if resp.ContentLength > limit {
		return nil, invalidf("%s: body of %d bytes exceeds the %d byte limit", op, resp.ContentLength, limit)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, &RegistryError{Op: op, StatusCode: resp.StatusCode, Message: "reading body", Err: withContextErr(ctx, err)}
	}
	if int64(len(b)) > limit {
		return nil, invalidf("%s: body exceeds the %d byte limit", op, limit)
	}
	if resp.ContentLength >= 0 && int64(len(b)) != resp.ContentLength {
		return nil, &RegistryError{Op: op, StatusCode: resp.StatusCode,
			Message: fmt.Sprintf("truncated body: %d of %d bytes", len(b), resp.ContentLength), Err: io.ErrUnexpectedEOF}
	}
	return b, nil
}

// newRegistryError describes an unexpected status, with the first OCI
// error code and message of the body when it has one.
func newRegistryError(op string, resp *http.Response) *RegistryError {
	e := &RegistryError{Op: op, StatusCode: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodySize))
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &body) == nil && len(body.Errors) > 0 {
		e.Code, e.Message = body.Errors[0].Code, body.Errors[0].Message
	}
	return e
}

// withContextErr makes a failure caused by the context's end say so, so
// that RegistryError.Timeout can tell a deadline from other failures.
func withContextErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}

// isIndexMediaType reports whether a media type (or Content-Type value)
// names an OCI index or Docker manifest list.
func isIndexMediaType(mt string) bool {
	return types.MediaType(baseMediaType(mt)).IsIndex()
}

// baseMediaType strips parameters from a Content-Type value.
func baseMediaType(contentType string) string {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil {
		return mt
	}
	return contentType
}

// decodeArray decodes the JSON array raw element by element, keeping the
// elements keep accepts, and fails as soon as more than limit are kept, so
// that a huge array costs no more than limit+1 elements of memory. An
// absent or null array is empty.
func decodeArray[T any](raw json.RawMessage, limit int, keep func(T) bool) ([]T, error) {
	if absentJSON(raw) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, errors.New("not an array")
	}
	var out []T
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if !keep(v) {
			continue
		}
		if len(out) == limit {
			return nil, fmt.Errorf("more than %d entries", limit)
		}
		out = append(out, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return out, nil
}
