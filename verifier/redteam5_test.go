package verifier_test

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/verifier"
)

// Red team 5: the bounds red team 4's fixes put on the keys a keyless
// artifact carries (keyless_limits.go) cover the certificates of the
// verification material and of the RFC 3161 timestamps, but not the
// transparency-log entries: a bundle's tlogEntries are "left to
// sigstore-go". sigstore-go parses each entry's canonicalizedBody with
// rekor's types (tlog.ParseTransparencyLogEntry -> types.UnmarshalEntry)
// every time it lists the entries (bundle validation on UnmarshalJSON,
// verifyKeyless, VerifyTlogEntry, ...), before it checks that the trusted
// log signed anything, and rekor's Unmarshal verifies signatures with keys
// the body carries:
//
//   - hashedrekord 0.0.1: validate() verifies spec.signature.content with
//     spec.signature.publicKey.content over spec.data.hash, whatever the
//     key's size or exponent (sigstore's LoadRSAPKCS1v15Verifier checks
//     neither);
//   - dsse 0.0.1 with proposedContent: verifyEnvelope tries every DSSE
//     signature of the envelope against every one of the verifiers, so K
//     verifiers and J signatures cost K*J verifications, stopping only
//     when a verifier accepts none; a verifier that accepts the last
//     signature (the attacker's own key) keeps it going.
//
// Each test asserts the safe behaviour: such a bundle is refused when it
// is parsed, before anything uses a key a log entry carries.

