package sigstore_test

import (
	"bytes"
	"encoding/pem"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosign-dev/cosign/sigstore"
)

// addInteropSeeds adds every file of dir in the vectors as a seed.
func addInteropSeeds(f *testing.F, dir string, keep func(name string, b []byte) bool) {
	f.Helper()
	entries, err := os.ReadDir(filepath.Join(interopDir, dir))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		b := interopFile(f, filepath.Join(dir, e.Name()))
		if keep(e.Name(), b) {
			f.Add(b)
		}
	}
}

// FuzzParsePayload: never panics; whatever parses has a strict sha256
// digest and the cosign type, and re-encodes to a payload that parses to
// the same values.
func FuzzParsePayload(f *testing.F) {
	addInteropSeeds(f, "blobs", func(_ string, b []byte) bool { return bytes.HasPrefix(b, []byte(`{"critical"`)) })
	f.Add([]byte(payloadDoc(okIdentity, okImage, okType, `{"a":1,"b":{"c":[true,null]}}`)))
	f.Add([]byte(payloadDoc(okIdentity, okImage, okType, `{"a":"x","a":"y"}`)))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := sigstore.ParsePayload(b)
		if err != nil {
			return
		}
		if p.Type != sigstore.SimpleSigningType || p.Digest.Algorithm != "sha256" || len(p.Digest.Hex) != 64 || strings.ToLower(p.Digest.Hex) != p.Digest.Hex {
			t.Fatalf("accepted %+v", p)
		}
		if p.Reference == "" {
			return // NewPayload refuses an empty reference
		}
		again, err := sigstore.NewPayload(p.Reference, p.Digest, p.Annotations)
		if err != nil {
			t.Fatal(err)
		}
		q, err := sigstore.ParsePayload(again)
		if err != nil {
			t.Fatalf("re-encoded payload does not parse: %v\n%s", err, again)
		}
		if q.Reference != p.Reference || q.Digest != p.Digest || (len(p.Annotations) > 0 && !maps.Equal(q.Annotations, p.Annotations)) {
			t.Fatalf("round trip %+v -> %+v", p, q)
		}
	})
}

// FuzzSignatureFromBundle: never panics; an accepted bundle binds Signed to
// PAE(PayloadType, Payload); a rejected one wraps ErrInvalidArtifact and
// carries nothing to verify; Claims never panics and only returns strict
// sha256 digests.
func FuzzSignatureFromBundle(f *testing.F) {
	addInteropSeeds(f, "blobs", func(_ string, b []byte) bool { return bytes.Contains(b, []byte("dsseEnvelope")) })
	key := newECDSAKey(f)
	for _, ann := range []map[string]string{nil, {"env": "prod"}} {
		raw, err := sigstore.NewBundle(key, mustHash(f, interopAppDigest), ann)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		s := sigstore.SignatureFromBundle(raw, "fuzz")
		if s.Format != sigstore.FormatBundle || !bytes.Equal(s.Bundle, raw) {
			t.Fatalf("Signature = %+v", s)
		}
		if s.Err != nil {
			if !errors.Is(s.Err, sigstore.ErrInvalidArtifact) || s.Signed != nil || s.Sig != nil {
				t.Fatalf("rejected bundle: %v, %+v", s.Err, s)
			}
			return
		}
		if !bytes.Equal(s.Signed, sigstore.PAE(s.PayloadType, s.Payload)) || len(s.Sig) == 0 {
			t.Fatal("Signed is not PAE(PayloadType, Payload)")
		}
		_ = key.Public().Verify(s.Signed, s.Sig)
		c, err := s.Claims()
		if err != nil {
			return
		}
		if len(c.Digests) == 0 || c.Reference != "" {
			t.Fatalf("Claims = %+v", c)
		}
		for _, d := range c.Digests {
			if d.Algorithm != "sha256" || len(d.Hex) != 64 || strings.ToLower(d.Hex) != d.Hex {
				t.Fatalf("digest %v", d)
			}
		}
	})
}

// fuzzPEM passes PEM input as is and wraps anything else as a PEM body of
// the given type, so the fuzzer reaches the DER parsers quickly.
func fuzzPEM(typ string, b []byte) []byte {
	if bytes.HasPrefix(b, []byte("-----BEGIN")) {
		return b
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})
}

// FuzzParsePublicKey: never panics; an accepted key re-reads from its own
// PEM with the same ID, and refuses garbage signatures without panicking.
func FuzzParsePublicKey(f *testing.F) {
	addInteropSeeds(f, "keys", func(name string, _ []byte) bool { return strings.HasSuffix(name, ".pub") })
	for _, name := range []string{"ecdsa.pub", "ed25519.pub"} {
		block, _ := pem.Decode(interopFile(f, "keys/"+name))
		f.Add(block.Bytes)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := sigstore.ParsePublicKey(fuzzPEM("PUBLIC KEY", b))
		if err != nil {
			return
		}
		again, err := sigstore.ParsePublicKey(k.PEM())
		if err != nil || again.ID() != k.ID() || again.Algorithm() != k.Algorithm() {
			t.Fatalf("re-read %v: %v", k.Algorithm(), err)
		}
		for _, sig := range [][]byte{nil, b, make([]byte, 64), bytes.Repeat([]byte{0xff}, 256)} {
			if k.Verify(b, sig) == nil {
				t.Fatalf("garbage signature %x verified", sig)
			}
		}
	})
}

var errFuzzNoPassword = errors.New("fuzz: no password")

// FuzzParsePrivateKey: never panics; an accepted key signs what its public
// key verifies. Encrypted envelopes are parsed and validated up to the
// password prompt, which fails, so the fuzzer spends no time in scrypt.
func FuzzParsePrivateKey(f *testing.F) {
	types := []string{"PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED SIGSTORE PRIVATE KEY"}
	for _, name := range []string{"ecdsa.key", "ed25519.key", "ed25519-plain.pem"} {
		raw := interopFile(f, "keys/"+name)
		f.Add(uint8(0), raw)
		block, _ := pem.Decode(raw)
		for i, typ := range types {
			if typ == block.Type {
				f.Add(uint8(i), block.Bytes)
			}
		}
	}
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		k, err := sigstore.ParsePrivateKey(fuzzPEM(types[int(kind)%len(types)], b), func() ([]byte, error) {
			return nil, errFuzzNoPassword
		})
		if err != nil {
			return
		}
		sig, err := k.Sign(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Public().Verify(b, sig); err != nil {
			t.Fatalf("own signature: %v", err)
		}
	})
}
