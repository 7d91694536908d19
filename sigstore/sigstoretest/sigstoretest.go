// Package sigstoretest makes keyless Sigstore signatures and attestations
// for tests, in the registry layouts sigstore cosign writes, much as
// net/http/httptest makes servers. It is for tests only: no non-test code
// of the binary may import it (TestNotImportedByBinary checks that).
//
// A Sigstore is a private Sigstore deployment in memory: a Fulcio
// certificate authority and a Rekor log (sigstore-go's
// pkg/testing/ca.VirtualSigstore) and an RFC 3161 timestamp authority.
// Every artifact is signed with a new Fulcio certificate (ECDSA P-256, the
// identity an e-mail or URI SAN plus the OIDC issuer extensions, valid 10
// minutes from issue), logged in Rekor and timestamped, unless Options say
// otherwise. TrustedRootJSON is the trusted_root.json that verifies them.
//
//	s, _ := sigstoretest.New()
//	rootJSON, _ := s.TrustedRootJSON()
//	o := sigstoretest.Options{Identity: "ci@example.com", Issuer: "https://issuer.example"}
//
//	// cosign v3's default: a Sigstore bundle v0.3 stored as an OCI referrer.
//	b, _ := s.SignatureBundle(digest, o)
//	_ = sigstoretest.WriteSignatureBundle(ctx, repo, digest, b)
//
//	// cosign's legacy .sig layer (cosign sign --new-bundle-format=false).
//	payload, ann, _ := s.SimpleSigningLayer("registry.example/app", digest, o)
//	_ = sigstoretest.WriteSimpleSigning(ctx, repo, digest, payload, ann)
//
//	// Attestations: a bundle referrer, or a layer of the legacy .att tag.
//	ab, _ := s.AttestationBundle(digest, sigstore.PredicateSLSA1, predicate, o)
//	_ = sigstoretest.WriteAttestationBundle(ctx, repo, digest, ab)
//	env, ann, _ := s.AttestationEnvelope(digest, sigstore.PredicateSLSA1, predicate, o)
//	_ = sigstoretest.WriteAttestation(ctx, repo, digest, env, ann)
//
//	// Key-signed attestations (cosign attest --key), for the key path.
//	env, ann, _ = sigstoretest.KeyAttestationEnvelope(key, digest, sigstore.PredicateSLSA1, predicate)
//
// Tests of package sigstore itself must be in package sigstore_test to
// import this package (it imports sigstore).
//
// # What is made, and how it matches cosign
//
//   - SignatureBundle, AttestationBundle: a Sigstore bundle v0.3 (protobuf
//     JSON, as cosign v3 writes it) whose verificationMaterial holds the
//     leaf certificate alone ("certificate"), one Rekor v1 entry of kind
//     dsse with its inclusion promise (SET) and an inclusion proof with a
//     signed checkpoint, and an RFC 3161 timestamp over the signature; its
//     dsseEnvelope (no keyid) signs an in-toto statement. The entry's log
//     index is 0 (VirtualSigstore's inclusion proofs are for a tree of one
//     entry), which protobuf JSON leaves out. A signature's statement is
//     cosign's: Statement v1, one subject {"digest":{"sha256":hex},
//     "annotations":{...}} ({} without annotations), predicateType
//     https://sigstore.dev/cosign/sign/v1, predicate {}. An attestation's
//     statement is what cosign v3.1.2's attest writes: Statement v0.1, one
//     subject {"name":Options.SubjectName,"digest":{"sha256":hex}} (no name
//     when SubjectName is ""), the predicate type and predicate given.
//   - SimpleSigningLayer: the legacy .sig layer: the simple-signing payload
//     (sigstore.NewPayload) and the annotations of a keyless layer:
//     dev.cosignproject.cosign/signature (base64 signature over the
//     payload), dev.sigstore.cosign/certificate (PEM leaf),
//     dev.sigstore.cosign/chain (PEM intermediate, then root, as cosign v2
//     wrote it; empty with Options.EmptyChain, as cosign v3 writes it), and
//     dev.sigstore.cosign/bundle, cosign's Rekor bundle
//     {"SignedEntryTimestamp":b64,"Payload":{"body":b64,"integratedTime":n,
//     "logIndex":n,"logID":hex}} over a hashedrekord entry (SET only, no
//     inclusion proof, as the legacy format has none).
//   - AttestationEnvelope: the legacy .att layer: the DSSE envelope as
//     cosign v3 stores it ({"payload","payloadType","signatures":[{"sig"}]})
//     and the annotations predicateType, an empty
//     dev.cosignproject.cosign/signature (the signature is in the blob), and
//     certificate, chain and Rekor bundle as above, the entry of kind dsse.
//
// # Options
//
// Options.NoTlog leaves the Rekor entry out (no tlogEntries, no
// dev.sigstore.cosign/bundle annotation): the certificate then only
// stands with the RFC 3161 timestamp of the bundle, and a verifier that
// requires a transparency-log entry must refuse. Options.OtherBytes makes
// the Rekor entry genuine (logged, signed by the log, same certificate)
// but for other bytes: the same key signs a statement or payload for
// another digest, that is logged, and its entry is put on the real
// artifact, which is otherwise intact; a verifier must refuse it.
// Options.IntegratedTime sets the entry's integrated time (default: issue
// time plus 5 minutes, as VirtualSigstore does).
//
// KeyAttestationEnvelope makes the key-signed .att layer of "cosign attest
// --key" with a sigstore.PrivateKey, so that it signs exactly as the
// project's keys do.
//
// # Writers
//
// The writers push with go-containerregistry's remote package to any
// registry: a real one in end-to-end tests, go-containerregistry's
// in-memory one (pkg/registry) in unit tests. The bundle writers are the
// project's own (sigstore.WriteBundle, sigstore.WriteAttestationBundle);
// WriteSimpleSigning and WriteAttestation append layers with any
// annotations, so that tests can also store broken ones, and produce the
// .sig and .att manifests byte for byte as cosign v3.1.2 does (checked
// against testdata/cosign-v3.1.2). They read and rewrite the manifest, so
// concurrent writers of one tag may lose layers: write one at a time.
//
// go-containerregistry's in-memory registry with WithReferrersSupport lists
// a referrer's config media type as its artifactType, not the manifest's
// artifactType as the OCI distribution spec says, so the project's reader
// (which asks for bundle artifacts) finds no bundle through its referrers
// API; use it without referrers support, as CNCF distribution 2.8 is.
//
// # Lifetime
//
// An instance issues certificates for about an hour after New (its Fulcio
// CA's validity period ends then). What it issued keeps verifying against
// its trusted root afterwards, as sigstore-go verifies certificates at the
// times the log entry and the timestamp attest. The timestamp authority is
// this package's own rather than VirtualSigstore's, whose signing
// certificate expires 5 minutes after the instance is made: timestamps made
// later would not verify, which would make long test runs flaky. A
// Sigstore is safe for concurrent use.
package sigstoretest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/digitorus/timestamp"
	"github.com/go-openapi/runtime"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/pki"
	rekortypes "github.com/sigstore/rekor/pkg/types"
	dsseentry "github.com/sigstore/rekor/pkg/types/dsse"
	_ "github.com/sigstore/rekor/pkg/types/dsse/v0.0.1" // registers the dsse entry kind
	"github.com/sigstore/rekor/pkg/types/hashedrekord"
	_ "github.com/sigstore/rekor/pkg/types/hashedrekord/v0.0.1" // registers the hashedrekord entry kind
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/cosign-dev/cosign/sigstore"
)