// rt5Bundle replaces the transparency-log entries of a genuine keyless
// bundle with entries of body kind/version, each a copy of its genuine
// entry with another log index.
func rt5Bundle(t testing.TB, raw []byte, kind, version string, bodies ...[]byte) []byte {
	t.Helper()
	var pb protobundle.Bundle
	if err := protojson.Unmarshal(raw, &pb); err != nil {
		t.Fatal(err)
	}
	vm := pb.GetVerificationMaterial()
	if len(vm.GetTlogEntries()) != 1 {
		t.Fatalf("bundle has %d log entries, want 1", len(vm.GetTlogEntries()))
	}
	genuine := vm.TlogEntries[0]
	vm.TlogEntries = nil
	for i, body := range bodies {
		e := &protorekor.TransparencyLogEntry{
			LogIndex:          genuine.LogIndex + 1 + int64(i),
			LogId:             genuine.LogId,
			KindVersion:       &protorekor.KindVersion{Kind: kind, Version: version},
			IntegratedTime:    genuine.IntegratedTime,
			InclusionPromise:  genuine.InclusionPromise,
			InclusionProof:    genuine.InclusionProof,
			CanonicalizedBody: body,
		}
		vm.TlogEntries = append(vm.TlogEntries, e)
	}
	b, err := protojson.Marshal(&pb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rt5PEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// rt5DSSEBody is a dsse 0.0.1 entry body with proposed content: an
// envelope of junk signatures and, last, one made with the attacker's own
// Ed25519 key, and that key listed keys times as verifier. Each verifier
// tries every signature before it reaches the one it accepts.
func rt5DSSEBody(t testing.TB, keys, junk int) []byte {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const pt = "application/vnd.in-toto+json"
	payload := []byte(`{"_type":"https://in-toto.io/Statement/v1"}`)
	type sig struct {
		Sig string `json:"sig"`
	}
	sigs := make([]sig, 0, junk+1)
	junkSig := base64.StdEncoding.EncodeToString(make([]byte, ed25519.SignatureSize))
	for range junk {
		sigs = append(sigs, sig{junkSig})
	}
	sigs = append(sigs, sig{base64.StdEncoding.EncodeToString(ed25519.Sign(priv, sigstore.PAE(pt, payload)))})
	env, err := json.Marshal(map[string]any{"payloadType": pt, "payload": base64.StdEncoding.EncodeToString(payload), "signatures": sigs})
	if err != nil {
		t.Fatal(err)
	}
	verifiers := make([][]byte, keys)
	for i := range verifiers {
		verifiers[i] = rt5PEM(t, pub)
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": "0.0.1",
		"kind":       "dsse",
		"spec":       map[string]any{"proposedContent": map[string]any{"envelope": string(env), "verifiers": verifiers}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// rt5HugeRSAKey is a PEM RSA public key of bits bits (an odd modulus, no
// private key: a verifier only needs N and e) with exponent 2^31-1, and a
// junk "signature" below its modulus.
func rt5HugeRSAKey(t testing.TB, bits int) (pemKey, sig []byte) {
	t.Helper()
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	r := make([]byte, bits/8-1)
	if _, err := rand.Read(r); err != nil {
		t.Fatal(err)
	}
	n.Or(n, new(big.Int).SetBytes(r))
	n.SetBit(n, 0, 1)
	pemKey = rt5PEM(t, &rsa.PublicKey{N: n, E: 1<<31 - 1})
	s := make([]byte, bits/8)
	copy(s[1:], r) // below N: its top byte is 0
	return pemKey, s
}

// rt5HashedRekordBody is a hashedrekord 0.0.1 body whose public key is
// pemKey and whose signature is sig, over some SHA-256 digest.
func rt5HashedRekordBody(t testing.TB, pemKey, sig []byte) []byte {
	t.Helper()
	sum := sha256.Sum256([]byte("anything"))
	body, err := json.Marshal(map[string]any{
		"apiVersion": "0.0.1",
		"kind":       "hashedrekord",
		"spec": map[string]any{
			"data":      map[string]any{"hash": map[string]any{"algorithm": "sha256", "value": hex.EncodeToString(sum[:])}},
			"signature": map[string]any{"content": sig, "publicKey": map[string]any{"content": pemKey}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// rt5Cost logs the CPU one Evaluate of sig costs and checks it refuses.
func rt5Cost(t *testing.T, l *rt4Lab, d v1.Hash, sig sigstore.Signature, what string) {
	t.Helper()
	img := verifier.Image{Registry: rt4Reg, Repository: "app", Digest: d}
	start, wall := cpuTime(t), time.Now()
	dec := verifier.Evaluate(l.policy(), img, []sigstore.Signature{sig})
	t.Logf("%s, %d bytes: one Evaluate took %v CPU, %v wall: %s", what, len(sig.Bundle), cpuTime(t)-start, time.Since(wall), dec.Message)
	if dec.Admit {
		t.Fatalf("admitted: %s", dec.Message)
	}
}

// TestRedTeam5LogEntryDSSEVerifiersBurnCPU: a 120 KiB keyless bundle whose
// one log entry is a dsse 0.0.1 body with 300 verifiers (the attacker's
// Ed25519 key, repeated) and 300 envelope signatures costs 90,000 Ed25519
// verifications each time sigstore-go lists the entries (about 4 s of
// CPU per parse here, several parses per Evaluate); a 1 MiB bundle (what
// a referrer may be) costs minutes, a lookup of 32 of them hours.
func TestRedTeam5LogEntryDSSEVerifiersBurnCPU(t *testing.T) {
	l := newRT4Lab(t)
	d := rt4Digest("attacker image")
	raw := l.bundle(t, d, rt4Mallory)
	evil := rt5Bundle(t, raw, "dsse", "0.0.1", rt5DSSEBody(t, 300, 300))
	sig := sigstore.SignatureFromBundle(evil, "referrer 1")
	if !errors.Is(sig.Err, sigstore.ErrInvalidArtifact) {
		t.Errorf("a bundle whose log entry is a dsse body with 300 verifiers and 300 signatures parsed (err %v); "+
			"want an invalid artifact, refused before rekor's Unmarshal verifies 90,000 signatures with the body's keys", sig.Err)
	}
	rt5Cost(t, l, d, sig, "dsse log entry, 300 verifiers x 301 signatures")
}

// TestRedTeam5LogEntryHashedRekordHugeRSAKeyBurnsCPU: the public key of a
// hashedrekord log entry body is used to verify the body's signature when
// the entry is parsed (rekor's hashedrekord validate), before its log or
// its match with the bundle is checked, whatever its size or exponent: a
// 32768-bit RSA key with exponent 2^31-1 here. With junk signatures only
// the first entry is verified (the parse stops at its error: ~2 ms per
// parse here, a finding of principle, not of cost); an attacker who makes
// the signature verify (a modulus of many primes whose factors they know,
// which Go does not check) gets every entry of up to 32 verified on each
// parse. Not demonstrated: the dsse case above is far stronger.
func TestRedTeam5LogEntryHashedRekordHugeRSAKeyBurnsCPU(t *testing.T) {
	l := newRT4Lab(t)
	d := rt4Digest("attacker image")
	raw := l.bundle(t, d, rt4Mallory)
	key, junk := rt5HugeRSAKey(t, 32768)
	body := rt5HashedRekordBody(t, key, junk)
	bodies := make([][]byte, 16)
	for i := range bodies {
		bodies[i] = body
	}
	evil := rt5Bundle(t, raw, "hashedrekord", "0.0.1", bodies...)
	sig := sigstore.SignatureFromBundle(evil, "referrer 1")
	if !errors.Is(sig.Err, sigstore.ErrInvalidArtifact) {
		t.Errorf("a bundle whose 16 log entries are hashedrekord bodies with a 32768-bit RSA key of exponent 2^31-1 parsed (err %v); "+
			"want an invalid artifact, refused before rekor's Unmarshal verifies with the body's key", sig.Err)
	}
	rt5Cost(t, l, d, sig, "16 hashedrekord log entries, 32768-bit RSA key, e=2^31-1")
}
