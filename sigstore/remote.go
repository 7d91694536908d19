package sigstore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	// MaxSignatures is the most signatures read from one .sig or .att
	// manifest; the rest are reported, not read.
	MaxSignatures = 100
	// MaxReferrers is the most bundle referrers read for one digest, and
	// MaxLookupBytes the most bytes of referrer manifests, bundles,
	// payloads, attestation manifests and envelopes one lookup (one call
	// of SignaturesUntil or of Attestations) reads: a read that would pass
	// it is refused before it is made, and what is past the limit is
	// reported, not read. A lookup that finds enough valid signatures
	// stops before (SignaturesUntil).
	MaxReferrers   = 1000
	MaxLookupBytes = 32 << 20
	// MaxPayloadSize is the largest simple-signing payload read.
	MaxPayloadSize = 64 << 10
	// MaxAttestationSize is the largest bundle blob and .att DSSE
	// envelope read: a bundle's kind (signature or attestation) is only
	// known once it is read, and real SLSA provenance passes 64 KiB. The
	// lookup's MaxLookupBytes keeps many of them from adding up.
	MaxAttestationSize = 1 << 20
	// MaxReferrerManifestSize is the largest bundle referrer manifest read:
	// one is about 1 KiB, so 100 of them cost at most 6.4 MiB, not 400.
	MaxReferrerManifestSize = 64 << 10
	// MaxManifestSize is the largest manifest or index read.
	MaxManifestSize = 4 << 20
)

// Annotations of cosign's keyless .sig and .att layers. None of them
// grants trust: Signature.Entity hands them to sigstore-go.
const (
	// CertificateAnnotation is the PEM signing certificate.
	CertificateAnnotation = "dev.sigstore.cosign/certificate"
	// ChainAnnotation is the PEM chain above it: intermediates, then root.
	ChainAnnotation = "dev.sigstore.cosign/chain"
	// RekorBundleAnnotation is the Rekor entry with its signed entry
	// timestamp, as JSON.
	RekorBundleAnnotation = "dev.sigstore.cosign/bundle"
	// maxKeylessAnnotationSize bounds each of them; a Fulcio certificate
	// is about 1 KiB, a Rekor entry a few.
	maxKeylessAnnotationSize = 64 << 10
)

const (
	// maxErrorBodySize caps how much of an error response is read.
	maxErrorBodySize = 64 << 10
	// maxConcurrentFetches bounds the blob and referrer fetches in flight
	// for one kind of signature in one lookup.
	maxConcurrentFetches = 8
	// referrerBatch is how many bundle referrers are read before asking
	// whether the signatures suffice.
	referrerBatch = 2 * maxConcurrentFetches
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
	// RetryAfter is the Retry-After header of a 429 or 503, as sent.
	RetryAfter string
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
// Each source and each artifact in it counts or fails on its own, because
// anyone who can push can put junk beside a good signature: a malformed
// artifact, a source that holds the wrong kind of document, and the
// entries of a source past MaxSignatures are each returned as a Signature
// with Err set, never as the lookup's error. A source the registry could
// not answer for is a *RegistryError; it is returned (joined, if several)
// together with the signatures the other sources gave, so that a caller
// may still admit on those but must not refuse on them.
func (f *Fetcher) Signatures(ctx context.Context, repo string, digest v1.Hash) ([]Signature, error) {
	return f.SignaturesUntil(ctx, repo, digest, nil)
}

// Enough says whether the signatures read so far suffice (for a verifier:
// whether enough trusted signers have been found). It is given each batch
// of newly read signatures once, in order.
type Enough func(batch []Signature) bool

// SignaturesUntil is Signatures, stopping as soon as enough says the
// signatures read so far suffice. The simple signatures are read first and
// whole; the bundle referrers follow in batches, at most MaxReferrers of
// them and MaxLookupBytes of manifests, payloads and bundles in all, so
// that junk referrers (anyone who can push can add them, and on a registry
// with the referrers API nobody can take them away) hide a valid bundle
// only past those bounds, and cost that much at most. What is not read is
// reported as one broken signature. enough may be nil: read everything
// within the bounds.
func (f *Fetcher) SignaturesUntil(ctx context.Context, repo string, digest v1.Hash, enough Enough) ([]Signature, error) {
	ctx, end, err := beginLookup(ctx, repo, digest)
	if err != nil {
		return nil, err
	}
	defer end()
	var legacy, bad []Signature
	var entries []Descriptor
	var legacyErr, listErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer recoverAs(&legacyErr)
		legacy, legacyErr = f.simpleSignatures(ctx, repo, digest)
	})
	wg.Go(func() {
		defer recoverAs(&listErr)
		entries, bad, listErr = f.bundleReferrers(ctx, repo, digest)
	})
	wg.Wait()
	out := append(legacy, bad...)
	if enough != nil && enough(legacy) {
		return out, nil
	}
	bundles, err := f.readBundles(ctx, repo, digest, entries, enough)
	return append(out, bundles...), errors.Join(legacyErr, listErr, err)
}

