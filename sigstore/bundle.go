package sigstore

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
// A keyless bundle carries a Fulcio certificate instead of the key hint
// ("certificate":{"rawBytes":"<b64 DER>"}, or in bundles v0.1 and v0.2
// "x509CertificateChain":{"certificates":[{"rawBytes":...},...]}) and
// the transparency-log entries and timestamps that place it in time.
//
// This package reads the DSSE envelope and the certificates, and checks
// only the shape of the rest. None of it grants trust here: a key-signed
// bundle is verified with the keys a policy names, and a keyless one is
// handed whole (Signature.Bundle) to sigstore-go by Signature.Entity, which
// checks the certificate chain, the transparency-log entries and the
// timestamps against a trusted root.
const (
	// BundleMediaType is the media type of a Sigstore bundle v0.3, also the
	// artifactType of the OCI referrer that carries it (cosign writes this
	// one for every bundle it stores in a registry).
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// BundleMediaTypeV01 and BundleMediaTypeV02 are the media types of
	// Sigstore bundles v0.1 and v0.2, accepted inside a bundle.
	BundleMediaTypeV01 = "application/vnd.dev.sigstore.bundle+json;version=0.1"
	BundleMediaTypeV02 = "application/vnd.dev.sigstore.bundle+json;version=0.2"
	// bundleMediaTypeV03Legacy is the older spelling of v0.3 that the
	// bundle specification requires clients to accept.
	bundleMediaTypeV03Legacy = "application/vnd.dev.sigstore.bundle+json;version=0.3"
	// InTotoPayloadType is the DSSE payload type of an in-toto statement.
	InTotoPayloadType = "application/vnd.in-toto+json"
	// CosignPredicateType is the predicate type of a cosign image signature
	// statement.
	CosignPredicateType = "https://sigstore.dev/cosign/sign/v1"

	inTotoStatementV1  = "https://in-toto.io/Statement/v1"
	inTotoStatementV01 = "https://in-toto.io/Statement/v0.1"

	// maxChainCertificates bounds the certificates of one chain: Fulcio's
	// are a leaf, an intermediate and a root.
	maxChainCertificates = 10
)

// bundleMediaTypes are the media types a bundle may declare.
var bundleMediaTypes = []string{BundleMediaTypeV01, BundleMediaTypeV02, bundleMediaTypeV03Legacy, BundleMediaType}

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

// SignatureFromBundle reduces a Sigstore bundle to a Signature: Sig is the
// DSSE signature, Payload the decoded statement, PayloadType its type,
// Signed = PAE(PayloadType, Payload), Bundle = raw, and for a keyless
// bundle Certificate the leaf certificate's DER and Chain the rest of an
// x509CertificateChain. It never fails: a malformed bundle gives a
// Signature with Err set (wrapping ErrInvalidArtifact), which never
// verifies.
//
// Parsing is strict: the JSON must be free of duplicate and unknown keys;
// the mediaType must be one of bundle v0.1, v0.2 or v0.3; the content must
// be a dsseEnvelope (a messageSignature bundle, a blob signature, is
// refused) holding exactly one signature, as the Sigstore bundle format
// requires. The verificationMaterial holds exactly one of publicKey
// {hint}, certificate {rawBytes} and x509CertificateChain {certificates},
// each certificate DER that parses with a key of a kind and size Fulcio
// issues, plus optionally tlogEntries (an array, left to sigstore-go) and
// timestampVerificationData (at most 4 RFC 3161 timestamps, their
// certificates bounded likewise; see keyless_limits.go). Base64 fields accept the standard and URL-safe alphabets,
// padded or not, as protobuf JSON does.
func SignatureFromBundle(raw []byte, where string) Signature {
	s := Signature{Format: FormatBundle, Bundle: raw, Where: where}
	b, err := parseBundle(raw)
	if err != nil {
		s.Err = invalidArtifact(fmt.Errorf("sigstore bundle: %w", err))
		return s
	}
	s.Payload = b.env.payload
	s.PayloadType = b.env.payloadType
	s.Sig = b.env.sig
	s.Signed = PAE(b.env.payloadType, b.env.payload)
	s.Certificate, s.Chain = b.certificate, b.chain
	return s
}

// dsseEnvelope is the decoded envelope of a bundle.
type dsseEnvelope struct {
	payload     []byte
	payloadType string
	sig         []byte
}

// parsedBundle is what a bundle holds for this package.
type parsedBundle struct {
	env *dsseEnvelope
	// certificate is the leaf DER of a keyless bundle, chain the
	// certificates after it; both nil for a publicKey bundle.
	certificate []byte
	chain       [][]byte
}

func parseBundle(raw []byte) (*parsedBundle, error) {
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
	if !slices.Contains(bundleMediaTypes, mt) {
		return nil, fmt.Errorf("mediaType %q is not a Sigstore bundle v0.1, v0.2 or v0.3", mt)
	}
	if !isKind(top["verificationMaterial"], '{') {
		return nil, errors.New("verificationMaterial: not a JSON object")
	}
	if _, ok := top["messageSignature"]; ok {
		return nil, errors.New("bundle holds a messageSignature (a blob signature), not a DSSE envelope")
	}
	var b parsedBundle
	if b.env, err = parseEnvelope(top["dsseEnvelope"]); err != nil {
		return nil, err
	}
	if b.certificate, b.chain, err = parseVerificationMaterial(top["verificationMaterial"]); err != nil {
		return nil, err
	}
	return &b, nil
}

