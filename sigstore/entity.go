package sigstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/verify"
)

// Entity returns a keyless signature as the sigstore-go SignedEntity that
// verify.Verifier checks against a trusted root. It converts formats only:
// the certificate chain, the transparency-log entry, the timestamps and
// the signature are all checked by the verifier, not here.
//
//   - FormatBundle: the bundle JSON read by sigstore-go itself (which
//     enforces the rules of its version, e.g. an inclusion proof from v0.2
//     on), checked to hold the very envelope and certificate this package
//     read, so that a parser differential fails closed.
//   - FormatSimpleSigning and FormatAttestation (cosign's legacy .sig and
//     .att layers): a bundle v0.1 built as sigstore cosign builds one from
//     the layer, with the certificate annotation (then the chain) as
//     x509CertificateChain, the payload's SHA-256 digest and signature as
//     messageSignature (simple signing) or the envelope as dsseEnvelope
//     (attestations), and the Rekor bundle annotation, if any, as its one
//     transparency-log entry with the SignedEntryTimestamp as inclusion
//     promise. Without the annotation there is no entry, and a verifier
//     that requires one refuses.
//
// A signature without a certificate (made with a key), or with Err, has no
// entity: Entity returns an error.
func (s Signature) Entity() (verify.SignedEntity, error) {
	if s.Err != nil {
		return nil, s.Err
	}
	if !s.Keyless() {
		return nil, fmt.Errorf("%s: no certificate: a key signature is verified with the key, not a trusted root", s.where())
	}
	var e verify.SignedEntity
	var err error
	switch s.Format {
	case FormatBundle:
		e, err = s.bundleEntity()
	case FormatSimpleSigning, FormatAttestation:
		e, err = s.legacyEntity()
	default:
		err = fmt.Errorf("signature format %q is not supported", s.Format)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.where(), err)
	}
	return e, nil
}

func (s Signature) where() string {
	if s.Where == "" {
		return "signature"
	}
	return s.Where
}

// bundleEntity reads s.Bundle with sigstore-go and checks that it holds
// the envelope and leaf certificate SignatureFromBundle read.
func (s Signature) bundleEntity() (verify.SignedEntity, error) {
	if !bytes.Equal(s.Signed, PAE(s.PayloadType, s.Payload)) {
		return nil, errors.New("DSSE payload differs from the signed bytes")
	}
	b := new(bundle.Bundle)
	if err := b.UnmarshalJSON(s.Bundle); err != nil {
		return nil, fmt.Errorf("sigstore bundle: %w", err)
	}
	content, err := b.SignatureContent()
	if err != nil {
		return nil, fmt.Errorf("sigstore bundle: %w", err)
	}
	env := content.EnvelopeContent()
	if env == nil || env.RawEnvelope() == nil {
		return nil, errors.New("sigstore bundle: sigstore-go found no DSSE envelope")
	}
	raw := env.RawEnvelope()
	payload, err := raw.DecodeB64Payload()
	if err != nil {
		return nil, fmt.Errorf("sigstore bundle: envelope payload: %w", err)
	}
	if len(raw.Signatures) != 1 {
		return nil, fmt.Errorf("sigstore bundle: sigstore-go read %d envelope signatures, this package 1", len(raw.Signatures))
	}
	sig, err := base64.StdEncoding.DecodeString(raw.Signatures[0].Sig)
	if err != nil {
		return nil, fmt.Errorf("sigstore bundle: envelope signature: %w", err)
	}
	if raw.PayloadType != s.PayloadType || !bytes.Equal(payload, s.Payload) || !bytes.Equal(sig, s.Sig) {
		return nil, errors.New("sigstore bundle: the envelope sigstore-go read differs from the one read here")
	}
	vc, err := b.VerificationContent()
	if err != nil {
		return nil, fmt.Errorf("sigstore bundle: %w", err)
	}
	if cert := vc.Certificate(); cert == nil || !bytes.Equal(cert.Raw, s.Certificate) {
		return nil, errors.New("sigstore bundle: the certificate sigstore-go read differs from the one read here")
	}
	return b, nil
}

// legacyEntity builds the bundle v0.1 of a keyless .sig or .att layer.
func (s Signature) legacyEntity() (verify.SignedEntity, error) {
	certs := make([]*protocommon.X509Certificate, 0, 1+len(s.Chain))
	for _, der := range append([][]byte{s.Certificate}, s.Chain...) {
		certs = append(certs, &protocommon.X509Certificate{RawBytes: der})
	}
	pb := &protobundle.Bundle{
		MediaType: BundleMediaTypeV01,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_X509CertificateChain{
				X509CertificateChain: &protocommon.X509CertificateChain{Certificates: certs},
			},
		},
	}
	switch s.Format {
	case FormatSimpleSigning:
		if !bytes.Equal(s.Payload, s.Signed) {
			return nil, errors.New("simple-signing payload differs from the signed bytes")
		}
		sum := sha256.Sum256(s.Payload)
		pb.Content = &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: sum[:]},
			Signature:     s.Sig,
		}}
	case FormatAttestation:
		if !bytes.Equal(s.Signed, PAE(s.PayloadType, s.Payload)) {
			return nil, errors.New("DSSE payload differs from the signed bytes")
		}
		pb.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload:     s.Payload,
			PayloadType: s.PayloadType,
			Signatures:  []*protodsse.Signature{{Sig: s.Sig}},
		}}
	}
	if len(s.RekorBundle) > 0 {
		rb, err := parseRekorBundle(s.RekorBundle)
		if err != nil {
			return nil, err
		}
		if err := checkRekorBody(rb.body, s.Certificate); err != nil {
			return nil, fmt.Errorf("%s annotation: %w", RekorBundleAnnotation, err)
		}
		pb.VerificationMaterial.TlogEntries = []*protorekor.TransparencyLogEntry{rb.entry()}
	}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		return nil, fmt.Errorf("%s annotation: %w", RekorBundleAnnotation, err)
	}
	return b, nil
}

