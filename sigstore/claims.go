package sigstore

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Claims parses the signed document strictly and returns what it asserts.
//
// For FormatSimpleSigning it is ParsePayload(Payload): one digest, the
// docker-reference, the "optional" annotations. For FormatBundle and
// FormatAttestation the payload type must be InTotoPayloadType and the
// statement an in-toto Statement v1 (v0.1 accepted): Digests are its
// subjects' sha256 digests, Annotations each subject's annotations under its
// own digest (two subjects naming one digest with different values for a
// key is an error), Reference "", PredicateType and Predicate its
// predicate. A statement whose PredicateType is CosignPredicateType is an
// image signature; any other is an attestation, which the caller must not
// count as a signature.
//
// The claims are only read from bytes the signature covers: Payload must
// equal Signed for simple signing, and Signed must equal
// PAE(PayloadType, Payload) for DSSE. A Signature with Err returns Err.
func (s Signature) Claims() (Claims, error) {
	if s.Err != nil {
		return Claims{}, s.Err
	}
	switch s.Format {
	case FormatSimpleSigning:
		return s.simpleSigningClaims()
	case FormatBundle, FormatAttestation:
		return s.bundleClaims()
	default:
		return Claims{}, fmt.Errorf("signature format %q is not supported", s.Format)
	}
}

func (s Signature) simpleSigningClaims() (Claims, error) {
	if !bytes.Equal(s.Payload, s.Signed) {
		return Claims{}, errors.New("simple-signing payload differs from the signed bytes")
	}
	p, err := ParsePayload(s.Payload)
	if err != nil {
		return Claims{}, err
	}
	c := Claims{Digests: []v1.Hash{p.Digest}, Reference: p.Reference}
	if p.Annotations != nil {
		c.Annotations = map[v1.Hash]map[string]string{p.Digest: p.Annotations}
	}
	return c, nil
}

func (s Signature) bundleClaims() (Claims, error) {
	if s.PayloadType != InTotoPayloadType {
		return Claims{}, fmt.Errorf("DSSE payloadType %q is not %q", s.PayloadType, InTotoPayloadType)
	}
	if !bytes.Equal(s.Signed, PAE(s.PayloadType, s.Payload)) {
		return Claims{}, errors.New("DSSE payload differs from the signed bytes")
	}
	c, err := parseStatement(s.Payload)
	if err != nil {
		return Claims{}, fmt.Errorf("in-toto statement: %w", err)
	}
	return c, nil
}

// Keys of an in-toto Statement, and of a ResourceDescriptor besides digest;
// fields returns the members in this order.
var (
	statementKeys       = []string{"_type", "subject", "predicateType", "predicate"}
	subjectKeys         = []string{"digest"}
	subjectOptionalKeys = []string{"name", "uri", "content", "downloadLocation", "mediaType", "annotations"}
)

// parseStatement parses an in-toto statement strictly.
func parseStatement(b []byte) (Claims, error) {
	doc, err := parseJSON(b)
	if err != nil {
		return Claims{}, err
	}
	f, err := doc.fields("statement", statementKeys)
	if err != nil {
		return Claims{}, err
	}
	typeField, subject, predicateType, predicate := f[0], f[1], f[2], f[3]
	typ, err := stringOf(typeField, "_type")
	if err != nil {
		return Claims{}, err
	}
	if typ != inTotoStatementV1 && typ != inTotoStatementV01 {
		return Claims{}, fmt.Errorf("_type %q is not an in-toto statement (%s or %s)", typ, inTotoStatementV1, inTotoStatementV01)
	}
	pt, err := stringOf(predicateType, "predicateType")
	if err != nil {
		return Claims{}, err
	}
	if pt == "" {
		return Claims{}, errors.New("predicateType: empty")
	}
	if predicate.kind() != jsonObject {
		return Claims{}, errors.New("predicate: not a JSON object")
	}
	c, err := parseSubjects(subject)
	if err != nil {
		return Claims{}, err
	}
	c.PredicateType, c.Predicate = pt, []byte(predicate)
	return c, nil
}

func parseSubjects(list jsonValue) (Claims, error) {
	if list.kind() != jsonArray {
		return Claims{}, errors.New("subject: not a JSON array")
	}
	var c Claims
	seen := make(map[v1.Hash]bool)
	i := 0
	for item := range list.elements() {
		what := "subject[" + strconv.Itoa(i) + "]"
		i++
		d, annotations, err := parseSubject(item, what)
		if err != nil {
			return Claims{}, err
		}
		if !seen[d] {
			seen[d] = true
			c.Digests = append(c.Digests, d)
		}
		if len(annotations) == 0 {
			continue
		}
		if c.Annotations == nil {
			c.Annotations = make(map[v1.Hash]map[string]string)
		}
		if c.Annotations[d], err = mergeAnnotations(c.Annotations[d], annotations, what); err != nil {
			return Claims{}, err
		}
	}
	if i == 0 {
		return Claims{}, errors.New("subject: empty")
	}
	return c, nil
}

// parseSubject returns a subject's sha256 digest (required; other algorithms
// must be strings and are ignored) and its annotations.
func parseSubject(v jsonValue, what string) (v1.Hash, map[string]string, error) {
	f, err := v.fields(what, subjectKeys, subjectOptionalKeys...)
	if err != nil {
		return v1.Hash{}, nil, err
	}
	digest, annotationsField := f[0], f[1+slices.Index(subjectOptionalKeys, "annotations")]
	for _, k := range []string{"name", "uri", "downloadLocation", "mediaType"} {
		if m := f[1+slices.Index(subjectOptionalKeys, k)]; m != nil && m.kind() != jsonString {
			return v1.Hash{}, nil, fmt.Errorf("%s.%s: not a JSON string", what, k)
		}
	}
	hexSum, err := subjectSHA256(digest, what+".digest")
	if err != nil {
		return v1.Hash{}, nil, err
	}
	annotations, err := decodeAnnotations(annotationsField, what+".annotations")
	if err != nil {
		return v1.Hash{}, nil, err
	}
	return v1.Hash{Algorithm: "sha256", Hex: hexSum}, annotations, nil
}

// subjectSHA256 returns the sha256 member of a DigestSet, which must be 64
// lowercase hex digits; members for other algorithms must be strings and are
// otherwise ignored.
func subjectSHA256(set jsonValue, what string) (string, error) {
	if set.kind() != jsonObject {
		return "", fmt.Errorf("%s: not a JSON object", what)
	}
	for alg, v := range set.members() {
		if v.kind() != jsonString {
			return "", fmt.Errorf("%s.%s: not a JSON string", what, alg)
		}
	}
	v := set.get("sha256")
	if v == nil {
		return "", fmt.Errorf("%s: no sha256 digest", what)
	}
	hexSum := v.text()
	if err := checkSHA256Hex(hexSum); err != nil {
		return "", fmt.Errorf("%s.sha256: %w", what, err)
	}
	return hexSum, nil
}

func mergeAnnotations(into, from map[string]string, what string) (map[string]string, error) {
	for k, v := range from {
		if into == nil {
			into = make(map[string]string, len(from))
		}
		if old, ok := into[k]; ok && old != v {
			return nil, fmt.Errorf("%s.annotations: %q is %q here and %q in an earlier subject with this digest", what, k, v, old)
		}
		into[k] = v
	}
	return into, nil
}
