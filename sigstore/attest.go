package sigstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
)

// Attestations, as sigstore cosign's "attest" writes them.
//
// An attestation is an in-toto statement about an image digest,
//
//	{"_type":"https://in-toto.io/Statement/v1",
//	 "subject":[{"name":"<registry/repository>","digest":{"sha256":"<hex>"}}],
//	 "predicateType":"<URI>","predicate":{...}}
//
// signed as a DSSE envelope (the signature covers PAE(InTotoPayloadType,
// statement)). It is stored in one of two ways:
//
//   - legacy: one layer of the "sha256-<hex>.att" manifest, media type
//     AttestationLayerMediaType, whose blob is the envelope
//     {"payload":"<b64>","payloadType":"application/vnd.in-toto+json",
//     "signatures":[{"sig":"<b64>"}]} and whose annotations are
//     predicateType=<URI> and an empty dev.cosignproject.cosign/signature
//     (the signature is inside the blob);
//   - bundle: a Sigstore bundle v0.3 around the envelope, stored as an OCI
//     1.1 referrer of the image whose manifest annotations name the
//     predicate type.
//
// cosign v3.1.2 writes the statement with _type Statement/v0.1; this
// package writes v1, the current in-toto version. Readers, cosign's
// included, accept both.
const (
	// AttestationLayerMediaType is the media type of a layer of the .att
	// manifest: its blob is a DSSE envelope.
	AttestationLayerMediaType = "application/vnd.dsse.envelope.v1+json"
	// PredicateTypeAnnotation is the .att layer annotation naming the
	// statement's predicate type, as cosign writes it.
	PredicateTypeAnnotation = "predicateType"
)

// AttestationTag is the tag cosign's legacy format stores the attestations
// of digest d under: "sha256-<hex>.att".
func AttestationTag(d v1.Hash) string {
	return d.Algorithm + "-" + d.Hex + ".att"
}

// Predicate type URIs of cosign's short names.
const (
	PredicateCustom    = "https://cosign.sigstore.dev/attestation/v1"
	PredicateVuln      = "https://cosign.sigstore.dev/attestation/vuln/v1"
	PredicateSLSA02    = "https://slsa.dev/provenance/v0.2"
	PredicateSLSA1     = "https://slsa.dev/provenance/v1"
	PredicateSPDX      = "https://spdx.dev/Document"
	PredicateCycloneDX = "https://cyclonedx.org/bom"
	PredicateLink      = "https://in-toto.io/Link/v1"
	PredicateOpenVEX   = "https://openvex.dev/ns"
)

// predicateTypeNames maps cosign's --type short names to predicate type
// URIs, as cosign v3.1.2's options.PredicateTypeMap does.
var predicateTypeNames = map[string]string{
	"custom":           PredicateCustom,
	"slsaprovenance":   PredicateSLSA02,
	"slsaprovenance02": PredicateSLSA02,
	"slsaprovenance1":  PredicateSLSA1,
	"spdx":             PredicateSPDX,
	"spdxjson":         PredicateSPDX,
	"cyclonedx":        PredicateCycloneDX,
	"link":             PredicateLink,
	"vuln":             PredicateVuln,
	"openvex":          PredicateOpenVEX,
}