// lookupByteLimit is MaxLookupBytes; tests lower it.
var lookupByteLimit int64 = MaxLookupBytes

// readBytesKey holds, on a lookup's context, its *lookupBytes.
type readBytesKey struct{}

// lookupBytes counts what one lookup read or reserved for reading (see
// verified): past lookupByteLimit it reads no more. held is what it took
// from the process-wide pool, given back when the lookup ends.
type lookupBytes struct {
	read atomic.Int64
	held atomic.Int64
}

// MaxInFlightLookupBytes bounds the bytes of signature artifacts that all
// lookups of the process hold at once. Each lookup may read up to
// MaxLookupBytes, and nothing else bounds how many run at once: without
// it, a dozen concurrent lookups of junk-laden digests hold gigabytes. A
// lookup may always hold lookupFloorBytes, so that the small signature
// sets of real images are read whatever junk other lookups read; past
// the pool a read fails as a registry overload (503, Retry-After), which
// is never cached.
const (
	MaxInFlightLookupBytes = 64 << 20
	lookupFloorBytes       = 1 << 20
)

// ErrLookupsBusy is wrapped by the RegistryError of a read refused because
// the lookups in flight hold MaxInFlightLookupBytes: the caller's own
// overload, to be retried, not the registry's failure.
var ErrLookupsBusy = errors.New("signature lookups busy")

// lookupPool is the process-wide pool; tests replace it.
var lookupPool = &bytePool{limit: MaxInFlightLookupBytes}

// bytePool counts bytes taken against a limit.
type bytePool struct {
	mu          sync.Mutex
	used, limit int64
}

// take takes n bytes if they fit, or unconditionally when force is set.
func (p *bytePool) take(n int64, force bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !force && p.used+n > p.limit {
		return false
	}
	p.used += n
	return true
}

func (p *bytePool) give(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.used -= n
}

// beginLookup checks a lookup's repository and digest and readies its
// context: defaultLookupTimeout when ctx has no deadline, and the lookup's
// byte count (see lookupBytes). end gives back what the lookup took from
// the pool and cancels the default deadline; call it when the lookup ends.
func beginLookup(ctx context.Context, repo string, digest v1.Hash) (_ context.Context, end func(), err error) {
	if err := CheckRepository(repo); err != nil {
		return nil, nil, err
	}
	if err := checkDigest(digest); err != nil {
		return nil, nil, err
	}
	cancel := context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel = context.WithTimeout(ctx, defaultLookupTimeout)
	}
	lb := new(lookupBytes)
	pool := lookupPool
	return context.WithValue(ctx, readBytesKey{}, lb), func() {
		pool.give(lb.held.Swap(0))
		cancel()
	}, nil
}