const (
	inTotoStatementV1  = "https://in-toto.io/Statement/v1"
	inTotoStatementV01 = "https://in-toto.io/Statement/v0.1"
	rekorBaseURL       = "https://rekor.localhost" // the origin of VirtualSigstore's checkpoints
	tsaURI             = "https://tsa.sigstoretest.invalid"
)

// Sigstore is a Fulcio CA, a Rekor log and a timestamp authority in
// memory. Make one with New.
type Sigstore struct {
	vs     *ca.VirtualSigstore
	fulcio *root.FulcioCertificateAuthority
	rekor  *root.TransparencyLog
	logID  []byte // raw SHA-256 of the Rekor key's PKIX DER
	// fulcioKey is the key of the Fulcio intermediate.
	fulcioKey *ecdsa.PrivateKey
	tsa       *root.SigstoreTimestampingAuthority
	tsaKey    *ecdsa.PrivateKey
	// nextIndex numbers the log entries that have no inclusion proof.
	nextIndex atomic.Int64
}

// New makes a Sigstore with fresh keys: its trusted root verifies nothing
// another instance made.
func New() (*Sigstore, error) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: %w", err)
	}
	s := &Sigstore{vs: vs}
	// The Fulcio CA is this package's own, made with VirtualSigstore's
	// generators, so that it can issue certificates with a URI subject (a
	// CI workflow's identity), which VirtualSigstore's issuer cannot.
	caRoot, caRootKey, err := ca.GenerateRootCa()
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: Fulcio root: %w", err)
	}
	inter, interKey, err := ca.GenerateFulcioIntermediate(caRoot, caRootKey)
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: Fulcio intermediate: %w", err)
	}
	s.fulcio = &root.FulcioCertificateAuthority{
		Root:                caRoot,
		Intermediates:       []*x509.Certificate{inter},
		ValidityPeriodStart: time.Now().Add(-5 * time.Hour),
		ValidityPeriodEnd:   time.Now().Add(time.Hour),
		URI:                 "https://fulcio.sigstoretest.invalid",
	}
	s.fulcioKey = interKey

	// VirtualSigstore's log describes its ID as the hex text of the key ID,
	// which a trusted_root.json would carry as the ID itself; the log is
	// described again with the raw ID, and a validity period open at the end
	// so that any integrated time from a day before New on is in it.
	hexID, err := vs.RekorLogID()
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: %w", err)
	}
	log, ok := vs.RekorLogs()[hexID]
	if !ok {
		return nil, errors.New("sigstoretest: VirtualSigstore names no Rekor log for its own key")
	}
	if s.logID, err = hex.DecodeString(hexID); err != nil {
		return nil, fmt.Errorf("sigstoretest: Rekor log ID: %w", err)
	}
	s.rekor = &root.TransparencyLog{
		BaseURL:             rekorBaseURL,
		ID:                  s.logID,
		ValidityPeriodStart: time.Now().Add(-24 * time.Hour),
		HashFunc:            crypto.SHA256,
		PublicKey:           log.PublicKey,
		SignatureHashFunc:   crypto.SHA256,
	}
	if err := s.newTSA(); err != nil {
		return nil, fmt.Errorf("sigstoretest: timestamp authority: %w", err)
	}
	return s, nil
}

