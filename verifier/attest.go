package verifier

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/cosign-dev/cosign/sigstore"
)

// Attestations.
//
// An attestation is an in-toto statement, signed like an image signature
// (by a key or a certificate of the policy), whose predicate type is not
// cosign's signing predicate. A rule of the policy holds when attestations
// of its predicate type that bind the digest and meet its predicate
// conditions are signed by Threshold distinct signers of the policy.

// validate checks a rule.
func (r AttestationRule) validate() error {
	if strings.TrimSpace(r.PredicateType) == "" {
		return errors.New("attestation without predicateType")
	}
	if r.PredicateType == sigstore.CosignPredicateType {
		return fmt.Errorf("attestation %s: that is cosign's signing predicate, a signature, which no attestation rule can require", r.PredicateType)
	}
	for path, want := range r.Predicate {
		if err := checkPath(path); err != nil {
			return fmt.Errorf("attestation %s: predicate path %q: %w", r.PredicateType, path, err)
		}
		if _, ok := scalar(want); !ok {
			return fmt.Errorf("attestation %s: predicate %q: value %v (%T) is not a string, number, boolean or null", r.PredicateType, path, want, want)
		}
	}
	return nil
}

func checkPath(path string) error {
	if path == "" {
		return errors.New("empty")
	}
	for seg := range strings.SplitSeq(path, ".") {
		if seg == "" {
			return errors.New("empty segment")
		}
	}
	return nil
}

// predicateHolds checks the rule's conditions on a predicate. It returns
// the first path, in sorted order, whose value is missing or differs.
func (r AttestationRule) predicateHolds(predicate []byte) (string, bool) {
	if len(r.Predicate) == 0 {
		return "", true
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(predicate))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return sortedAnyKeys(r.Predicate)[0], false
	}
	for _, path := range sortedAnyKeys(r.Predicate) {
		got, ok := lookupPath(doc, path)
		if !ok || !sameScalar(got, r.Predicate[path]) {
			return path, false
		}
	}
	return "", true
}

// lookupPath walks a dotted path: a segment names an object member, or, on
// an array, a decimal index.
func lookupPath(doc any, path string) (any, bool) {
	cur := doc
	for seg := range strings.SplitSeq(path, ".") {
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[seg]
			if !ok {
				return nil, false
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(v) || strconv.Itoa(i) != seg {
				return nil, false
			}
			cur = v[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// scalarKind tells the kinds a condition compares.
type scalarKind uint8

const (
	kindNull scalarKind = iota
	kindString
	kindBool
	kindNumber
)

// scalar classifies a condition value or a decoded JSON value.
func scalar(v any) (scalarKind, bool) {
	switch v.(type) {
	case nil:
		return kindNull, true
	case string:
		return kindString, true
	case bool:
		return kindBool, true
	case json.Number, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		return kindNumber, true
	}
	return 0, false
}

// sameScalar compares a JSON value with a condition value: strings,
// booleans and null exactly, numbers by value (1 equals 1.0); objects and
// arrays never match.
func sameScalar(got, want any) bool {
	gk, ok1 := scalar(got)
	wk, ok2 := scalar(want)
	if !ok1 || !ok2 || gk != wk {
		return false
	}
	switch gk {
	case kindNull:
		return true
	case kindString:
		return got.(string) == want.(string)
	case kindBool:
		return got.(bool) == want.(bool)
	}
	g, okg := number(got)
	w, okw := number(want)
	return okg && okw && g.Cmp(w) == 0
}

// number turns a number into an exact rational.
func number(v any) (*big.Rat, bool) {
	var s string
	switch n := v.(type) {
	case json.Number:
		s = n.String()
	case float64:
		if math.IsInf(n, 0) || math.IsNaN(n) {
			return nil, false
		}
		s = strconv.FormatFloat(n, 'g', -1, 64)
	case float32:
		s = strconv.FormatFloat(float64(n), 'g', -1, 32)
	default:
		s = fmt.Sprint(n)
	}
	r, ok := new(big.Rat).SetString(s)
	return r, ok
}

func sortedAnyKeys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}