// readBundles reads bundle referrers in batches until enough says so, the
// entries run out, or MaxLookupBytes have been read.
func (f *Fetcher) readBundles(ctx context.Context, repo string, digest v1.Hash, entries []Descriptor, enough Enough) ([]Signature, error) {
	var out []Signature
	read := &ctx.Value(readBytesKey{}).(*lookupBytes).read
	for start := 0; start < len(entries); start += referrerBatch {
		if read.Load() >= lookupByteLimit {
			out = append(out, broken(FormatBundle, "referrers of "+digest.String(),
				invalidf("%d bundle referrers not read: the lookup read its limit of %d bytes", len(entries)-start, lookupByteLimit)))
			return out, nil
		}
		batch := entries[start:min(start+referrerBatch, len(entries))]
		sigs, err := fetchAll(ctx, batch, func(ctx context.Context, _ int, e Descriptor) (Signature, error) {
			return f.bundleSignature(ctx, repo, digest, e)
		})
		out = append(out, sigs...)
		if err != nil {
			return out, err
		}
		if enough != nil && enough(sigs) {
			return out, nil
		}
	}
	return out, nil
}

// recoverAs turns a panic of the goroutine it is deferred in into *err:
// a bug in reading one artifact must not end a server's process.
func recoverAs(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("sigstore: reading signatures panicked: %v", r)
	}
}

// invalidf returns an error wrapping ErrInvalidArtifact.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidArtifact, fmt.Sprintf(format, args...))
}

// broken is the Signature that stands for a source or artifact that could
// not be read as signatures.
func broken(format Format, where string, err error) Signature {
	return Signature{Format: format, Where: where, Err: err}
}

// --- simple signing (.sig tag) ---

// simpleSignatures reads the .sig manifest of digest and its payloads.
func (f *Fetcher) simpleSignatures(ctx context.Context, repo string, digest v1.Hash) ([]Signature, error) {
	return f.layerSignatures(ctx, repo, SignatureTag(digest), FormatSimpleSigning, f.simpleSignature)
}

// Attestations returns the attestations cosign's legacy format stores for
// digest in repo: the layers of the "sha256-<hex>.att" manifest, each a
// DSSE envelope over an in-toto statement (FormatAttestation), keyless
// ones with the certificate, chain and Rekor bundle annotations of .sig
// layers. None found is no attestation and a nil error. Attestations
// stored as Sigstore bundles are bundle referrers, which Signatures reads.
//
// As for .sig: a malformed layer, a manifest of the wrong kind and the
// layers past MaxSignatures are each a Signature with Err set; a registry
// that could not answer is a *RegistryError. The lookup reads at most
// MaxLookupBytes of manifest and envelopes, each envelope at most
// MaxAttestationSize.
func (f *Fetcher) Attestations(ctx context.Context, repo string, digest v1.Hash) (sigs []Signature, err error) {
	ctx, end, err := beginLookup(ctx, repo, digest)
	if err != nil {
		return nil, err
	}
	defer end()
	defer recoverAs(&err)
	return f.layerSignatures(ctx, repo, AttestationTag(digest), FormatAttestation, f.attestation)
}

// layerSignatures reads the manifest under tag (.sig or .att) and, with
// read, at most MaxSignatures of its layers.
func (f *Fetcher) layerSignatures(ctx context.Context, repo, tag string, format Format,
	read func(ctx context.Context, repo, where string, l Descriptor) (Signature, error)) ([]Signature, error) {
	resp, err := f.get(ctx, manifestPath(repo, tag), manifestAccept, MaxManifestSize, http.StatusNotFound)
	if errors.Is(err, ErrInvalidArtifact) {
		return []Signature{broken(format, tag, err)}, nil
	}
	if err != nil {
		return nil, err
	}
	if resp.status == http.StatusNotFound {
		return nil, nil
	}
	countBytes(ctx, int64(len(resp.body)))
	layers, err := parseSignatureManifest(resp.body, resp.contentType)
	if err != nil {
		return []Signature{broken(format, tag, err)}, nil
	}
	var extra []Signature
	if len(layers) > MaxSignatures {
		extra = append(extra, broken(format, tag,
			invalidf("%d layers past the limit of %d were not read", len(layers)-MaxSignatures, MaxSignatures)))
		layers = layers[:MaxSignatures]
	}
	sigs, err := fetchAll(ctx, layers, func(ctx context.Context, i int, l Descriptor) (Signature, error) {
		return read(ctx, repo, fmt.Sprintf("%s layer %d", tag, i), l)
	})
	return append(sigs, extra...), err
}