// rekorBundle is a parsed dev.sigstore.cosign/bundle annotation, cosign's
// offline proof that Rekor logged an entry:
//
//	{"SignedEntryTimestamp":"<b64 signature by the log>",
//	 "Payload":{"body":"<b64 canonical entry>","integratedTime":N,
//	            "logIndex":N,"logID":"<hex sha256 of the log's key>"}}
type rekorBundle struct {
	set            []byte
	body           []byte
	integratedTime int64
	logIndex       int64
	logID          []byte
	// kind and apiVersion are the entry body's, e.g. hashedrekord 0.0.1.
	kind, apiVersion string
}

// entry is the bundle's transparency-log entry, as sigstore cosign
// converts it: the log's signed entry timestamp becomes the inclusion
// promise, whose signature sigstore-go verifies over the same fields.
func (rb *rekorBundle) entry() *protorekor.TransparencyLogEntry {
	return &protorekor.TransparencyLogEntry{
		LogIndex:          rb.logIndex,
		LogId:             &protocommon.LogId{KeyId: rb.logID},
		KindVersion:       &protorekor.KindVersion{Kind: rb.kind, Version: rb.apiVersion},
		IntegratedTime:    rb.integratedTime,
		InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: rb.set},
		CanonicalizedBody: rb.body,
	}
}

// parseRekorBundle parses a Rekor bundle annotation strictly: exactly the
// keys cosign writes, standard base64, non-negative integers, a 64-digit
// lowercase hex log ID and a body that is a JSON object naming its kind
// and apiVersion. Whether the log signed it is sigstore-go's to check.
func parseRekorBundle(raw []byte) (*rekorBundle, error) {
	what := RekorBundleAnnotation + " annotation"
	if len(raw) > maxKeylessAnnotationSize {
		return nil, fmt.Errorf("%s: %d bytes, the limit is %d", what, len(raw), maxKeylessAnnotationSize)
	}
	doc, err := parseJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	top, err := doc.fields(what, []string{"SignedEntryTimestamp", "Payload"})
	if err != nil {
		return nil, err
	}
	var rb rekorBundle
	if rb.set, err = base64Of(top[0], what+": SignedEntryTimestamp"); err != nil {
		return nil, err
	}
	p, err := top[1].fields(what+": Payload", []string{"body", "integratedTime", "logIndex", "logID"})
	if err != nil {
		return nil, err
	}
	if rb.body, err = base64Of(p[0], what+": Payload.body"); err != nil {
		return nil, err
	}
	if rb.integratedTime, err = nonNegativeInt(p[1], what+": Payload.integratedTime"); err != nil {
		return nil, err
	}
	if rb.logIndex, err = nonNegativeInt(p[2], what+": Payload.logIndex"); err != nil {
		return nil, err
	}
	logID, err := stringOf(p[3], what+": Payload.logID")
	if err != nil {
		return nil, err
	}
	if err := checkSHA256Hex(logID); err != nil {
		return nil, fmt.Errorf("%s: Payload.logID: %w", what, err)
	}
	rb.logID, _ = hex.DecodeString(logID)
	body, err := parseJSON(rb.body)
	if err != nil {
		return nil, fmt.Errorf("%s: Payload.body: %w", what, err)
	}
	if body.kind() != jsonObject {
		return nil, fmt.Errorf("%s: Payload.body: not a JSON object", what)
	}
	for _, f := range []struct {
		key string
		to  *string
	}{{"kind", &rb.kind}, {"apiVersion", &rb.apiVersion}} {
		v, err := stringOf(body.get(f.key), what+": Payload.body."+f.key)
		if err != nil {
			return nil, err
		}
		if v == "" {
			return nil, fmt.Errorf("%s: Payload.body.%s: empty", what, f.key)
		}
		*f.to = v
	}
	return &rb, nil
}

// base64Of decodes a JSON string of standard, padded base64 (what
// encoding/json writes for bytes), which must not be empty.
func base64Of(v jsonValue, what string) ([]byte, error) {
	s, err := stringOf(v, what)
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid base64: %w", what, err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s: empty", what)
	}
	return b, nil
}

// nonNegativeInt reads a JSON number that is a non-negative integer
// written in plain digits and fits an int64.
func nonNegativeInt(v jsonValue, what string) (int64, error) {
	if v.kind() != jsonNumber {
		return 0, fmt.Errorf("%s: not a JSON number", what)
	}
	for _, c := range v {
		if !isDigit(c) {
			return 0, fmt.Errorf("%s: %s is not a non-negative integer", what, v)
		}
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return n, nil
}
