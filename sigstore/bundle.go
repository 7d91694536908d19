package sigstore

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Sigstore bundles.
//
// cosign v3 signs an image by default with a Sigstore bundle v0.3 whose DSSE
// envelope wraps an in-toto statement:
//
//	{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json",
//	 "verificationMaterial":{"publicKey":{"hint":"<b64 sha256 of PKIX DER>"}},
//	 "dsseEnvelope":{"payload":"<b64 statement>",
//	                 "payloadType":"application/vnd.in-toto+json",
//	                 "signatures":[{"sig":"<b64>"}]}}
//
// The signature covers PAE(payloadType, payload), never the JSON around it.
//
// This package reads only the DSSE envelope. The verificationMaterial (key
// hint, certificates, transparency-log entries, timestamps) grants no trust:
// it is kept as data in Signature.Bundle and never interpreted, so
// transparency-log entries are NOT checked (the verifier works offline) and
// only the keys a policy names can make a bundle verify.
const (
	// BundleMediaType is the media type of a Sigstore bundle v0.3, also the
	// artifactType of the OCI referrer that carries it.
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// InTotoPayloadType is the DSSE payload type of an in-toto statement.
	InTotoPayloadType = "application/vnd.in-toto+json"
	// CosignPredicateType is the predicate type of a cosign image signature
	// statement.
	CosignPredicateType = "https://sigstore.dev/cosign/sign/v1"

	inTotoStatementV1  = "https://in-toto.io/Statement/v1"
	inTotoStatementV01 = "https://in-toto.io/Statement/v0.1"
)

// PAE is the DSSE v1 pre-authentication encoding, the exact bytes a DSSE
// signature covers:
//
//	"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
//
// with lengths in ASCII decimal bytes.
func PAE(payloadType string, payload []byte) []byte {
	out := make([]byte, 0, len(payloadType)+len(payload)+32)
	out = append(out, "DSSEv1 "...)
	out = strconv.AppendInt(out, int64(len(payloadType)), 10)
	out = append(out, ' ')
	out = append(out, payloadType...)
	out = append(out, ' ')
	out = strconv.AppendInt(out, int64(len(payload)), 10)
	out = append(out, ' ')
	return append(out, payload...)
}

// SignatureFromBundle reduces a Sigstore bundle v0.3 to a Signature: Sig is
// the DSSE signature, Payload the decoded statement, PayloadType its type,
// Signed = PAE(PayloadType, Payload), Bundle = raw. It never fails: a
// malformed bundle gives a Signature with Err set (wrapping
// ErrInvalidArtifact), which never verifies.
//
// Parsing is strict: the JSON must be free of duplicate and unknown keys; the
// mediaType must be BundleMediaType; the content must be a dsseEnvelope (a
// messageSignature bundle is refused) holding exactly one signature, as the
// Sigstore bundle format requires. Base64 fields accept the standard and
// URL-safe alphabets, padded or not, as protobuf JSON does.
func SignatureFromBundle(raw []byte, where string) Signature {
	s := Signature{Format: FormatBundle, Bundle: raw, Where: where}
	env, err := parseBundle(raw)
	if err != nil {
		s.Err = invalidArtifact(fmt.Errorf("sigstore bundle: %w", err))
		return s
	}
	s.Payload = env.payload
	s.PayloadType = env.payloadType
	s.Sig = env.sig
	s.Signed = PAE(env.payloadType, env.payload)
	return s
}

// dsseEnvelope is the decoded envelope of a bundle.
type dsseEnvelope struct {
	payload     []byte
	payloadType string
	sig         []byte
}

func parseBundle(raw []byte) (*dsseEnvelope, error) {
	if err := checkJSON(raw); err != nil {
		return nil, err
	}
	top, err := decodeObject(raw, "bundle", []string{"mediaType", "verificationMaterial"},
		"dsseEnvelope", "messageSignature")
	if err != nil {
		return nil, err
	}
	mt, err := decodeString(top["mediaType"], "mediaType")
	if err != nil {
		return nil, err
	}
	if mt != BundleMediaType {
		return nil, fmt.Errorf("mediaType %q is not %q", mt, BundleMediaType)
	}
	if !isKind(top["verificationMaterial"], '{') {
		return nil, errors.New("verificationMaterial: not a JSON object")
	}
	if _, ok := top["messageSignature"]; ok {
		return nil, errors.New("bundle holds a messageSignature (a blob signature), not a DSSE envelope")
	}
	return parseEnvelope(top["dsseEnvelope"])
}

func parseEnvelope(raw json.RawMessage) (*dsseEnvelope, error) {
	obj, err := decodeObject(raw, "dsseEnvelope", []string{"payload", "payloadType", "signatures"})
	if err != nil {
		return nil, err
	}
	var env dsseEnvelope
	if env.payloadType, err = decodeString(obj["payloadType"], "dsseEnvelope.payloadType"); err != nil {
		return nil, err
	}
	if env.payloadType == "" {
		return nil, errors.New("dsseEnvelope.payloadType: empty")
	}
	if env.payload, err = decodeBase64Field(obj["payload"], "dsseEnvelope.payload"); err != nil {
		return nil, err
	}
	if env.sig, err = parseSignatures(obj["signatures"]); err != nil {
		return nil, err
	}
	return &env, nil
}