// asSource turns a failure to read a source into the source's result: an
// invalid answer (too large, say) is a broken source, a registry failure
// stays an error.
func asSource(format Format, where string, err error) error {
	if errors.Is(err, ErrInvalidArtifact) {
		return &sourceError{Signature: broken(format, where, err)}
	}
	return err
}

// sourceError carries a broken source out of a helper that returns
// (result, error); callers turn it back into a Signature.
type sourceError struct{ Signature Signature }

func (e *sourceError) Error() string { return e.Signature.Where + ": " + e.Signature.Err.Error() }

// parseSignatureManifest checks that b is an image manifest and returns its
// layers, all of them: the caller reads at most MaxSignatures.
func parseSignatureManifest(b []byte, contentType string) ([]Descriptor, error) {
	m, err := ParseManifest(b, contentType)
	if err != nil {
		return nil, invalidf("signature manifest: %v", err)
	}
	if m.Kind != KindImage {
		return nil, invalidf("signature tag holds a %s (%s), want an image manifest", m.Kind, m.MediaType)
	}
	return m.Layers, nil
}

// simpleSignature reads one .sig layer: its base64 signature annotation,
// its keyless annotations if any, and its payload blob, checked against
// the descriptor.
func (f *Fetcher) simpleSignature(ctx context.Context, repo, where string, l Descriptor) (Signature, error) {
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
	k, err := parseKeylessAnnotations(l.Annotations)
	if err != nil {
		s.Err = err
		return s, nil
	}
	payload, err := f.verifiedBlob(ctx, repo, l, MaxPayloadSize)
	if err != nil {
		return abortOrKeep(s, err)
	}
	s.Signed, s.Payload, s.Sig = payload, payload, sig
	s.Certificate, s.Chain, s.RekorBundle = k.certificate, k.chain, k.rekorBundle
	return s, nil
}

// keylessAnnotations are the keyless annotations of a .sig or .att layer.
type keylessAnnotations struct {
	certificate []byte
	chain       [][]byte
	rekorBundle []byte
}

// parseKeylessAnnotations reads the certificate, chain and Rekor bundle
// annotations of a layer strictly; each is optional, but a chain needs a
// certificate. An empty chain annotation is no chain (cosign writes one
// beside every certificate). Errors wrap ErrInvalidArtifact.
func parseKeylessAnnotations(annotations map[string]string) (keylessAnnotations, error) {
	var k keylessAnnotations
	if pemText, ok := annotations[CertificateAnnotation]; ok && pemText != "" {
		certs, err := decodeCertificatesPEM(pemText, CertificateAnnotation)
		if err != nil {
			return k, err
		}
		if len(certs) != 1 {
			return k, invalidf("annotation %s: %d certificates, want 1", CertificateAnnotation, len(certs))
		}
		k.certificate = certs[0]
	}
	if pemText, ok := annotations[ChainAnnotation]; ok && pemText != "" {
		if k.certificate == nil {
			return k, invalidf("annotation %s without a %s annotation", ChainAnnotation, CertificateAnnotation)
		}
		certs, err := decodeCertificatesPEM(pemText, ChainAnnotation)
		if err != nil {
			return k, err
		}
		k.chain = certs
	}
	if raw, ok := annotations[RekorBundleAnnotation]; ok {
		rb, err := parseRekorBundle([]byte(raw))
		if err != nil {
			return k, invalidArtifact(err)
		}
		if k.certificate != nil {
			if err := checkRekorBody(rb.body, k.certificate); err != nil {
				return k, invalidf("annotation %s: %v", RekorBundleAnnotation, err)
			}
		}
		k.rekorBundle = []byte(raw)
	}
	return k, nil
}

