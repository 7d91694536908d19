package sigstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// legacyCheckJSON is the check this package made before parseJSON: the
// encoding/json Token API walking the document for repeated keys. The
// tests hold parseJSON to its verdicts.
func legacyCheckJSON(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := legacyWalk(dec, 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

func legacyWalk(dec *json.Decoder, depth int) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("JSON nested deeper than %d", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch delim {
	case '{':
		seen := make(map[string]bool)
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return fmt.Errorf("invalid JSON: %w", err)
			}
			key, ok := kt.(string)
			if !ok {
				return fmt.Errorf("invalid JSON: object key %v", kt)
			}
			if seen[key] {
				return fmt.Errorf("duplicate key %q", key)
			}
			seen[key] = true
			if err := legacyWalk(dec, depth+1); err != nil {
				return err
			}
		}
	case '[':
		for dec.More() {
			if err := legacyWalk(dec, depth+1); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("invalid JSON: unexpected %q", delim)
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	return nil
}

// toAny reads a checked value through jsonValue's methods into what
// encoding/json decodes into an any with UseNumber.
func toAny(v jsonValue) any {
	switch v.kind() {
	case jsonObject:
		m := make(map[string]any)
		for k, mem := range v.members() {
			m[k] = toAny(mem)
		}
		return m
	case jsonArray:
		a := []any{}
		for it := range v.elements() {
			a = append(a, toAny(it))
		}
		return a
	case jsonString:
		return v.text()
	case jsonNumber:
		return json.Number(v)
	case jsonBool:
		return string(v) == "true"
	case jsonNull:
		return nil
	}
	panic(fmt.Sprintf("kind %d of %q", v.kind(), v))
}

// stdDecode decodes b with encoding/json as toAny presents a tree.
func stdDecode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var x any
	err := dec.Decode(&x)
	return x, err
}

// checkAgainstStd fails t unless parseJSON and legacyCheckJSON agree on
// b, and, when b is accepted, jsonValue reads what encoding/json decodes,
// and every value's text stands alone.
func checkAgainstStd(t *testing.T, b []byte) {
	t.Helper()
	v, err := parseJSON(b)
	legacyErr := legacyCheckJSON(b)
	if (err == nil) != (legacyErr == nil) {
		t.Fatalf("parseJSON: %v; Token walk: %v; input %q", err, legacyErr, b)
	}
	if err != nil {
		return
	}
	want, err := stdDecode(b)
	if err != nil {
		t.Fatalf("encoding/json refuses what parseJSON accepted: %v; input %q", err, b)
	}
	if got := toAny(v); !reflect.DeepEqual(got, want) {
		t.Fatalf("parseJSON gives %#v, encoding/json %#v; input %q", got, want, b)
	}
	checkParts(t, v)
}

// checkParts checks that the text of every member and element of v is a
// document of its own, with no whitespace around it.
func checkParts(t *testing.T, v jsonValue) {
	t.Helper()
	check := func(part jsonValue) {
		if err := checkJSON(part); err != nil || len(bytes.Trim(part, " \t\r\n")) != len(part) {
			t.Fatalf("part %q of %q does not stand alone: %v", part, v, err)
		}
		checkParts(t, part)
	}
	for _, m := range v.members() {
		check(m)
	}
	for e := range v.elements() {
		check(e)
	}
}

// jsonSeeds are documents at the edges of the grammar, valid or not.
var jsonSeeds = []string{
	``, ` `, `null`, `true`, `false`, `nul`, `truex`, `0`, `-0`, `01`, `-`, `1.`, `.5`, `1.5e`, `1e+3`, `1E-3`,
	`-12.50e+007`, `1.5.3`, `2 3`, `"a"`, `"\u00e9\n\t\"\\\/\b\f\r"`, `"\ud83d\ude00"`, `"\ud83d"`,
	`"\ude00\ud83d"`, `"\ud83dx"`, `"\ud83d\u0041"`, `"\ud83d\ud83d\ude00"`, `"\u12"`, `"\x"`, `"\'"`,
	"\"a\x01\"", "\"\x7f\u0080\"", `"abc`, `"é😀"`, "\"\xff\"", `[]`, `[1,]`, `[,1]`, `[1 2]`,
	`[[],[[]],{}]`, `{}`, `{"a":1}`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{"a":1,"a":2}`,
	`{"a":1,"\u0061":2}`, `{"\ud800":1,"\udc00":2}`, `{"a":{"b":1,"b":2}}`, `{"a":[{"b":1},{"b":1}]}`,
	`{"A":1,"a":2}`, ` {"a" : [ 1 , "x" , null ] } `, `{"a":1}}`, `{"a":1}x`, "{\"a\":1}\x00",
	`{"a":1} {}`, "\ufeff{}", `[1]]`, `{"a":"b"`, `{"":0,"":1}`,
	strings.Repeat("[", 33) + strings.Repeat("]", 33),
	strings.Repeat("[", 34) + strings.Repeat("]", 34),
	strings.Repeat("[", 33) + "1" + strings.Repeat("]", 33),
	strings.Repeat(`{"a":`, 32) + "1" + strings.Repeat("}", 32),
	strings.Repeat(`{"a":`, 33) + "1" + strings.Repeat("}", 33),
	bigObject(40, ""), bigObject(40, "k7"), bigObject(40, "k39"),
}

// bigObject is an object of n members k0..n-1, with dup added again at the
// end when it is not empty: large enough for the map index.
func bigObject(n int, dup string) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		fmt.Fprintf(&b, `"k%d":%d,`, i, i)
	}
	if dup != "" {
		fmt.Fprintf(&b, `%q:true,`, dup)
	}
	b.WriteString(`"end":null}`)
	return b.String()
}

func TestParseJSONAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range jsonSeeds {
		t.Run(fmt.Sprintf("%.40q", s), func(t *testing.T) {
			checkAgainstStd(t, []byte(s))
		})
	}
}

func TestParseJSONRejects(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "invalid JSON"},
		{"bare word", "hello", "invalid JSON"},
		{"trailing comma in object", `{"a":1,}`, "invalid JSON"},
		{"trailing comma in array", `[1,]`, "invalid JSON"},
		{"unquoted key", `{a:1}`, "invalid JSON"},
		{"missing colon", `{"a" 1}`, "invalid JSON"},
		{"leading zero", `[01]`, "invalid JSON"},
		{"bare minus", `-`, "invalid JSON"},
		{"decimal point without digits", `1.`, "invalid JSON"},
		{"exponent without digits", `1e+`, "invalid JSON"},
		{"control character in a string", "\"a\tb\"", "invalid JSON"},
		{"unknown escape", `"\x41"`, "invalid JSON"},
		{"short \\u escape", `"\u12"`, "invalid JSON"},
		{"unterminated string", `"abc`, "invalid JSON"},
		{"truncated literal", `nul`, "invalid JSON"},
		{"byte order mark", "\ufeff{}", "invalid JSON"},
		{"second value", `{} {}`, "data after the JSON value"},
		{"trailing NUL", "{}\x00", "data after the JSON value"},
		{"trailing bracket", `[1]]`, "data after the JSON value"},
		{"invalid UTF-8", "\"\xff\"", "not valid UTF-8"},
		{"UTF-8 encoded surrogate", "\"\xed\xa0\x80\"", "not valid UTF-8"},
		{"duplicate key", `{"a":1,"a":2}`, `duplicate key "a"`},
		{"duplicate key spelled with an escape", `{"a":1,"\u0061":2}`, `duplicate key "a"`},
		{"duplicate after lone surrogates become U+FFFD", `{"\ud800":1,"\udc00":2}`, "duplicate key \"\ufffd\""},
		{"duplicate key in a nested object", `{"a":{"b":1,"b":2}}`, `duplicate key "b"`},
		{"duplicate key in an array element", `[{"b":1,"b":2}]`, `duplicate key "b"`},
		{"duplicate key in a large object", bigObject(40, "k7"), `duplicate key "k7"`},
		{"duplicate empty key", `{"":0,"":1}`, `duplicate key ""`},
		{"34 nested arrays", strings.Repeat("[", 34) + strings.Repeat("]", 34), "nested deeper than 32"},
		{"scalar inside 33 containers", strings.Repeat("[", 33) + "1" + strings.Repeat("]", 33), "nested deeper than 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := parseJSON([]byte(tc.in))
			if err == nil {
				t.Fatalf("parseJSON accepted it: %#v", toAny(v))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if legacyCheckJSON([]byte(tc.in)) == nil {
				t.Error("the Token walk accepts it")
			}
		})
	}
}