// verificationMaterialContents are the keys of the verificationMaterial's
// content, of which a bundle holds exactly one.
var verificationMaterialContents = []string{"publicKey", "certificate", "x509CertificateChain"}

// parseVerificationMaterial checks the shape of a bundle's
// verificationMaterial and returns its certificates: the leaf and the
// rest of the chain, nil for a public key.
func parseVerificationMaterial(raw json.RawMessage) ([]byte, [][]byte, error) {
	const what = "verificationMaterial"
	obj, err := decodeObject(raw, what, nil, append(slices.Clone(verificationMaterialContents), "tlogEntries", "timestampVerificationData")...)
	if err != nil {
		return nil, nil, err
	}
	var content []string
	for _, k := range verificationMaterialContents {
		if _, ok := obj[k]; ok {
			content = append(content, k)
		}
	}
	if len(content) != 1 {
		return nil, nil, fmt.Errorf("%s: holds %d of publicKey, certificate and x509CertificateChain, want exactly one", what, len(content))
	}
	if ts, ok := obj["timestampVerificationData"]; ok {
		if err := checkTimestampData(ts, what+".timestampVerificationData"); err != nil {
			return nil, nil, err
		}
	}
	leaf, chain, err := parseVerificationContent(obj, content[0], what)
	if err != nil {
		return nil, nil, err
	}
	if tl, ok := obj["tlogEntries"]; ok {
		if err := checkTlogEntries(tl, leaf, what+".tlogEntries"); err != nil {
			return nil, nil, err
		}
	}
	return leaf, chain, nil
}

// parseVerificationContent reads the one content of a verificationMaterial.
func parseVerificationContent(obj map[string]json.RawMessage, content, what string) ([]byte, [][]byte, error) {
	switch content {
	case "publicKey":
		pk, err := decodeObject(obj["publicKey"], what+".publicKey", nil, "hint")
		if err != nil {
			return nil, nil, err
		}
		if hint, ok := pk["hint"]; ok {
			if _, err := decodeString(hint, what+".publicKey.hint"); err != nil {
				return nil, nil, err
			}
		}
		return nil, nil, nil
	case "certificate":
		cert, err := parseRawCertificate(obj["certificate"], what+".certificate")
		if err != nil {
			return nil, nil, err
		}
		return cert, nil, nil
	default:
		chain, err := parseCertificateChain(obj["x509CertificateChain"], what+".x509CertificateChain")
		if err != nil {
			return nil, nil, err
		}
		return chain[0], chain[1:], nil
	}
}

// parseCertificateChain reads an X509CertificateChain: one to
// maxChainCertificates certificates, the leaf first.
func parseCertificateChain(raw json.RawMessage, what string) ([][]byte, error) {
	obj, err := decodeObject(raw, what, []string{"certificates"})
	if err != nil {
		return nil, err
	}
	list, err := parseJSON(obj["certificates"])
	if err != nil {
		return nil, fmt.Errorf("%s.certificates: %w", what, err)
	}
	if list.kind() != jsonArray {
		return nil, fmt.Errorf("%s.certificates: not a JSON array", what)
	}
	var chain [][]byte
	for item := range list.elements() {
		if len(chain) == maxChainCertificates {
			return nil, fmt.Errorf("%s.certificates: more than %d certificates", what, maxChainCertificates)
		}
		cert, err := parseRawCertificate(json.RawMessage(item), fmt.Sprintf("%s.certificates[%d]", what, len(chain)))
		if err != nil {
			return nil, err
		}
		chain = append(chain, cert)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("%s.certificates: empty", what)
	}
	return chain, nil
}

// parseRawCertificate reads an X509Certificate {rawBytes}: base64 DER that
// parses as a certificate. Whether it is trusted is not looked at here.
func parseRawCertificate(raw json.RawMessage, what string) ([]byte, error) {
	obj, err := decodeObject(raw, what, []string{"rawBytes"})
	if err != nil {
		return nil, err
	}
	der, err := decodeBase64Field(obj["rawBytes"], what+".rawBytes")
	if err != nil {
		return nil, err
	}
	if err := checkCertificateDER(der); err != nil {
		return nil, fmt.Errorf("%s.rawBytes: %w", what, err)
	}
	return der, nil
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
		return nil, fmt.Errorf("dsseEnvelope.signatures: %d signatures, want exactly one", len(list))
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
	return keyBundle(key, payload)
}

// keyBundle signs statement with key as DSSE (signEnvelope) and returns a
// Sigstore bundle v0.3 around the envelope whose verification material is
// the key's hint (keyHint), as cosign writes a key's bundle: the bundle of
// NewBundle and NewAttestationBundle. No transparency-log entry is made.
func keyBundle(key PrivateKey, statement []byte) ([]byte, error) {
	env, err := signEnvelope(key, statement)
	if err != nil {
		return nil, err
	}
	hint, err := keyHint(key.Public())
	if err != nil {
		return nil, fmt.Errorf("sigstore bundle: %w", err)
	}
	b, err := json.Marshal(bundleDoc{
		MediaType:            BundleMediaType,
		VerificationMaterial: verificationMaterial{PublicKey: publicKeyHint{Hint: hint}},
		DSSEEnvelope:         env,
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