// PredicateTypeNames lists the short names ParsePredicateType knows, sorted.
func PredicateTypeNames() []string {
	names := make([]string, 0, len(predicateTypeNames))
	for n := range predicateTypeNames {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ParsePredicateType turns cosign's --type value into a predicate type URI:
// a short name (custom, slsaprovenance, slsaprovenance1, spdxjson,
// cyclonedx, vuln, ...) or an absolute URI, taken as it is.
func ParsePredicateType(t string) (string, error) {
	if uri, ok := predicateTypeNames[t]; ok {
		return uri, nil
	}
	u, err := url.Parse(t)
	if err != nil || u.Scheme == "" || (u.Host == "" && u.Opaque == "") ||
		strings.ContainsFunc(t, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", fmt.Errorf("predicate type %q is neither an absolute URI nor one of %s", t, strings.Join(PredicateTypeNames(), ", "))
	}
	return t, nil
}

// AttestationPredicate returns the predicate type URI and the predicate
// that "cosign attest --type typ --predicate FILE" puts in the statement,
// given FILE's bytes. The file must hold one JSON object, at most 1 MiB,
// free of duplicate keys. For the short name "custom", cosign wraps the
// file as {"Data":"<the file's text>","Timestamp":"<now, RFC 3339 UTC>"}
// and so does this; for every other type the predicate is the file's
// object itself.
func AttestationPredicate(typ string, file []byte, now time.Time) (predicateType string, predicate []byte, err error) {
	predicateType, err = ParsePredicateType(typ)
	if err != nil {
		return "", nil, err
	}
	if len(file) > MaxAttestationSize {
		return "", nil, fmt.Errorf("predicate is %d bytes, the limit is %d", len(file), MaxAttestationSize)
	}
	if err := checkPredicate(file); err != nil {
		return "", nil, fmt.Errorf("predicate: %w", err)
	}
	if typ != "custom" {
		return predicateType, file, nil
	}
	wrapped, err := marshalNoEscape(struct {
		Data      string `json:"Data"`
		Timestamp string `json:"Timestamp"`
	}{string(file), now.UTC().Format(time.RFC3339)})
	if err != nil {
		return "", nil, fmt.Errorf("predicate: %w", err)
	}
	return predicateType, wrapped, nil
}

// checkPredicate checks that b is one strict JSON object.
func checkPredicate(b []byte) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("empty, want a JSON object")
	}
	if err := checkJSON(b); err != nil {
		return err
	}
	doc, err := parseJSON(b)
	if err != nil {
		return err
	}
	if doc.kind() != jsonObject {
		return errors.New("not a JSON object")
	}
	return nil
}