func TestParseJSONDecodesStrings(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", `"abc"`, "abc"},
		{"one-letter escapes", `"\"\\\/\b\f\n\r\t"`, "\"\\/\b\f\n\r\t"},
		{"\\u escape", `"caf\u00e9"`, "café"},
		{"upper-case \\u escape", `"caf\u00E9"`, "café"},
		{"surrogate pair", `"\ud83d\ude00"`, "😀"},
		{"lone high surrogate", `"\ud83dx"`, "\ufffdx"},
		{"lone low surrogate", `"\ude00"`, "\ufffd"},
		{"high surrogate before a non-surrogate escape", `"\ud83d\u0041"`, "\ufffdA"},
		{"two high surrogates then a low one", `"\ud83d\ud83d\ude00"`, "\ufffd😀"},
		{"raw UTF-8", `"é😀"`, "é😀"},
		{"escaped NUL", `"\u0000"`, "\x00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := parseJSON([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if v.kind() != jsonString || v.text() != tc.want {
				t.Errorf("parseJSON = %#v, want string %q", toAny(v), tc.want)
			}
			var std string
			if err := json.Unmarshal([]byte(tc.in), &std); err != nil || std != tc.want {
				t.Errorf("encoding/json gives %q, %v", std, err)
			}
		})
	}
}