// newTSA makes the timestamp authority: a root, an intermediate and a
// signing certificate valid for two hours, like the Fulcio intermediate.
func (s *Sigstore) newTSA() error {
	rootCert, rootKey, err := ca.GenerateRootCa()
	if err != nil {
		return err
	}
	inter, interKey, err := ca.GenerateTSAIntermediate(rootCert, rootKey)
	if err != nil {
		return err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}}) // id-kp-timeStamping
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return err
	}
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "sigstoretest-tsa", Organization: []string{"sigstoretest"}},
		NotBefore:    inter.NotBefore,
		NotAfter:     inter.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// RFC 3161 wants the timeStamping extended key usage alone, and
		// critical.
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: eku}},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, inter, &leafKey.PublicKey, interKey)
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	s.tsa = &root.SigstoreTimestampingAuthority{
		Root:                rootCert,
		Intermediates:       []*x509.Certificate{inter},
		Leaf:                leaf,
		ValidityPeriodStart: leaf.NotBefore,
		ValidityPeriodEnd:   leaf.NotAfter,
		URI:                 tsaURI,
	}
	s.tsaKey = leafKey
	return nil
}

// TrustedRootJSON returns the trusted_root.json of this Sigstore: its
// Fulcio CA, its Rekor log and its timestamp authority. It names no
// certificate-transparency log: VirtualSigstore's certificates carry no
// SCT, and a root that names a CT log makes verifiers (sigstore-go with
// WithSignedCertificateTimestamps, sigstore.TrustedRoot.RequiresSCT)
// demand one, so that no certificate of this Sigstore would verify.
func (s *Sigstore) TrustedRootJSON() ([]byte, error) {
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01,
		[]root.CertificateAuthority{s.fulcio},
		nil,
		[]root.TimestampingAuthority{s.tsa},
		map[string]*root.TransparencyLog{hex.EncodeToString(s.logID): s.rekor})
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: trusted root: %w", err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: trusted root: %w", err)
	}
	return b, nil
}