// statementV1 and subjectV1 are the statement NewStatement writes, in
// in-toto's field order.
type statementV1 struct {
	Type          string          `json:"_type"`
	Subject       []subjectV1     `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

type subjectV1 struct {
	Name        string            `json:"name"`
	Digest      map[string]string `json:"digest"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// NewStatement returns the in-toto Statement v1 that binds predicate (a
// JSON object) of predicateType to the image digest in repository
// ("registry/repository", as cosign names the subject). annotations, if
// any, go in the subject, as NewBundle puts them. The statement is checked
// with the reader's rules, so that what is signed can be verified.
func NewStatement(repository string, digest v1.Hash, predicateType string, predicate []byte, annotations map[string]string) ([]byte, error) {
	if err := checkDigest(digest); err != nil {
		return nil, fmt.Errorf("in-toto statement: %w", err)
	}
	if repository == "" || !utf8.ValidString(repository) {
		return nil, errors.New("in-toto statement: empty or invalid subject name")
	}
	if uri, err := ParsePredicateType(predicateType); err != nil {
		return nil, fmt.Errorf("in-toto statement: %w", err)
	} else if uri != predicateType {
		return nil, fmt.Errorf("in-toto statement: predicate type %q is a short name, want its URI %s", predicateType, uri)
	}
	if err := checkPredicate(predicate); err != nil {
		return nil, fmt.Errorf("in-toto statement: predicate: %w", err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, predicate); err != nil {
		return nil, fmt.Errorf("in-toto statement: predicate: %w", err)
	}
	b, err := marshalNoEscape(statementV1{
		Type:          inTotoStatementV1,
		Subject:       []subjectV1{{Name: repository, Digest: map[string]string{"sha256": digest.Hex}, Annotations: annotations}},
		PredicateType: predicateType,
		Predicate:     compact.Bytes(),
	})
	if err != nil {
		return nil, fmt.Errorf("in-toto statement: %w", err)
	}
	if _, err := checkStatement(b, digest); err != nil {
		return nil, err
	}
	return b, nil
}

// marshalNoEscape is json.Marshal without HTML escaping, so that a
// predicate's "<", ">" and "&" stay as they were written.
func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// checkStatement parses an attestation statement as a verifier will and
// checks that it binds digest; it returns its predicate type.
func checkStatement(statement []byte, digest v1.Hash) (string, error) {
	c, err := parseStatement(statement)
	if err != nil {
		return "", fmt.Errorf("in-toto statement: %w", err)
	}
	if c.PredicateType == "" {
		return "", errors.New("in-toto statement: no predicateType")
	}
	if c.PredicateType == CosignPredicateType {
		return "", fmt.Errorf("in-toto statement: predicateType %s is an image signature, not an attestation", CosignPredicateType)
	}
	if !slices.Contains(c.Digests, digest) {
		return "", fmt.Errorf("in-toto statement: its subjects do not name %s", digest)
	}
	return c.PredicateType, nil
}

// NewAttestationEnvelope signs statement with key as DSSE and returns the
// envelope as cosign v3 stores it in a .att layer:
//
//	{"payload":"<b64 statement>","payloadType":"application/vnd.in-toto+json",
//	 "signatures":[{"sig":"<b64>"}]}
//
// The signature covers PAE(InTotoPayloadType, statement).
func NewAttestationEnvelope(key PrivateKey, statement []byte) ([]byte, error) {
	env, err := signEnvelope(key, statement)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("DSSE envelope: %w", err)
	}
	return b, nil
}

// NewAttestationBundle signs statement with key as DSSE and returns a
// Sigstore bundle v0.3 around the envelope, with the key hint NewBundle
// writes. No transparency-log entry is made.
func NewAttestationBundle(key PrivateKey, statement []byte) ([]byte, error) {
	return keyBundle(key, statement)
}

func signEnvelope(key PrivateKey, statement []byte) (envelopeDoc, error) {
	if key == nil {
		return envelopeDoc{}, errors.New("DSSE envelope: no signing key")
	}
	if len(statement) == 0 {
		return envelopeDoc{}, errors.New("DSSE envelope: empty statement")
	}
	sig, err := key.Sign(PAE(InTotoPayloadType, statement))
	if err != nil {
		return envelopeDoc{}, fmt.Errorf("DSSE envelope: signing: %w", err)
	}
	return envelopeDoc{
		Payload:     base64.StdEncoding.EncodeToString(statement),
		PayloadType: InTotoPayloadType,
		Signatures:  []signatureDoc{{Sig: base64.StdEncoding.EncodeToString(sig)}},
	}, nil
}

// checkEnvelope parses a DSSE envelope strictly and checks that it holds an
// in-toto attestation of digest; it returns the predicate type.
func checkEnvelope(raw []byte, digest v1.Hash) (string, error) {
	if err := checkJSON(raw); err != nil {
		return "", fmt.Errorf("DSSE envelope: %w", err)
	}
	env, err := parseEnvelope(raw)
	if err != nil {
		return "", fmt.Errorf("DSSE envelope: %w", err)
	}
	if env.payloadType != InTotoPayloadType {
		return "", fmt.Errorf("DSSE envelope: payloadType %q is not %q", env.payloadType, InTotoPayloadType)
	}
	return checkStatement(env.payload, digest)
}

// checkAttestationSize refuses an empty envelope or bundle, or one larger
// than verifiers read (MaxAttestationSize).
func checkAttestationSize(what string, n int) error {
	switch {
	case n == 0:
		return fmt.Errorf("empty %s", what)
	case n > MaxAttestationSize:
		return fmt.Errorf("the %s is %d bytes, more than the %d a verifier reads (MaxAttestationSize); "+
			"the statement is base64 in it, a third larger than the predicate", what, n, MaxAttestationSize)
	}
	return nil
}

// AppendAttestation adds a DSSE envelope (NewAttestationEnvelope) holding
// an attestation of the image d to the "sha256-<hex>.att" tag of d's
// repository, as one layer (media type AttestationLayerMediaType, the
// predicateType annotation from the statement, an empty signature
// annotation), exactly as AppendSignature adds a signature to the .sig
// tag: earlier layers are kept, an identical envelope is not added twice
// (added false), and concurrent writers do not drop each other's layers
// (read-back after a settle time, ErrNotKept after keepAttempts pushes that
// did not keep it). The envelope must parse as a verifier reads it and
// name d's digest. The image's own manifest and tags are never written.
//
// The context given wins over any remote.WithContext in opts.
func AppendAttestation(ctx context.Context, d name.Digest, envelope []byte, opts ...remote.Option) (added bool, err error) {
	h, err := parseDigest(d.DigestStr())
	if err != nil {
		return false, fmt.Errorf("attesting %s: %w", d, err)
	}
	if err := checkAttestationSize("DSSE envelope", len(envelope)); err != nil {
		return false, fmt.Errorf("attesting %s: %w", d, err)
	}
	predicateType, err := checkEnvelope(envelope, h)
	if err != nil {
		return false, fmt.Errorf("attesting %s: %w", d, err)
	}
	opts = append(slices.Clip(opts), remote.WithContext(ctx))
	tag := d.Context().Tag(AttestationTag(h))
	layer := static.NewLayer(envelope, AttestationLayerMediaType)
	layerDigest, err := layer.Digest()
	if err != nil {
		return false, err
	}
	has := func(m *v1.Manifest) bool {
		return slices.ContainsFunc(m.Layers, func(l v1.Descriptor) bool { return l.Digest == layerDigest })
	}
	annotations := map[string]string{
		SignatureAnnotation:     "",
		PredicateTypeAnnotation: predicateType,
	}
	return appendLayer(ctx, tag, layer, annotations, has, "attestations", opts)
}

// WriteAttestationBundle stores a Sigstore bundle holding an attestation
// of the image d (NewAttestationBundle, or a keyless one) as an OCI 1.1
// referrer, as WriteBundle stores a signature bundle, except that the
// manifest's dev.sigstore.bundle.predicateType annotation names the
// attestation's predicate type, as cosign writes it, and the bundle may be
// as large as an attestation (MaxAttestationSize). cosign also stamps the
// manifest with org.opencontainers.image.created; this does not, so that
// writing the same bundle twice makes the same manifest. The bundle must
// parse as a verifier reads it and its statement must name d's digest.
//
// The context given wins over any remote.WithContext in opts.
func WriteAttestationBundle(ctx context.Context, d name.Digest, subject v1.Descriptor, bundle []byte, opts ...remote.Option) error {
	h, err := subjectDigest(d, subject)
	if err != nil {
		return fmt.Errorf("attaching attestation to %s: %w", d, err)
	}
	if err := checkAttestationSize("bundle", len(bundle)); err != nil {
		return fmt.Errorf("attaching attestation to %s: %w", d, err)
	}
	sig := SignatureFromBundle(bundle, "")
	if sig.Err != nil {
		return fmt.Errorf("attaching attestation to %s: %w", d, sig.Err)
	}
	if sig.PayloadType != InTotoPayloadType {
		return fmt.Errorf("attaching attestation to %s: DSSE payloadType %q is not %q", d, sig.PayloadType, InTotoPayloadType)
	}
	predicateType, err := checkStatement(sig.Payload, h)
	if err != nil {
		return fmt.Errorf("attaching attestation to %s: %w", d, err)
	}
	return writeBundleReferrer(ctx, d, subject, bundle, predicateType, "attestation", opts)
}

// EnvelopeJSON returns the DSSE envelope of a DSSE signature (a bundle's, a
// .att layer's) as sigstore cosign prints a verified attestation:
//
//	{"payload":"<b64 statement>","payloadType":"...","signatures":[{"sig":"<b64>"}]}
func EnvelopeJSON(s Signature) ([]byte, error) {
	if s.Err != nil {
		return nil, s.Err
	}
	if (s.Format != FormatBundle && s.Format != FormatAttestation) || s.PayloadType == "" {
		return nil, fmt.Errorf("a %s signature has no DSSE envelope", s.Format)
	}
	if !bytes.Equal(s.Signed, PAE(s.PayloadType, s.Payload)) {
		return nil, errors.New("DSSE payload differs from the signed bytes")
	}
	b, err := json.Marshal(envelopeDoc{
		Payload:     base64.StdEncoding.EncodeToString(s.Payload),
		PayloadType: s.PayloadType,
		Signatures:  []signatureDoc{{Sig: base64.StdEncoding.EncodeToString(s.Sig)}},
	})
	if err != nil {
		return nil, fmt.Errorf("DSSE envelope: %w", err)
	}
	return b, nil
}