// decodeCertificatesPEM decodes PEM text that holds one to
// maxChainCertificates CERTIFICATE blocks, without headers, separated by
// whitespace only, each DER that parses as an X.509 certificate.
func decodeCertificatesPEM(text, annotation string) ([][]byte, error) {
	if len(text) > maxKeylessAnnotationSize {
		return nil, invalidf("annotation %s: %d bytes, the limit is %d", annotation, len(text), maxKeylessAnnotationSize)
	}
	var out [][]byte
	rest := []byte(text)
	for {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) == 0 {
			break
		}
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			return nil, invalidf("annotation %s: text outside PEM blocks", annotation)
		}
		block, next := pem.Decode(rest)
		if block == nil {
			return nil, invalidf("annotation %s: malformed PEM block", annotation)
		}
		if block.Type != "CERTIFICATE" {
			return nil, invalidf("annotation %s: PEM block %q, want only CERTIFICATE", annotation, block.Type)
		}
		if len(block.Headers) > 0 {
			return nil, invalidf("annotation %s: PEM block with headers", annotation)
		}
		if len(out) == maxChainCertificates {
			return nil, invalidf("annotation %s: more than %d certificates", annotation, maxChainCertificates)
		}
		if err := checkCertificateDER(block.Bytes); err != nil {
			return nil, invalidf("annotation %s: certificate %d: %v", annotation, len(out), err)
		}
		out = append(out, block.Bytes)
		rest = next
	}
	if len(out) == 0 {
		return nil, invalidf("annotation %s: no certificate", annotation)
	}
	return out, nil
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

// bundleReferrers lists the referrers of digest whose artifactType is a
// Sigstore bundle. It asks the referrers API and reads the referrers tag at
// once, so that a registry without the API costs no extra round trip, and
// returns the union of both, deduplicated by digest (the API's entries
// first): a registry may have gained the API after cosign wrote a
// referrers tag. Not found on both is no referrer. A source that holds
// something else than a referrers index, and the entries past
// MaxSignatures, come back as broken signatures; the entries of the other
// source still count. A registry failure on either is an error, returned
// after the broken signatures found so far.
func (f *Fetcher) bundleReferrers(ctx context.Context, repo string, digest v1.Hash) ([]Descriptor, []Signature, error) {
	var fromAPI, fromTag []Descriptor
	var apiErr, tagErr error
	var wg sync.WaitGroup
	wg.Go(func() { fromAPI, apiErr = f.referrersAPI(ctx, repo, digest) })
	wg.Go(func() { fromTag, tagErr = f.referrersTag(ctx, repo, digest) })
	wg.Wait()
	var bad []Signature
	var errs []error
	for _, err := range []error{apiErr, tagErr} {
		var se *sourceError
		switch {
		case err == nil:
		case errors.As(err, &se):
			bad = append(bad, se.Signature)
		default:
			errs = append(errs, err)
		}
	}
	entries := unionByDigest(fromAPI, fromTag)
	if len(entries) > MaxReferrers {
		bad = append(bad, broken(FormatBundle, "referrers of "+digest.String(),
			invalidf("%d bundle referrers past the limit of %d were not read", len(entries)-MaxReferrers, MaxReferrers)))
		entries = entries[:MaxReferrers]
	}
	return entries, bad, errors.Join(errs...)
}

// referrersAPI lists the bundle referrers of digest from the OCI 1.1
// referrers API. A registry without the API (404, 400, 405, 406, or a
// 200 that is not an OCI index) lists none.
func (f *Fetcher) referrersAPI(ctx context.Context, repo string, digest v1.Hash) ([]Descriptor, error) {
	where := "referrers API"
	path := "/v2/" + repo + "/referrers/" + digest.String() + "?artifactType=" + url.QueryEscape(BundleMediaType)
	resp, err := f.get(ctx, path, string(types.OCIImageIndex), MaxManifestSize,
		http.StatusNotFound, http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusNotAcceptable)
	if err != nil {
		return nil, asSource(FormatBundle, where, err)
	}
	if resp.status != http.StatusOK || BaseMediaType(resp.contentType) != string(types.OCIImageIndex) {
		return nil, nil
	}
	entries, err := parseReferrersIndex(resp.body)
	if err != nil {
		return nil, &sourceError{broken(FormatBundle, where, err)}
	}
	return entries, nil
}