// parseSignatures returns the one signature of the envelope. The keyid is
// an unauthenticated hint and is ignored.
func parseSignatures(raw json.RawMessage) ([]byte, error) {
	if !isKind(raw, '[') {
		return nil, errors.New("dsseEnvelope.signatures: not a JSON array")
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("dsseEnvelope.signatures: %w", err)
	}
	if len(list) != 1 {
		return nil, fmt.Errorf("dsseEnvelope.signatures: %d signatures, a Sigstore bundle holds exactly one", len(list))
	}
	obj, err := decodeObject(list[0], "dsseEnvelope.signatures[0]", []string{"sig"}, "keyid")
	if err != nil {
		return nil, err
	}
	if kid, ok := obj["keyid"]; ok {
		if _, err := decodeString(kid, "dsseEnvelope.signatures[0].keyid"); err != nil {
			return nil, err
		}
	}
	sig, err := decodeBase64Field(obj["sig"], "dsseEnvelope.signatures[0].sig")
	if err != nil {
		return nil, err
	}
	if len(sig) == 0 {
		return nil, errors.New("dsseEnvelope.signatures[0].sig: empty")
	}
	return sig, nil
}

func decodeBase64Field(raw json.RawMessage, what string) ([]byte, error) {
	s, err := decodeString(raw, what)
	if err != nil {
		return nil, err
	}
	b, err := decodeBase64(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b, nil
}

// decodeBase64 decodes standard or URL-safe base64, padded or not, the way
// protobuf JSON reads bytes fields; non-canonical trailing bits are refused.
func decodeBase64(s string) ([]byte, error) {
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	b, err := enc.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("invalid base64: %w", err)
	}
	return b, nil
}

// The JSON documents NewBundle writes, in cosign's field order.
type bundleDoc struct {
	MediaType            string               `json:"mediaType"`
	VerificationMaterial verificationMaterial `json:"verificationMaterial"`
	DSSEEnvelope         envelopeDoc          `json:"dsseEnvelope"`
}

type verificationMaterial struct {
	PublicKey publicKeyHint `json:"publicKey"`
}

type publicKeyHint struct {
	Hint string `json:"hint"`
}

type envelopeDoc struct {
	Payload     string         `json:"payload"`
	PayloadType string         `json:"payloadType"`
	Signatures  []signatureDoc `json:"signatures"`
}

type signatureDoc struct {
	Sig string `json:"sig"`
}

type statementDoc struct {
	Type          string       `json:"_type"`
	Subject       []subjectDoc `json:"subject"`
	PredicateType string       `json:"predicateType"`
	Predicate     struct{}     `json:"predicate"`
}

type subjectDoc struct {
	Digest      map[string]string `json:"digest"`
	Annotations map[string]string `json:"annotations"`
}

// NewBundle signs digest with key the way cosign v3 does by default and
// returns the Sigstore bundle v0.3 JSON. The statement is
//
//	{"_type":"https://in-toto.io/Statement/v1",
//	 "subject":[{"digest":{"sha256":"<hex>"},"annotations":{...}}],
//	 "predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}
//
// with the annotations (cosign's -a) in the subject, as cosign puts them
// ({} when there are none). The envelope's one signature covers
// PAE(InTotoPayloadType, statement); verificationMaterial.publicKey.hint is
// the base64 SHA-256 of the key's PKIX DER, cosign's hint. No
// transparency-log entry is made.
func NewBundle(key PrivateKey, digest v1.Hash, annotations map[string]string) ([]byte, error) {
	if key == nil {
		return nil, errors.New("sigstore bundle: no signing key")
	}
	if err := checkDigest(digest); err != nil {
		return nil, fmt.Errorf("sigstore bundle: %w", err)
	}
	if annotations == nil {
		annotations = map[string]string{}
	}
	payload, err := json.Marshal(statementDoc{
		Type:          inTotoStatementV1,
		Subject:       []subjectDoc{{Digest: map[string]string{"sha256": digest.Hex}, Annotations: annotations}},
		PredicateType: CosignPredicateType,
	})
	if err != nil {
		return nil, fmt.Errorf("sigstore bundle: statement: %w", err)
	}
	sig, err := key.Sign(PAE(InTotoPayloadType, payload))
	if err != nil {
		return nil, fmt.Errorf("sigstore bundle: signing: %w", err)
	}
	hint, err := keyHint(key.Public())
	if err != nil {
		return nil, fmt.Errorf("sigstore bundle: %w", err)
	}
	b, err := json.Marshal(bundleDoc{
		MediaType:            BundleMediaType,
		VerificationMaterial: verificationMaterial{PublicKey: publicKeyHint{Hint: hint}},
		DSSEEnvelope: envelopeDoc{
			Payload:     base64.StdEncoding.EncodeToString(payload),
			PayloadType: InTotoPayloadType,
			Signatures:  []signatureDoc{{Sig: base64.StdEncoding.EncodeToString(sig)}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("sigstore bundle: %w", err)
	}
	return b, nil
}

// keyHint is the base64 SHA-256 of the key's PKIX DER, taken from its ID.
func keyHint(pub PublicKey) (string, error) {
	hexSum, ok := strings.CutPrefix(pub.ID(), "sha256:")
	if !ok {
		return "", fmt.Errorf("key ID %q is not sha256:<hex>", pub.ID())
	}
	sum, err := hex.DecodeString(hexSum)
	if err != nil {
		return "", fmt.Errorf("key ID %q: %w", pub.ID(), err)
	}
	return base64.StdEncoding.EncodeToString(sum), nil
}

// invalidArtifact marks err as a malformed signature artifact.
func invalidArtifact(err error) error { return fmt.Errorf("%w: %w", ErrInvalidArtifact, err) }
