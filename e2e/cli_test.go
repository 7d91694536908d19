package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

// TestMain removes the binary BuildBinary built. Other test files of this
// package must not define their own TestMain.
func TestMain(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// downloadLine is one line of cosign download.
type downloadLine struct {
	Base64Signature string
	Payload         string
	PayloadType     string
	Bundle          json.RawMessage
}

// parseDownload decodes cosign download's output into lines.
func parseDownload(t *testing.T, out string) []downloadLine {
	t.Helper()
	var lines []downloadLine
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 1<<20), 1<<20)
	for sc.Scan() {
		var l downloadLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("download line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}

// writeDecoded writes the base64 s, decoded, to the shell's file name.
func writeDecoded(t *testing.T, sh *Shell, name, s string) {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("%s: not base64: %v", name, err)
	}
	if err := os.WriteFile(sh.Path(name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// verifiedDigests parses verify's stdout (a JSON array of simple-signing
// payloads) and returns the digests they name.
func verifiedDigests(t *testing.T, out string) []v1.Hash {
	t.Helper()
	var docs []json.RawMessage
	if err := json.Unmarshal([]byte(out), &docs); err != nil {
		t.Fatalf("verify stdout %q is not a JSON array: %v", out, err)
	}
	var ds []v1.Hash
	for _, d := range docs {
		p, err := sigstore.ParsePayload(d)
		if err != nil {
			t.Fatalf("verified payload %s: %v", d, err)
		}
		ds = append(ds, p.Digest)
	}
	return ds
}

func mustFail(t *testing.T, what string, stdout, stderr string, code int, want string) {
	t.Helper()
	if code != 1 {
		t.Fatalf("%s: exit %d, want 1; stderr:\n%s", what, code, stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Fatalf("%s: stderr %q does not say %q", what, stderr, want)
	}
	if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("%s: error is not one line: %q", what, stderr)
	}
	if stdout != "" {
		t.Errorf("%s: stdout %q on failure", what, stdout)
	}
}

// TestSeedREADME runs every command line of the seed README, verbatim, with
// gcr.io/dlorenc-vmtest2/foo pointed at a real local registry. The steps
// build on each other, so they run in order as subtests.
func TestSeedREADME(t *testing.T) {
	Require(t, "docker-registry", "openssl", "bash")
	reg := StartRegistry(t)
	sh := NewShell(t)
	img := reg + "/dlorenc-vmtest2/foo"
	digest := PushRandomImage(t, img)
	Tag(t, img, "v1")
	const otherPassword = "correct horse battery staple"

	t.Run("generate-key-pair writes plain PKCS#8 with an empty password", func(t *testing.T) {
		sh.Set("COSIGN_PASSWORD", "")
		sh.MustScript(t, "cosign generate-key-pair")
		key, err := os.ReadFile(sh.Path("cosign.key"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(key), "-----BEGIN PRIVATE KEY-----\n") {
			t.Errorf("cosign.key starts %q, want PKCS#8 PEM", key[:28])
		}
		if fi, err := os.Stat(sh.Path("cosign.key")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("cosign.key mode %v (%v), want 0600", fi.Mode().Perm(), err)
		}
		// openssl reads the key as Ed25519 and derives the same public key.
		derived := sh.MustScript(t, "openssl pkey -in cosign.key -pubout")
		pub, err := os.ReadFile(sh.Path("cosign.pub"))
		if err != nil {
			t.Fatal(err)
		}
		if derived != string(pub) {
			t.Errorf("openssl derives public key\n%s\ncosign wrote\n%s", derived, pub)
		}
		if !strings.Contains(sh.MustScript(t, "openssl pkey -in cosign.key -noout -text"), "ED25519 Private-Key") {
			t.Error("openssl does not see an Ed25519 key")
		}
		_, stderr, code := sh.Script(t, "cosign generate-key-pair")
		mustFail(t, "second generate-key-pair", "", stderr, code, "cosign.key already exists")
		sh.MustScript(t, "mv cosign.key private-key.pem && mv cosign.pub public-key.pem")
	})

	t.Run("generate-key-pair encrypts with a password", func(t *testing.T) {
		sh.Set("COSIGN_PASSWORD", otherPassword)
		sh.MustScript(t, "cosign generate-key-pair --output-key-prefix other")
		key, err := os.ReadFile(sh.Path("other.key"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(key), "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n") {
			t.Errorf("other.key starts %q, want cosign's encrypted format", key[:46])
		}
		sh.MustScript(t, "mv other.key other-private-key.pem && mv other.pub other-public-key.pem")
	})

	t.Run("two keys sign one image; signing again adds nothing", func(t *testing.T) {
		sh.MustScript(t, "cosign sign -key private-key.pem "+img)
		if n := SignatureLayers(t, img, digest); n != 1 {
			t.Fatalf("%d signature layers after the first sign, want 1", n)
		}
		_, stderr, _ := sh.Script(t, "cosign sign -key private-key.pem "+img)
		if !strings.Contains(stderr, "nothing pushed") {
			t.Errorf("signing twice with one key: stderr %q, want it to say nothing was pushed", stderr)
		}
		sh.MustScript(t, "cosign sign -key other-private-key.pem "+img)
		if n := SignatureLayers(t, img, digest); n != 2 {
			t.Fatalf("%d signature layers after two keys signed, want 2", n)
		}
	})

	t.Run("sign by tag and by digest signs the digest", func(t *testing.T) {
		sh.MustScript(t, "cosign sign -key other-private-key.pem "+img+":v1")
		sh.MustScript(t, "cosign sign -key other-private-key.pem "+img+"@"+digest.String())
		if n := SignatureLayers(t, img, digest); n != 2 {
			t.Errorf("%d signature layers, want still 2: tag and digest name the same signed digest", n)
		}
	})

	t.Run("signing never changes the image", func(t *testing.T) {
		for _, ref := range []string{img, img + ":v1"} {
			if got := Digest(t, ref); got != digest {
				t.Errorf("%s is %s after signing, want %s", ref, got, digest)
			}
		}
	})

	t.Run("each key verifies", func(t *testing.T) {
		for _, pub := range []string{"public-key.pem", "other-public-key.pem"} {
			out := sh.MustScript(t, "cosign verify -key "+pub+" "+img)
			if ds := verifiedDigests(t, out); len(ds) != 1 || ds[0] != digest {
				t.Errorf("verify -key %s: verified %v, want [%s]", pub, ds, digest)
			}
			out = sh.MustScript(t, "cosign verify -key "+pub+" "+img+"@"+digest.String())
			if ds := verifiedDigests(t, out); len(ds) != 1 {
				t.Errorf("verify by digest -key %s: verified %v", pub, ds)
			}
		}
	})

	var noUploadSig string
	t.Run("sign --no-upload prints the signature and writes nothing", func(t *testing.T) {
		sh.MustScript(t, "openssl genpkey -algorithm ed25519 -out key.pem && openssl pkey -in key.pem -pubout -out key.pub")
		out := sh.MustScript(t, "cosign sign -key key.pem "+img+" --no-upload")
		noUploadSig = strings.TrimSpace(out)
		if sig, err := base64.StdEncoding.DecodeString(noUploadSig); err != nil || len(sig) != 64 {
			t.Fatalf("--no-upload printed %q, want a base64 Ed25519 signature (%v)", out, err)
		}
		if n := SignatureLayers(t, img, digest); n != 2 {
			t.Errorf("%d signature layers after --no-upload, want still 2", n)
		}
		stdout, stderr, code := sh.Script(t, "cosign verify -key key.pub "+img)
		mustFail(t, "verify with the unused key", stdout, stderr, code, "none of 2 signatures was made by this key")
	})

	t.Run("generate prints the same payload every time", func(t *testing.T) {
		a := sh.MustScript(t, "cosign generate "+img)
		b := sh.MustScript(t, "cosign generate "+img+":v1")
		if a != b || strings.HasSuffix(a, "\n") {
			t.Errorf("generate printed %q then %q; want identical bytes, no trailing newline", a, b)
		}
		p, err := sigstore.ParsePayload([]byte(a))
		if err != nil || p.Digest != digest {
			t.Fatalf("generate printed %q (%v), want a payload for %s", a, err, digest)
		}
	})

	// OpenSSL 3.0 cannot sign Ed25519 from a pipe ("unable to determine file
	// size for oneshot operation"): the Ed25519 payload goes through a file,
	// the ECDSA one through the whole pipe.
	t.Run("generate | openssl | upload -signature --", func(t *testing.T) {
		sh.MustScript(t, "cosign generate "+img+" > payload.json && "+
			"openssl pkeyutl -sign -inkey key.pem -rawin -in payload.json | cosign upload -signature -- "+img)
		if n := SignatureLayers(t, img, digest); n != 3 {
			t.Fatalf("%d signature layers after the openssl Ed25519 upload, want 3", n)
		}
		out := sh.MustScript(t, "cosign verify -key key.pub "+img)
		if ds := verifiedDigests(t, out); len(ds) != 1 || ds[0] != digest {
			t.Errorf("verify with openssl's Ed25519 key: %v", ds)
		}
		// openssl signed exactly the bytes cosign signs: same Ed25519 signature.
		found := false
		for _, l := range parseDownload(t, sh.MustScript(t, "cosign download "+img)) {
			found = found || l.Base64Signature == noUploadSig
		}
		if !found {
			t.Error("openssl's signature over generate's payload differs from cosign sign --no-upload's")
		}

		sh.MustScript(t, "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.pem && openssl pkey -in ec.pem -pubout -out ec.pub")
		sh.MustScript(t, "cosign generate "+img+" | openssl dgst -sha256 -sign ec.pem | cosign upload -signature -- "+img)
		if n := SignatureLayers(t, img, digest); n != 4 {
			t.Fatalf("%d signature layers after the openssl ECDSA upload, want 4", n)
		}
		sh.MustScript(t, "cosign verify -key ec.pub "+img)
	})

	t.Run("upload -signature FILE", func(t *testing.T) {
		bar := reg + "/dlorenc-vmtest2/bar"
		barDigest := PushRandomImage(t, bar)
		sh.MustScript(t, "cosign sign -key key.pem "+bar+" --no-upload > sig")
		sh.MustScript(t, "cosign upload -signature sig "+bar)
		if n := SignatureLayers(t, bar, barDigest); n != 1 {
			t.Fatalf("%d signature layers after upload, want 1", n)
		}
		sh.MustScript(t, "cosign verify -key key.pub "+bar)
	})

	t.Run("download | openssl verifies every signature", func(t *testing.T) {
		lines := parseDownload(t, sh.MustScript(t, "cosign download "+img))
		if len(lines) != 4 {
			t.Fatalf("download printed %d lines, want 4", len(lines))
		}
		for i, l := range lines {
			writeDecoded(t, sh, "payload", l.Payload)
			writeDecoded(t, sh, "sig.raw", l.Base64Signature)
			var ok []string
			for _, pub := range []string{"public-key.pem", "other-public-key.pem", "key.pub"} {
				if _, _, code := sh.Script(t, "openssl pkeyutl -verify -pubin -inkey "+pub+" -rawin -in payload -sigfile sig.raw"); code == 0 {
					ok = append(ok, pub)
				}
			}
			if _, _, code := sh.Script(t, "openssl dgst -sha256 -verify ec.pub -signature sig.raw payload"); code == 0 {
				ok = append(ok, "ec.pub")
			}
			if len(ok) != 1 {
				t.Errorf("line %d verifies with %v, want exactly one key", i+1, ok)
			}
		}
		// The same with a shell pipe only (no jq needed).
		sh.MustScript(t, "cosign download "+img+` | sed -n 1p | sed -E 's/.*"Payload":"([^"]*)".*/\1/' | base64 -d > payload1`)
		sh.MustScript(t, "cosign download "+img+` | sed -n 1p | sed -E 's/.*"Base64Signature":"([^"]*)".*/\1/' | base64 -d > sig1`)
		sh.MustScript(t, "openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin -in payload1 -sigfile sig1 || "+
			"openssl pkeyutl -verify -pubin -inkey other-public-key.pem -rawin -in payload1 -sigfile sig1 || "+
			"openssl pkeyutl -verify -pubin -inkey key.pub -rawin -in payload1 -sigfile sig1")
	})

	t.Run("cosine verify -signature verifies a downloaded signature", func(t *testing.T) {
		var sig string
		for _, l := range parseDownload(t, sh.MustScript(t, "cosign download "+img)) {
			writeDecoded(t, sh, "payload", l.Payload)
			writeDecoded(t, sh, "sig.raw", l.Base64Signature)
			if _, _, code := sh.Script(t, "openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin -in payload -sigfile sig.raw"); code == 0 {
				sig = l.Base64Signature
			}
		}
		if sig == "" {
			t.Fatal("no downloaded signature verifies with public-key.pem")
		}
		if err := os.WriteFile(sh.Path("sig"), []byte(sig+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		writeDecoded(t, sh, "sig.raw", sig)
		out := sh.MustScript(t, "cosine verify -key public-key.pem -signature sig "+img)
		if ds := verifiedDigests(t, out); len(ds) != 1 || ds[0] != digest {
			t.Errorf("verify -signature: %v", ds)
		}
		// The raw signature works too, and another key refuses it.
		sh.MustScript(t, "cosign verify -key public-key.pem -signature sig.raw "+img)
		stdout, stderr, code := sh.Script(t, "cosign verify -key other-public-key.pem -signature sig "+img)
		mustFail(t, "detached signature with another key", stdout, stderr, code, "none of 1 signatures was made by this key")
	})
}

// TestRefusalsSayWhy checks every failure a user can hit: each exits 1 with
// a one-line message that names the failure.
func TestRefusalsSayWhy(t *testing.T) {
	Require(t, "docker-registry", "openssl", "bash")
	reg := StartRegistry(t)
	sh := NewShell(t)
	sh.Set("COSIGN_PASSWORD", "")
	sh.MustRun(t, "", "generate-key-pair", "--output-key-prefix", "good")
	sh.MustRun(t, "", "generate-key-pair", "--output-key-prefix", "wrong")
	sh.Set("COSIGN_PASSWORD", "pw")
	sh.MustRun(t, "", "generate-key-pair", "--output-key-prefix", "enc")
	sh.MustScript(t, "printf 'not a key\\n' > garbage.pem && head -c 300 /dev/urandom | base64 > noise.pem")

	signed := reg + "/refusals/signed"
	PushRandomImage(t, signed)
	sh.MustRun(t, "", "sign", "-key", "good.key", signed)

	// A valid signature by the good key, tampered with, on another image.
	tampered := reg + "/refusals/tampered"
	PushRandomImage(t, tampered)
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sh.MustRun(t, "", "sign", "-key", "good.key", "--no-upload", tampered)))
	if err != nil {
		t.Fatal(err)
	}
	sig[0] ^= 0x80
	tamperedB64 := base64.StdEncoding.EncodeToString(sig)
	sh.MustRun(t, tamperedB64, "upload", "-signature", "-", tampered)

	// The good key's signature over another image's payload, stored here.
	replayed := reg + "/refusals/replayed"
	PushRandomImage(t, replayed)
	otherDigest := PushRandomImage(t, replayed+":other")
	sh.MustScript(t, "cosign generate "+replayed+":other > other-payload && openssl pkeyutl -sign -inkey good.key -rawin -in other-payload -out other-sig")
	sh.MustScript(t, "cosign upload -signature other-sig -payload other-payload "+replayed)

	unsigned := reg + "/refusals/unsigned"
	unsignedDigest := PushRandomImage(t, unsigned)
	closed := fmt.Sprintf("127.0.0.1:%d", FreePort(t))

	tests := []struct {
		name     string
		password string // COSIGN_PASSWORD; "" leaves it unset
		args     []string
		want     string
	}{
		{"wrong key", "", []string{"verify", "-key", "wrong.pub", signed}, "none of 1 signatures was made by this key"},
		{"tampered signature", "", []string{"verify", "-key", "good.pub", tampered}, "none of 1 signatures was made by this key"},
		{"payload for another digest", "", []string{"verify", "-key", "good.pub", replayed}, "digest mismatch: signature is for " + otherDigest.String() + ", image is sha256:"},
		{"unsigned image", "", []string{"verify", "-key", "good.pub", unsigned}, "no signatures found for " + unsigned + "@" + unsignedDigest.String()},
		{"unknown repository", "", []string{"verify", "-key", "good.pub", reg + "/refusals/nope"}, "image not found: " + reg + "/refusals/nope:latest"},
		{"unknown tag", "", []string{"verify", "-key", "good.pub", signed + ":nope"}, "image not found: " + signed + ":nope"},
		{"unreachable registry (verify)", "", []string{"verify", "-key", "good.pub", closed + "/x"}, "registry unreachable: " + closed},
		{"unreachable registry (sign)", "", []string{"sign", "-key", "good.key", closed + "/x"}, "registry unreachable: " + closed},
		{"unreachable registry (download)", "", []string{"download", closed + "/x"}, "registry unreachable: " + closed},
		{"wrong password", "not-pw", []string{"sign", "-key", "enc.key", signed}, "wrong password"},
		{"encrypted key without a password", "", []string{"sign", "-key", "enc.key", signed}, "set COSIGN_PASSWORD"},
		{"malformed private key", "", []string{"sign", "-key", "garbage.pem", signed}, "reading private key garbage.pem"},
		{"noise as private key", "", []string{"sign", "-key", "noise.pem", signed}, "reading private key noise.pem"},
		{"missing private key", "", []string{"sign", "-key", "absent.pem", signed}, "no such file or directory"},
		{"private key given as public key", "", []string{"verify", "-key", "good.key", signed}, "reading public key good.key"},
		{"tampered detached signature", "", []string{"verify", "-key", "good.pub", "-signature", "tampered.sig", tampered}, "none of 1 signatures was made by this key"},
		{"download of an unsigned image", "", []string{"download", unsigned}, "no signatures found for " + unsigned},
	}
	if err := os.WriteFile(sh.Path("tampered.sig"), []byte(tamperedB64), 0o644); err != nil {
		t.Fatal(err)
	}
	sigsBefore := SignatureLayers(t, signed, Digest(t, signed))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sh.Unset("COSIGN_PASSWORD") // stdin is no terminal: no prompt either
			if tt.password != "" {
				sh.Set("COSIGN_PASSWORD", tt.password)
			}
			stdout, stderr, code := sh.Run(t, "", tt.args...)
			mustFail(t, strings.Join(tt.args, " "), stdout, stderr, code, tt.want)
			if !strings.HasPrefix(stderr, "cosign "+tt.args[0]+": ") {
				t.Errorf("stderr %q does not start with the command's name", stderr)
			}
		})
	}
	if n := SignatureLayers(t, signed, Digest(t, signed)); n != sigsBefore {
		t.Errorf("failed signs changed the .sig manifest: %d layers, was %d", n, sigsBefore)
	}
	// The refusals are specific: the right key still verifies.
	sh.MustRun(t, "", "verify", "-key", "good.pub", signed)
}

// TestInteropVectors verifies what the real sigstore cosign v3.1.2 wrote,
// loaded into a real registry, and signs with its keys.
func TestInteropVectors(t *testing.T) {
	Require(t, "docker-registry", "openssl", "bash")
	reg := StartRegistry(t)
	v := LoadVectors(t, reg)
	sh := NewShell(t)
	ecdsaPub, ed25519Pub := v.Key("ecdsa.pub"), v.Key("ed25519.pub")

	verifies := []struct {
		name  string
		image string
		key   string
		sigs  int // signatures the key verified
	}{
		{"legacy .sig, ECDSA signature", "interop/app:v1", ecdsaPub, 1},
		{"legacy .sig, Ed25519ph signature", "interop/app:v1", ed25519Pub, 1},
		{"bundle v0.3 in the referrers tag", "interop/app:v2", ecdsaPub, 1},
		{"signed index", "interop/multi:v1", ecdsaPub, 1},
	}
	for _, tt := range verifies {
		t.Run("verify "+tt.name, func(t *testing.T) {
			out := sh.MustRun(t, "", "verify", "-key", tt.key, reg+"/"+tt.image)
			var docs []json.RawMessage
			if err := json.Unmarshal([]byte(out), &docs); err != nil || len(docs) != tt.sigs {
				t.Errorf("verified %q (%v), want %d payloads", out, err, tt.sigs)
			}
		})
	}
	t.Run("verify with the annotation the ECDSA signature carries", func(t *testing.T) {
		sh.MustRun(t, "", "verify", "-key", ecdsaPub, "-a", "env=prod", reg+"/interop/app:v1")
		stdout, stderr, code := sh.Run(t, "", "verify", "-key", ed25519Pub, "-a", "env=prod", reg+"/interop/app:v1")
		mustFail(t, "Ed25519 signature without env=prod", stdout, stderr, code, `annotation "env" is missing`)
	})
	refusals := []struct {
		name, image, key, want string
	}{
		{"unsigned image", "interop/unsigned:v1", ecdsaPub, "no signatures found for " + reg + "/interop/unsigned@"},
		{"bundle with the wrong key", "interop/app:v2", ed25519Pub, "none of 1 signatures was made by this key"},
		{"signed index with the wrong key", "interop/multi:v1", ed25519Pub, "none of 1 signatures was made by this key"},
	}
	for _, tt := range refusals {
		t.Run("refuse "+tt.name, func(t *testing.T) {
			stdout, stderr, code := sh.Run(t, "", "verify", "-key", tt.key, reg+"/"+tt.image)
			mustFail(t, tt.name, stdout, stderr, code, tt.want)
		})
	}
	t.Run("download shows both legacy signatures, openssl verifies the ECDSA one", func(t *testing.T) {
		lines := parseDownload(t, sh.MustRun(t, "", "download", reg+"/interop/app:v1"))
		if len(lines) != 2 {
			t.Fatalf("%d lines, want 2", len(lines))
		}
		ok := 0
		for _, l := range lines {
			writeDecoded(t, sh, "payload", l.Payload)
			writeDecoded(t, sh, "sig.der", l.Base64Signature)
			if _, _, code := sh.Script(t, "openssl dgst -sha256 -verify "+ecdsaPub+" -signature sig.der payload"); code == 0 {
				ok++
			}
		}
		if ok != 1 {
			t.Errorf("openssl verified %d lines with ecdsa.pub, want 1", ok)
		}
		bundle := parseDownload(t, sh.MustRun(t, "", "download", reg+"/interop/app:v2"))
		if len(bundle) != 1 || len(bundle[0].Bundle) == 0 || bundle[0].PayloadType != sigstore.InTotoPayloadType {
			t.Errorf("download of the bundle: %+v", bundle)
		}
	})

	signs := []struct {
		name     string
		password string
		key, pub string
		extra    []string
	}{
		{"cosign's encrypted ECDSA key", "interop", "ecdsa.key", ecdsaPub, nil},
		{"cosign's encrypted Ed25519 key", "interop", "ed25519.key", ed25519Pub, nil},
		{"openssl's plain Ed25519 key", "", "ed25519-plain.pem", ed25519Pub, nil},
		{"a bundle with the ECDSA key", "interop", "ecdsa.key", ecdsaPub, []string{"--bundle"}},
	}
	for i, tt := range signs {
		t.Run("sign with "+tt.name, func(t *testing.T) {
			img := fmt.Sprintf("%s/interop/fresh%d", reg, i)
			d := PushRandomImage(t, img)
			sh.Set("COSIGN_PASSWORD", tt.password)
			sh.MustRun(t, "", append([]string{"sign", "-key", v.Key(tt.key), img}, tt.extra...)...)
			out := sh.MustRun(t, "", "verify", "-key", tt.pub, img)
			if !strings.Contains(out, d.Hex) {
				t.Errorf("verified %q, want the digest %s", out, d)
			}
			other := ed25519Pub
			if tt.pub == ed25519Pub {
				other = ecdsaPub
			}
			stdout, stderr, code := sh.Run(t, "", "verify", "-key", other, img)
			mustFail(t, "the other vector key", stdout, stderr, code, "none of 1 signatures was made by this key")
		})
	}
}