// referrersTag lists the bundle referrers of digest from the referrers tag
// schema ("sha256-<hex>"); no such tag lists none.
func (f *Fetcher) referrersTag(ctx context.Context, repo string, digest v1.Hash) ([]Descriptor, error) {
	tag := ReferrersTag(digest)
	where := "referrers tag " + tag
	resp, err := f.get(ctx, manifestPath(repo, tag), string(types.OCIImageIndex), MaxManifestSize, http.StatusNotFound)
	if err != nil {
		return nil, asSource(FormatBundle, where, err)
	}
	if resp.status == http.StatusNotFound {
		return nil, nil
	}
	entries, err := parseReferrersIndex(resp.body)
	if err != nil {
		return nil, &sourceError{broken(FormatBundle, where, err)}
	}
	return entries, nil
}

// unionByDigest concatenates lists, keeping the first entry of each
// digest.
func unionByDigest(lists ...[]Descriptor) []Descriptor {
	var out []Descriptor
	seen := make(map[v1.Hash]bool)
	for _, list := range lists {
		for _, e := range list {
			if !seen[e.Digest] {
				seen[e.Digest] = true
				out = append(out, e)
			}
		}
	}
	return out
}

// parseReferrersIndex returns the bundle entries of an OCI index.
// Registries may ignore the artifactType filter, so it is applied here too.
func parseReferrersIndex(b []byte) ([]Descriptor, error) {
	idx, err := ParseManifest(b, "")
	if err != nil {
		return nil, invalidf("referrers index: %v", err)
	}
	if idx.MediaType != string(types.OCIImageIndex) {
		return nil, invalidf("referrers index is not an OCI image index (mediaType %q)", idx.MediaType)
	}
	var out []Descriptor
	for _, d := range idx.Manifests {
		if d.ArtifactType == BundleMediaType {
			out = append(out, d)
		}
	}
	return out, nil
}