// Options describe one artifact.
type Options struct {
	// Identity and Issuer are the certificate's subject and OIDC issuer;
	// both are required. An Identity with a scheme and a host (a CI
	// workflow's "https://github.com/org/repo/.github/workflows/x.yml@ref")
	// is a URI SAN, anything else an e-mail SAN, as Fulcio issues them.
	Identity, Issuer string
	// NoTlog leaves the Rekor entry out. The certificate still expires 10
	// minutes after issue.
	NoTlog bool
	// IntegratedTime is the Rekor entry's integrated time; zero means issue
	// time plus 5 minutes, as VirtualSigstore does.
	IntegratedTime time.Time
	// OtherBytes makes the Rekor entry one for other bytes than the
	// signature covers: a genuine entry, with the same certificate, for a
	// statement or payload of another digest signed with the same key. The
	// artifact itself is intact.
	OtherBytes bool
	// Annotations are cosign's -a annotations, in the signed document: the
	// statement's subject (bundles) or the simple-signing "optional"
	// member. Signatures only: cosign's attest has none.
	Annotations map[string]string
	// SubjectName is the name of an attestation statement's subject; cosign
	// puts the repository ("registry.example/app") there. "" leaves it out.
	SubjectName string
	// EmptyChain writes the dev.sigstore.cosign/chain annotation of a
	// legacy layer empty, as cosign v3 does; by default it holds the Fulcio
	// intermediate and root, as cosign v2 wrote it.
	EmptyChain bool
}

// signer is one issued certificate and its key.
type signer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	o    Options
}

// issue makes a Fulcio certificate for o's identity.
func (s *Sigstore) issue(o Options) (*signer, error) {
	if o.Identity == "" || o.Issuer == "" {
		return nil, errors.New("sigstoretest: Options.Identity and Options.Issuer are required")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: %w", err)
	}
	// Fulcio's issuer extensions: the deprecated raw one (1.1) and the
	// DER-encoded one (1.8) that Fulcio has written since 2022.
	issuerDER, err := asn1.MarshalWithParams(o.Issuer, "utf8")
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now,
		NotAfter:     now.Add(10 * time.Minute),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}, Value: []byte(o.Issuer)},
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}, Value: issuerDER},
		},
	}
	// A subject with a scheme (a workflow's URI) is a URI SAN, as Fulcio
	// issues for CI identities; anything else an e-mail SAN.
	if u, err := url.Parse(o.Identity); err == nil && u.Scheme != "" && u.Host != "" {
		tmpl.URIs = []*url.URL{u}
	} else {
		tmpl.EmailAddresses = []string{o.Identity}
	}
	inter := s.fulcio.Intermediates[0]
	der, err := x509.CreateCertificate(rand.Reader, tmpl, inter, &key.PublicKey, s.fulcioKey)
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: issuing a certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: %w", err)
	}
	return &signer{cert: cert, key: key, o: o}, nil
}

// sign signs msg as Fulcio certificates' ECDSA P-256 keys do: SHA-256, ASN.1.
func (sg *signer) sign(msg []byte) ([]byte, error) {
	digest := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, sg.key, digest[:])
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: signing: %w", err)
	}
	return sig, nil
}

// integratedTime is the Rekor entry's integrated time for o.
func (sg *signer) integratedTime() int64 {
	if !sg.o.IntegratedTime.IsZero() {
		return sg.o.IntegratedTime.Unix()
	}
	return sg.cert.NotBefore.Add(5 * time.Minute).Unix()
}

// certPEM is the PEM of the leaf certificate.
func (sg *signer) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sg.cert.Raw})
}

// chainPEM is the chain annotation for o: the PEM of the Fulcio
// intermediate, then the root, or nothing with EmptyChain.
func (s *Sigstore) chainPEM(o Options) []byte {
	var b bytes.Buffer
	if o.EmptyChain {
		return nil
	}
	for _, c := range append(append([]*x509.Certificate{}, s.fulcio.Intermediates...), s.fulcio.Root) {
		b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	return b.Bytes()
}

// timestamp is an RFC 3161 timestamp response over sig, made now.
func (s *Sigstore) timestamp(sig []byte) ([]byte, error) {
	tsq, err := timestamp.CreateRequest(bytes.NewReader(sig), &timestamp.RequestOptions{Hash: crypto.SHA256})
	if err != nil {
		return nil, err
	}
	req, err := timestamp.ParseRequest(tsq)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	ts := timestamp.Timestamp{
		HashAlgorithm:   req.HashAlgorithm,
		HashedMessage:   req.HashedMessage,
		Time:            time.Now(),
		SerialNumber:    serial,
		Policy:          asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 2},
		ExtraExtensions: req.Extensions,
	}
	resp, err := ts.CreateResponseWithOpts(s.tsa.Leaf, s.tsaKey, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: timestamping: %w", err)
	}
	return resp, nil
}

// logEntry is one Rekor v1 entry.
type logEntry struct {
	kind, version  string
	body           []byte // canonicalized
	integratedTime int64
	logIndex       int64
	set            []byte
	proof          *protorekor.InclusionProof // nil: SET only
}