func TestJSONValueReadsMembersAsWritten(t *testing.T) {
	v, err := parseJSON([]byte(` {"n": -1.50e+3 , "a":[ true ,null], "s":"x\u0041", "o" : { "k" : [ ] } } `))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"n": `-1.50e+3`, "a": `[ true ,null]`, "s": `"x\u0041"`, "o": `{ "k" : [ ] }`}
	for k, text := range want {
		if got := string(v.get(k)); got != text {
			t.Errorf("%s: %q, want %q", k, got, text)
		}
	}
	if v.get("missing") != nil {
		t.Error("get returned a member that is not there")
	}
	if got := v.get("s").text(); got != "xA" {
		t.Errorf("text = %q", got)
	}
}

// jsonValue's methods never panic, even on text checkJSON refused.
func TestJSONValueOnUncheckedText(t *testing.T) {
	for _, s := range append(jsonSeeds, `{"a`, `{"a":`, `{"a" 1`, `["`, `"\`, `"\u12`, `{"a":1,`, `[1,`, `{`, `[`, `"`) {
		v := jsonValue(s)
		_ = toAnyLoose(v)
	}
}

// toAnyLoose walks v as toAny does, without insisting on a known kind.
func toAnyLoose(v jsonValue) int {
	n := len(v.text())
	for k, m := range v.members() {
		n += len(k) + toAnyLoose(m)
	}
	for e := range v.elements() {
		n += toAnyLoose(e)
	}
	return n + int(v.kind())
}

func TestFields(t *testing.T) {
	required, optional := []string{"name", "digest"}, []string{"note"}
	for _, tc := range []struct{ name, in, want, fields string }{
		{"all keys", `{"note":3,"name":"n","digest":{"a":[1]}}`, "", `"n" {"a":[1]} 3`},
		{"optional absent", `{"digest":2,"name":1}`, "", `1 2 `},
		{"missing required", `{"name":1}`, `doc: missing key "digest"`, ""},
		{"unknown key", `{"name":1,"digest":2,"size":3}`, `doc: unknown key "size"`, ""},
		{"case variant", `{"Name":1,"digest":2}`, `doc: key "Name" differs in case from "name"`, ""},
		{"first unknown in byte order", `{"zz":0,"name":1,"digest":2,"NOTE":3,"b":4}`, `doc: key "NOTE" differs in case from "note"`, ""},
		{"unknown before missing", `{"x":0}`, `doc: unknown key "x"`, ""},
		{"array", `[]`, "doc: not a JSON object", ""},
		{"null", `null`, "doc: not a JSON object", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := parseJSON([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			f, err := v.fields("doc", required, optional...)
			if tc.want != "" {
				if err == nil || err.Error() != tc.want {
					t.Errorf("fields: %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%s %s %s", f[0], f[1], f[2]); got != tc.fields || f[3] != nil {
				t.Errorf("fields = %q, want %q", got, tc.fields)
			}
		})
	}
	var absent jsonValue
	if _, err := absent.fields("doc", required); err == nil || err.Error() != "doc: missing" {
		t.Errorf("absent object: %v", err)
	}
	if _, err := jsonValue(`{}`).fields("doc", make([]string, maxFields+1)); err == nil {
		t.Error("fields read more keys than it has room for")
	}
}

// FuzzParseJSON is a differential fuzz: parseJSON accepts exactly what the
// former Token-API check accepted, and what it accepts decodes to the same
// values with encoding/json.
func FuzzParseJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"critical":{"identity":{"docker-reference":"r.example/app"},"image":{"docker-manifest-digest":"sha256:f3e4ab0914e5b4177e1859d6cc94e3090ea9153cd966aa9cce53d86a3a51725c"},"type":"cosign container image signature"},"optional":{"a":1,"b":{"c":[true,null]}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkAgainstStd(t, b)
	})
}

// BenchmarkParsePayload is the strict parse of a cosign payload with two
// annotations.
func BenchmarkParsePayload(b *testing.B) {
	h, err := parseDigest("sha256:f3e4ab0914e5b4177e1859d6cc94e3090ea9153cd966aa9cce53d86a3a51725c")
	if err != nil {
		b.Fatal(err)
	}
	payload, err := NewPayload("registry.example/team/app", h, map[string]string{"env": "prod", "team": "a"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePayload(payload); err != nil {
			b.Fatal(err)
		}
	}
}
