package sigstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Claims parses the signed document strictly and returns what it asserts.
//
// For FormatSimpleSigning it is ParsePayload(Payload): one digest, the
// docker-reference, the "optional" annotations. For FormatBundle the payload
// type must be InTotoPayloadType and the statement an in-toto Statement v1
// (v0.1 accepted) with predicateType CosignPredicateType: Digests are its
// subjects' sha256 digests, Annotations the subjects' annotations (merged;
// two subjects giving one key different values is an error), Reference "".
//
// The claims are only read from bytes the signature covers: Payload must
// equal Signed for simple signing, and Signed must equal
// PAE(PayloadType, Payload) for bundles. A Signature with Err returns Err.
func (s Signature) Claims() (Claims, error) {
	if s.Err != nil {
		return Claims{}, s.Err
	}
	switch s.Format {
	case FormatSimpleSigning:
		return s.simpleSigningClaims()
	case FormatBundle:
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
	return Claims{Digests: []v1.Hash{p.Digest}, Reference: p.Reference, Annotations: p.Annotations}, nil
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

// Keys of an in-toto ResourceDescriptor besides digest.
var subjectOptionalKeys = []string{"name", "uri", "content", "downloadLocation", "mediaType", "annotations"}

// parseStatement parses a cosign signing statement strictly.
func parseStatement(b []byte) (Claims, error) {
	if err := checkJSON(b); err != nil {
		return Claims{}, err
	}
	top, err := decodeObject(b, "statement", []string{"_type", "subject", "predicateType", "predicate"})
	if err != nil {
		return Claims{}, err
	}
	typ, err := decodeString(top["_type"], "_type")
	if err != nil {
		return Claims{}, err
	}
	if typ != inTotoStatementV1 && typ != inTotoStatementV01 {
		return Claims{}, fmt.Errorf("_type %q is not an in-toto statement (%s or %s)", typ, inTotoStatementV1, inTotoStatementV01)
	}
	pt, err := decodeString(top["predicateType"], "predicateType")
	if err != nil {
		return Claims{}, err
	}
	if pt != CosignPredicateType {
		return Claims{}, fmt.Errorf("predicateType %q is not %q", pt, CosignPredicateType)
	}
	if !isKind(top["predicate"], '{') {
		return Claims{}, errors.New("predicate: not a JSON object")
	}
	return parseSubjects(top["subject"])
}

func parseSubjects(raw json.RawMessage) (Claims, error) {
	if !isKind(raw, '[') {
		return Claims{}, errors.New("subject: not a JSON array")
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return Claims{}, fmt.Errorf("subject: %w", err)
	}
	if len(list) == 0 {
		return Claims{}, errors.New("subject: empty")
	}
	var c Claims
	seen := make(map[v1.Hash]bool)
	for i, item := range list {
		what := fmt.Sprintf("subject[%d]", i)
		d, annotations, err := parseSubject(item, what)
		if err != nil {
			return Claims{}, err
		}
		if !seen[d] {
			seen[d] = true
			c.Digests = append(c.Digests, d)
		}
		if c.Annotations, err = mergeAnnotations(c.Annotations, annotations, what); err != nil {
			return Claims{}, err
		}
	}
	return c, nil
}

// parseSubject returns a subject's sha256 digest (required; other algorithms
// must be strings and are ignored) and its annotations.
func parseSubject(raw json.RawMessage, what string) (v1.Hash, map[string]string, error) {
	obj, err := decodeObject(raw, what, []string{"digest"}, subjectOptionalKeys...)
	if err != nil {
		return v1.Hash{}, nil, err
	}
	if err := checkStringMembers(obj, what, "name", "uri", "downloadLocation", "mediaType"); err != nil {
		return v1.Hash{}, nil, err
	}
	hexSum, err := subjectSHA256(obj["digest"], what+".digest")
	if err != nil {
		return v1.Hash{}, nil, err
	}
	annotations, err := decodeAnnotations(obj["annotations"], what+".annotations")
	if err != nil {
		return v1.Hash{}, nil, err
	}
	return v1.Hash{Algorithm: "sha256", Hex: hexSum}, annotations, nil
}

// subjectSHA256 returns the sha256 member of a DigestSet, which must be 64
// lowercase hex digits; members for other algorithms must be strings and are
// otherwise ignored.
func subjectSHA256(raw json.RawMessage, what string) (string, error) {
	if !isKind(raw, '{') {
		return "", fmt.Errorf("%s: not a JSON object", what)
	}
	var set map[string]json.RawMessage
	if err := json.Unmarshal(raw, &set); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	for alg, v := range set {
		if _, err := decodeString(v, what+"."+alg); err != nil {
			return "", err
		}
	}
	v, ok := set["sha256"]
	if !ok {
		return "", fmt.Errorf("%s: no sha256 digest", what)
	}
	hexSum, _ := decodeString(v, what+".sha256")
	if err := checkSHA256Hex(hexSum); err != nil {
		return "", fmt.Errorf("%s.sha256: %w", what, err)
	}
	return hexSum, nil
}

// checkStringMembers checks that the named members, when present, are strings.
func checkStringMembers(obj map[string]json.RawMessage, what string, keys ...string) error {
	for _, k := range keys {
		if v, ok := obj[k]; ok {
			if _, err := decodeString(v, what+"."+k); err != nil {
				return err
			}
		}
	}
	return nil
}

func mergeAnnotations(into, from map[string]string, what string) (map[string]string, error) {
	for k, v := range from {
		if into == nil {
			into = make(map[string]string, len(from))
		}
		if old, ok := into[k]; ok && old != v {
			return nil, fmt.Errorf("%s.annotations: %q is %q here and %q in an earlier subject", what, k, v, old)
		}
		into[k] = v
	}
	return into, nil
}