// logEntry logs an entry of kind (dsseentry.KIND: artifact is a DSSE
// envelope's JSON; hashedrekord.KIND: artifact is the signed bytes) for
// sig and the certificate of sg, as Rekor would: the entry's signature is
// checked on the way in. With proof it carries VirtualSigstore's inclusion
// proof (log index 0 of a tree of 1: protobuf JSON then leaves logIndex
// out), else an index of its own (1, 2, ...).
func (s *Sigstore) logEntry(sg *signer, kind string, artifact, sig []byte, proof bool) (*logEntry, error) {
	props := rekortypes.ArtifactProperties{
		PublicKeyBytes: [][]byte{sg.certPEM()},
		PKIFormat:      string(pki.X509),
		SignatureBytes: sig,
	}
	version := ""
	switch kind {
	case dsseentry.KIND:
		props.ArtifactBytes = artifact
		version = dsseentry.New().DefaultVersion()
	case hashedrekord.KIND:
		sum := sha256.Sum256(artifact)
		props.ArtifactHash = hex.EncodeToString(sum[:])
		version = hashedrekord.New().DefaultVersion()
	default:
		return nil, fmt.Errorf("sigstoretest: Rekor entry kind %q", kind)
	}
	ctx := context.Background()
	proposed, err := rekortypes.NewProposedEntry(ctx, kind, version, props)
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: Rekor entry: %w", err)
	}
	impl, err := rekortypes.CreateVersionedEntry(proposed)
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: Rekor entry: %w", err)
	}
	canonical, err := rekortypes.CanonicalizeEntry(ctx, impl)
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: Rekor entry: %w", err)
	}
	// Parsed back as a verifier will, to be sure it reads.
	if _, err := models.UnmarshalProposedEntry(bytes.NewReader(canonical), runtime.JSONConsumer()); err != nil {
		return nil, fmt.Errorf("sigstoretest: Rekor entry: %w", err)
	}
	e := &logEntry{kind: kind, version: version, body: canonical, integratedTime: sg.integratedTime()}
	if proof {
		p, err := s.vs.GetInclusionProof(canonical)
		if err != nil {
			return nil, fmt.Errorf("sigstoretest: inclusion proof: %w", err)
		}
		e.logIndex = *p.LogIndex
		if e.proof, err = protoInclusionProof(p); err != nil {
			return nil, err
		}
	} else {
		e.logIndex = s.nextIndex.Add(1)
	}
	e.set, err = s.vs.RekorSignPayload(tlog.RekorPayload{
		Body:           base64.StdEncoding.EncodeToString(canonical),
		IntegratedTime: e.integratedTime,
		LogIndex:       e.logIndex,
		LogID:          hex.EncodeToString(s.logID),
	})
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: signed entry timestamp: %w", err)
	}
	return e, nil
}

// protoInclusionProof converts Rekor's inclusion proof to the bundle's.
func protoInclusionProof(p *models.InclusionProof) (*protorekor.InclusionProof, error) {
	if p.LogIndex == nil || p.TreeSize == nil || p.RootHash == nil || p.Checkpoint == nil {
		return nil, errors.New("sigstoretest: inclusion proof: missing fields")
	}
	rootHash, err := hex.DecodeString(*p.RootHash)
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: inclusion proof: %w", err)
	}
	hashes := make([][]byte, len(p.Hashes))
	for i, h := range p.Hashes {
		if hashes[i], err = hex.DecodeString(h); err != nil {
			return nil, fmt.Errorf("sigstoretest: inclusion proof: %w", err)
		}
	}
	return &protorekor.InclusionProof{
		LogIndex:   *p.LogIndex,
		RootHash:   rootHash,
		TreeSize:   *p.TreeSize,
		Hashes:     hashes,
		Checkpoint: &protorekor.Checkpoint{Envelope: *p.Checkpoint},
	}, nil
}

// proto is the entry as a bundle's transparency-log entry.
func (e *logEntry) proto(logID []byte) *protorekor.TransparencyLogEntry {
	return &protorekor.TransparencyLogEntry{
		LogIndex:          e.logIndex,
		LogId:             &protocommon.LogId{KeyId: logID},
		KindVersion:       &protorekor.KindVersion{Kind: e.kind, Version: e.version},
		IntegratedTime:    e.integratedTime,
		InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: e.set},
		InclusionProof:    e.proof,
		CanonicalizedBody: e.body,
	}
}

// rekorBundle is cosign's dev.sigstore.cosign/bundle annotation
// (cosign's bundle.RekorBundle), in its field order.
type rekorBundle struct {
	SignedEntryTimestamp []byte
	Payload              rekorPayload
}