// bundleSignature reads one bundle referrer: its manifest (checked against
// the index entry and bound to digest), then its bundle layer.
func (f *Fetcher) bundleSignature(ctx context.Context, repo string, digest v1.Hash, e Descriptor) (Signature, error) {
	where := "referrer " + e.Digest.String()
	s := Signature{Format: FormatBundle, Where: where}
	if err := checkDigest(e.Digest); err != nil {
		s.Err = invalidf("referrer descriptor: %v", err)
		return s, nil
	}
	if e.MediaType != string(types.OCIManifestSchema1) {
		s.Err = invalidf("referrer media type %q, want %q", e.MediaType, types.OCIManifestSchema1)
		return s, nil
	}
	raw, err := f.verified(ctx, manifestPath(repo, e.Digest.String()), string(types.OCIManifestSchema1), e, MaxReferrerManifestSize)
	if err != nil {
		return abortOrKeep(s, err)
	}
	layer, err := parseBundleManifest(raw, digest)
	if err != nil {
		s.Err = err
		return s, nil
	}
	bundle, err := f.verifiedBlob(ctx, repo, layer, MaxAttestationSize)
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
func parseBundleManifest(raw []byte, digest v1.Hash) (Descriptor, error) {
	m, err := ParseManifest(raw, "")
	if err != nil {
		return Descriptor{}, invalidf("referrer manifest: %v", err)
	}
	if m.MediaType != string(types.OCIManifestSchema1) {
		return Descriptor{}, invalidf("referrer is not an OCI image manifest")
	}
	if artifactType := cmp.Or(m.ArtifactType, m.Config.MediaType); artifactType != BundleMediaType {
		return Descriptor{}, invalidf("referrer artifact type %q, want %q", artifactType, BundleMediaType)
	}
	if m.Subject == nil || m.Subject.Digest != digest {
		return Descriptor{}, invalidf("referrer subject is not %s", digest)
	}
	var layers []Descriptor
	for _, l := range m.Layers {
		if l.MediaType == BundleMediaType {
			layers = append(layers, l)
		}
	}
	if len(layers) != 1 {
		return Descriptor{}, invalidf("referrer has %d %s layers, want 1", len(layers), BundleMediaType)
	}
	return layers[0], nil
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
		g.Go(func() (err error) {
			defer recoverAs(&err)
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

// Blob fetches the blob d describes: at most limit bytes, checked against
// the descriptor's size and digest. A descriptor that is malformed, too
// large or points at other content is an error wrapping
// ErrInvalidArtifact; an upstream failure a *RegistryError.
func (f *Fetcher) Blob(ctx context.Context, repo string, d Descriptor, limit int64) ([]byte, error) {
	if err := CheckRepository(repo); err != nil {
		return nil, err
	}
	return f.verifiedBlob(ctx, repo, d, limit)
}

// verifiedBlob fetches the blob d describes and checks it against d.
func (f *Fetcher) verifiedBlob(ctx context.Context, repo string, d Descriptor, limit int64) ([]byte, error) {
	return f.verified(ctx, "/v2/"+repo+"/blobs/"+d.Digest.String(), "", d, limit)
}

// verified fetches the content d describes, refusing before any request a
// digest other than sha256, a size over limit, or a size that would take
// the lookup past lookupByteLimit, and after it any content whose length
// or sha256 differ from the descriptor's. Not found is an invalid artifact
// (the descriptor points at nothing); other failures are *RegistryError.
func (f *Fetcher) verified(ctx context.Context, path, accept string, d Descriptor, limit int64) ([]byte, error) {
	if err := checkDigest(d.Digest); err != nil {
		return nil, invalidf("descriptor: %v", err)
	}
	if d.Size < 0 || d.Size > limit {
		return nil, invalidf("descriptor size %d of %s exceeds the %d byte limit", d.Size, d.Digest, limit)
	}
	if err := reserveBytes(ctx, d.Size); err != nil {
		return nil, err
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
	if sum := sha256.Sum256(resp.body); hex.EncodeToString(sum[:]) != d.Digest.Hex {
		return nil, invalidf("content does not match descriptor digest %s", d.Digest)
	}
	return resp.body, nil
}

// countBytes counts n bytes already read against the lookup's budget, and
// the pool's.
func countBytes(ctx context.Context, n int64) {
	if lb, ok := ctx.Value(readBytesKey{}).(*lookupBytes); ok {
		lb.read.Add(n)
		lookupPool.take(n, true)
		lb.held.Add(n)
	}
}

// reserveBytes counts n bytes against the lookup's budget before they are
// read, so that concurrent reads cannot together pass it. Past the
// budget the read is refused (an invalid artifact: what is not read does
// not count) and the count stays past it, so that the lookup stops. A
// context without a budget reads within the per-artifact limits only.
func reserveBytes(ctx context.Context, n int64) error {
	lb, ok := ctx.Value(readBytesKey{}).(*lookupBytes)
	if !ok {
		return nil
	}
	if total := lb.read.Add(n); total > lookupByteLimit {
		return invalidf("not read: %d more bytes would pass the lookup's limit of %d bytes", n, lookupByteLimit)
	}
	if !lookupPool.take(n, lb.held.Load()+n <= lookupFloorBytes) {
		return &RegistryError{
			Op:         "reading signature artifacts",
			StatusCode: http.StatusServiceUnavailable,
			Code:       "TOOMANYREQUESTS",
			Message:    fmt.Sprintf("the lookups in flight hold their limit of %d bytes of signature artifacts", MaxInFlightLookupBytes),
			Err:        ErrLookupsBusy,
			RetryAfter: "1",
		}
	}
	lb.held.Add(n)
	return nil
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
	e := &RegistryError{Op: op, StatusCode: resp.StatusCode, Message: http.StatusText(resp.StatusCode),
		RetryAfter: resp.Header.Get("Retry-After")}
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