type rekorPayload struct {
	Body           []byte `json:"body"`
	IntegratedTime int64  `json:"integratedTime"`
	LogIndex       int64  `json:"logIndex"`
	LogID          string `json:"logID"`
}

// annotation is the entry as cosign's Rekor bundle annotation.
func (e *logEntry) annotation(logID []byte) (string, error) {
	b, err := json.Marshal(rekorBundle{
		SignedEntryTimestamp: e.set,
		Payload: rekorPayload{
			Body:           e.body,
			IntegratedTime: e.integratedTime,
			LogIndex:       e.logIndex,
			LogID:          hex.EncodeToString(logID),
		},
	})
	if err != nil {
		return "", fmt.Errorf("sigstoretest: Rekor bundle: %w", err)
	}
	return string(b), nil
}

// otherDigest is a digest other than d, for OtherBytes.
func otherDigest(d v1.Hash) v1.Hash {
	sum := sha256.Sum256([]byte("sigstoretest other bytes " + d.String()))
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// checkDigest accepts "sha256:" and 64 lowercase hex digits.
func checkDigest(d v1.Hash) error {
	b, err := hex.DecodeString(d.Hex)
	if d.Algorithm != "sha256" || err != nil || len(b) != sha256.Size || hex.EncodeToString(b) != d.Hex {
		return fmt.Errorf("sigstoretest: digest %q: want sha256:<64 lowercase hex>", d)
	}
	return nil
}

// --- DSSE: bundles and .att layers ---

// statement is an in-toto statement, in in-toto's field order.
type statement struct {
	Type          string          `json:"_type"`
	Subject       []subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

type subject struct {
	Name        string            `json:"name,omitempty"`
	Digest      map[string]string `json:"digest"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// signatureStatement is the statement of a cosign v3 image signature.
func signatureStatement(d v1.Hash, annotations map[string]string) ([]byte, error) {
	if annotations == nil {
		annotations = map[string]string{}
	}
	// The annotations member is written even when empty, as cosign does.
	type sigSubject struct {
		Digest      map[string]string `json:"digest"`
		Annotations map[string]string `json:"annotations"`
	}
	b, err := json.Marshal(struct {
		Type          string       `json:"_type"`
		Subject       []sigSubject `json:"subject"`
		PredicateType string       `json:"predicateType"`
		Predicate     struct{}     `json:"predicate"`
	}{inTotoStatementV1, []sigSubject{{map[string]string{"sha256": d.Hex}, annotations}}, sigstore.CosignPredicateType, struct{}{}})
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: statement: %w", err)
	}
	return b, nil
}

// attestationStatement is the statement cosign v3.1.2's attest writes.
func attestationStatement(d v1.Hash, name, predicateType string, predicate any) ([]byte, error) {
	if predicateType == "" {
		return nil, errors.New("sigstoretest: empty predicate type")
	}
	if predicateType == sigstore.CosignPredicateType {
		return nil, fmt.Errorf("sigstoretest: predicate type %s is a signature's, not an attestation's", predicateType)
	}
	raw, err := predicateJSON(predicate)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(statement{
		Type:          inTotoStatementV01,
		Subject:       []subject{{Name: name, Digest: map[string]string{"sha256": d.Hex}}},
		PredicateType: predicateType,
		Predicate:     raw,
	})
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: statement: %w", err)
	}
	return b, nil
}

// predicateJSON is predicate as compact JSON, which must be an object.
// []byte and json.RawMessage are taken as JSON text; anything else is
// marshalled.
func predicateJSON(predicate any) (json.RawMessage, error) {
	var raw []byte
	switch p := predicate.(type) {
	case []byte:
		raw = p
	case json.RawMessage:
		raw = p
	default:
		var err error
		if raw, err = json.Marshal(p); err != nil {
			return nil, fmt.Errorf("sigstoretest: predicate: %w", err)
		}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fmt.Errorf("sigstoretest: predicate: %w", err)
	}
	if buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return nil, errors.New("sigstoretest: predicate: not a JSON object")
	}
	return buf.Bytes(), nil
}

// dsseSigned is a signed statement with its log entry and timestamp.
type dsseSigned struct {
	sg        *signer
	statement []byte
	sig       []byte
	entry     *logEntry // nil with NoTlog
	tsr       []byte
}

// envelope is the DSSE envelope as cosign v3 marshals it (encoding/json
// of the protobuf message): {"payload","payloadType","signatures":[{"sig"}]}.
func (d *dsseSigned) envelope() *protodsse.Envelope {
	return &protodsse.Envelope{
		Payload:     d.statement,
		PayloadType: sigstore.InTotoPayloadType,
		Signatures:  []*protodsse.Signature{{Sig: d.sig}},
	}
}

// signDSSE signs statement (and, with OtherBytes, other, whose entry is
// the one kept) with a new certificate, logs it unless NoTlog, and
// timestamps it.
func (s *Sigstore) signDSSE(o Options, stmt, other []byte, proof bool) (*dsseSigned, error) {
	sg, err := s.issue(o)
	if err != nil {
		return nil, err
	}
	d := &dsseSigned{sg: sg, statement: stmt}
	if d.sig, err = sg.sign(sigstore.PAE(sigstore.InTotoPayloadType, stmt)); err != nil {
		return nil, err
	}
	if d.tsr, err = s.timestamp(d.sig); err != nil {
		return nil, err
	}
	if o.NoTlog {
		return d, nil
	}
	logged := d
	if o.OtherBytes {
		logged = &dsseSigned{sg: sg, statement: other}
		if logged.sig, err = sg.sign(sigstore.PAE(sigstore.InTotoPayloadType, other)); err != nil {
			return nil, err
		}
	}
	env, err := json.Marshal(logged.envelope())
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: envelope: %w", err)
	}
	if d.entry, err = s.logEntry(sg, dsseentry.KIND, env, logged.sig, proof); err != nil {
		return nil, err
	}
	return d, nil
}

// bundle is the Sigstore bundle v0.3 JSON of d.
func (s *Sigstore) bundle(d *dsseSigned) ([]byte, error) {
	vm := &protobundle.VerificationMaterial{
		Content: &protobundle.VerificationMaterial_Certificate{
			Certificate: &protocommon.X509Certificate{RawBytes: d.sg.cert.Raw},
		},
		TimestampVerificationData: &protobundle.TimestampVerificationData{
			Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: d.tsr}},
		},
	}
	if d.entry != nil {
		vm.TlogEntries = []*protorekor.TransparencyLogEntry{d.entry.proto(s.logID)}
	}
	b, err := protojson.Marshal(&protobundle.Bundle{
		MediaType:            sigstore.BundleMediaType,
		VerificationMaterial: vm,
		Content:              &protobundle.Bundle_DsseEnvelope{DsseEnvelope: d.envelope()},
	})
	if err != nil {
		return nil, fmt.Errorf("sigstoretest: bundle: %w", err)
	}
	return b, nil
}

// SignatureBundle signs the image digest as cosign v3 does by default and
// returns the Sigstore bundle v0.3 JSON (see the package doc).
func (s *Sigstore) SignatureBundle(digest v1.Hash, o Options) ([]byte, error) {
	if err := checkDigest(digest); err != nil {
		return nil, err
	}
	stmt, err := signatureStatement(digest, o.Annotations)
	if err != nil {
		return nil, err
	}
	other, err := signatureStatement(otherDigest(digest), o.Annotations)
	if err != nil {
		return nil, err
	}
	d, err := s.signDSSE(o, stmt, other, true)
	if err != nil {
		return nil, err
	}
	return s.bundle(d)
}

// AttestationBundle attests predicate of predicateType about the image
// digest and returns the Sigstore bundle v0.3 JSON, as cosign v3's attest
// writes it by default (see the package doc).
func (s *Sigstore) AttestationBundle(digest v1.Hash, predicateType string, predicate any, o Options) ([]byte, error) {
	d, err := s.attest(digest, predicateType, predicate, o, true)
	if err != nil {
		return nil, err
	}
	return s.bundle(d)
}

// AttestationEnvelope attests predicate of predicateType about the image
// digest as cosign's legacy .att layer: the DSSE envelope JSON (the layer
// blob) and the layer's annotations (see the package doc).
func (s *Sigstore) AttestationEnvelope(digest v1.Hash, predicateType string, predicate any, o Options) (envelope []byte, annotations map[string]string, err error) {
	d, err := s.attest(digest, predicateType, predicate, o, false)
	if err != nil {
		return nil, nil, err
	}
	if envelope, err = json.Marshal(d.envelope()); err != nil {
		return nil, nil, fmt.Errorf("sigstoretest: envelope: %w", err)
	}
	annotations = map[string]string{
		sigstore.SignatureAnnotation:     "",
		sigstore.PredicateTypeAnnotation: predicateType,
		sigstore.CertificateAnnotation:   string(d.sg.certPEM()),
		sigstore.ChainAnnotation:         string(s.chainPEM(o)),
	}
	if d.entry != nil {
		if annotations[sigstore.RekorBundleAnnotation], err = d.entry.annotation(s.logID); err != nil {
			return nil, nil, err
		}
	}
	return envelope, annotations, nil
}

func (s *Sigstore) attest(digest v1.Hash, predicateType string, predicate any, o Options, proof bool) (*dsseSigned, error) {
	if err := checkDigest(digest); err != nil {
		return nil, err
	}
	if len(o.Annotations) > 0 {
		return nil, errors.New("sigstoretest: Options.Annotations are for signatures; cosign's attest writes none")
	}
	stmt, err := attestationStatement(digest, o.SubjectName, predicateType, predicate)
	if err != nil {
		return nil, err
	}
	other, err := attestationStatement(otherDigest(digest), o.SubjectName, predicateType, predicate)
	if err != nil {
		return nil, err
	}
	return s.signDSSE(o, stmt, other, proof)
}

// --- simple signing: .sig layers ---

// SimpleSigningLayer signs the image digest as cosign's legacy .sig layer
// for ref (the docker-reference the payload names, e.g.
// "registry.example/app"): the simple-signing payload (the layer blob) and
// the layer's annotations (see the package doc).
func (s *Sigstore) SimpleSigningLayer(ref string, digest v1.Hash, o Options) (payload []byte, annotations map[string]string, err error) {
	if err := checkDigest(digest); err != nil {
		return nil, nil, err
	}
	if payload, err = sigstore.NewPayload(ref, digest, o.Annotations); err != nil {
		return nil, nil, fmt.Errorf("sigstoretest: %w", err)
	}
	sg, err := s.issue(o)
	if err != nil {
		return nil, nil, err
	}
	sig, err := sg.sign(payload)
	if err != nil {
		return nil, nil, err
	}
	annotations = map[string]string{
		sigstore.SignatureAnnotation:   base64.StdEncoding.EncodeToString(sig),
		sigstore.CertificateAnnotation: string(sg.certPEM()),
		sigstore.ChainAnnotation:       string(s.chainPEM(o)),
	}
	if o.NoTlog {
		return payload, annotations, nil
	}
	logged, loggedSig := payload, sig
	if o.OtherBytes {
		if logged, err = sigstore.NewPayload(ref, otherDigest(digest), o.Annotations); err != nil {
			return nil, nil, fmt.Errorf("sigstoretest: %w", err)
		}
		if loggedSig, err = sg.sign(logged); err != nil {
			return nil, nil, err
		}
	}
	entry, err := s.logEntry(sg, hashedrekord.KIND, logged, loggedSig, false)
	if err != nil {
		return nil, nil, err
	}
	if annotations[sigstore.RekorBundleAnnotation], err = entry.annotation(s.logID); err != nil {
		return nil, nil, err
	}
	return payload, annotations, nil
}

// --- key-signed attestations ---

// KeyAttestationEnvelope attests predicate of predicateType about the
// image digest with key, as "cosign attest --key" writes it to the .att
// tag with no transparency log: the DSSE envelope JSON (the layer blob) and
// the layer's annotations (predicateType and an empty signature). key
// signs as the sigstore package's keys do (ECDSA and RSA over SHA-256,
// pure Ed25519); the statement is an attestation's as above, without a
// subject name.
func KeyAttestationEnvelope(key sigstore.PrivateKey, digest v1.Hash, predicateType string, predicate any) (envelope []byte, annotations map[string]string, err error) {
	if key == nil {
		return nil, nil, errors.New("sigstoretest: no signing key")
	}
	if err := checkDigest(digest); err != nil {
		return nil, nil, err
	}
	stmt, err := attestationStatement(digest, "", predicateType, predicate)
	if err != nil {
		return nil, nil, err
	}
	sig, err := key.Sign(sigstore.PAE(sigstore.InTotoPayloadType, stmt))
	if err != nil {
		return nil, nil, fmt.Errorf("sigstoretest: signing: %w", err)
	}
	d := &dsseSigned{statement: stmt, sig: sig}
	if envelope, err = json.Marshal(d.envelope()); err != nil {
		return nil, nil, fmt.Errorf("sigstoretest: envelope: %w", err)
	}
	return envelope, map[string]string{sigstore.SignatureAnnotation: "", sigstore.PredicateTypeAnnotation: predicateType}, nil
}
