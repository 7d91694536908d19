package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/sigstore/sigstoretest"
)

// The identity the keyless test artifacts are signed as.
const (
	ciIdentity = "ci@example.com"
	ciIssuer   = "https://issuer.example"
)

var (
	virtualOnce sync.Once
	virtual     *sigstoretest.Sigstore
	virtualErr  error
)

// testSigstore is one private Sigstore for the package's tests (making one
// costs keys), and the path of its trusted_root.json in a fresh directory.
func testSigstore(t *testing.T) (*sigstoretest.Sigstore, string) {
	t.Helper()
	virtualOnce.Do(func() { virtual, virtualErr = sigstoretest.New() })
	if virtualErr != nil {
		t.Fatal(virtualErr)
	}
	root, err := virtual.TrustedRootJSON()
	if err != nil {
		t.Fatal(err)
	}
	return virtual, writeFile(t, t.TempDir(), "trusted_root.json", string(root))
}

func mustRepo(t *testing.T, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ctx10s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// identityArgs are the keyless flags for an identity and an issuer.
func identityArgs(root, identity, issuer string) []string {
	return []string{"--trusted-root", root, "--certificate-identity", identity, "--certificate-oidc-issuer", issuer}
}

func TestKeylessVerifyChecksTheCertificateIdentity(t *testing.T) {
	t.Parallel()
	vs, root := testSigstore(t)
	reg := testRegistry(t)
	o := sigstoretest.Options{Identity: ciIdentity, Issuer: ciIssuer}

	// cosign v3's default, a bundle referrer; and a legacy .sig layer.
	bundled := reg + "/bundled"
	bd := pushImage(t, bundled+":v1")
	b, err := vs.SignatureBundle(bd, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigstoretest.WriteSignatureBundle(ctx10s(t), mustRepo(t, bundled), bd, b); err != nil {
		t.Fatal(err)
	}
	legacy := reg + "/legacy"
	ld := pushImage(t, legacy+":v1")
	payload, ann, err := vs.SimpleSigningLayer(legacy, ld, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigstoretest.WriteSimpleSigning(ctx10s(t), mustRepo(t, legacy), ld, payload, ann); err != nil {
		t.Fatal(err)
	}

	for _, img := range []struct {
		repo   string
		digest v1.Hash
	}{{bundled, bd}, {legacy, ld}} {
		t.Run(img.repo[strings.LastIndex(img.repo, "/")+1:], func(t *testing.T) {
			ref := img.repo + ":v1"
			out, stderr, code := run(t, nil, "", append([]string{"verify", ref}, identityArgs(root, ciIdentity, ciIssuer)...)...)
			if code != 0 || !strings.Contains(out, img.digest.Hex) || !strings.Contains(stderr, ciIdentity) {
				t.Errorf("right identity: exit %d, stdout %q, stderr %q; want 0, the payload, the identity named", code, out, stderr)
			}
			regexps := []string{"verify", ref, "--trusted-root", root,
				"--certificate-identity-regexp", `^ci@example\.com$`, "--certificate-oidc-issuer-regexp", `^https://issuer\.`}
			if _, stderr, code := run(t, nil, "", regexps...); code != 0 {
				t.Errorf("matching regular expressions: exit %d, %s", code, stderr)
			}
			for _, tc := range []struct {
				name string
				args []string
			}{
				{"another subject", identityArgs(root, "mallory@example.com", ciIssuer)},
				{"another issuer", identityArgs(root, ciIdentity, "https://other.example")},
				{"a subject regexp that does not match", []string{"--trusted-root", root,
					"--certificate-identity-regexp", `^root@`, "--certificate-oidc-issuer", ciIssuer}},
			} {
				out, stderr, code := run(t, nil, "", append([]string{"verify", ref}, tc.args...)...)
				if code != 1 || out != "" || !strings.Contains(stderr, "certificate identity mismatch") {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want 1 and certificate identity mismatch", tc.name, code, out, stderr)
				}
			}
			// A key does not verify a certificate's signature.
			_, pub := keyPair(t, t.TempDir(), "k", "")
			if _, stderr, code := run(t, nil, "", "verify", "--key", pub, ref); code != 1 {
				t.Errorf("verify --key on a keyless signature: exit %d, %s", code, stderr)
			}
		})
	}

	// Another Sigstore's root does not verify these certificates.
	other, err := sigstoretest.New()
	if err != nil {
		t.Fatal(err)
	}
	otherRoot, err := other.TrustedRootJSON()
	if err != nil {
		t.Fatal(err)
	}
	otherPath := writeFile(t, t.TempDir(), "other_root.json", string(otherRoot))
	if out, stderr, code := run(t, nil, "", append([]string{"verify", bundled + ":v1"}, identityArgs(otherPath, ciIdentity, ciIssuer)...)...); code != 1 || out != "" {
		t.Errorf("another trusted root: exit %d, stdout %q, stderr %q; want 1", code, out, stderr)
	}
}

func TestKeylessVerifyAttestation(t *testing.T) {
	t.Parallel()
	vs, root := testSigstore(t)
	reg := testRegistry(t)
	o := sigstoretest.Options{Identity: ciIdentity, Issuer: ciIssuer}
	predicate := map[string]any{"buildDefinition": map[string]any{"buildType": "https://example.com/build/v1"}}

	bundled := reg + "/bundled"
	bd := pushImage(t, bundled+":v1")
	o.SubjectName = bundled
	ab, err := vs.AttestationBundle(bd, sigstore.PredicateSLSA1, predicate, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigstoretest.WriteAttestationBundle(ctx10s(t), mustRepo(t, bundled), bd, ab); err != nil {
		t.Fatal(err)
	}
	legacy := reg + "/legacy"
	ld := pushImage(t, legacy+":v1")
	o.SubjectName = legacy
	env, ann, err := vs.AttestationEnvelope(ld, sigstore.PredicateSLSA1, predicate, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigstoretest.WriteAttestation(ctx10s(t), mustRepo(t, legacy), ld, env, ann); err != nil {
		t.Fatal(err)
	}

	for _, img := range []struct {
		repo   string
		digest v1.Hash
	}{{bundled, bd}, {legacy, ld}} {
		t.Run(img.repo[strings.LastIndex(img.repo, "/")+1:], func(t *testing.T) {
			ref := img.repo + ":v1"
			args := append([]string{"verify-attestation", "--type", "slsaprovenance1", ref}, identityArgs(root, ciIdentity, ciIssuer)...)
			out, stderr, code := run(t, nil, "", args...)
			if code != 0 {
				t.Fatalf("right identity: exit %d, %s", code, stderr)
			}
			got := parseEnvelopes(t, out)
			if len(got) != 1 || got[0].Statement.PredicateType != sigstore.PredicateSLSA1 || got[0].Statement.Subject[0].Digest["sha256"] != img.digest.Hex {
				t.Errorf("printed %+v, want the SLSA statement about %s", got, img.digest)
			}
			out, stderr, code = run(t, nil, "", append([]string{"verify-attestation", "--type", "slsaprovenance1", ref},
				identityArgs(root, "mallory@example.com", ciIssuer)...)...)
			if code != 1 || out != "" || !strings.Contains(stderr, "certificate identity mismatch") {
				t.Errorf("another subject: exit %d, stdout %q, stderr %q; want 1 naming certificate identity mismatch", code, out, stderr)
			}
			out, stderr, code = run(t, nil, "", append([]string{"verify-attestation", "--type", "spdxjson", ref},
				identityArgs(root, ciIdentity, ciIssuer)...)...)
			if code != 1 || out != "" || !strings.Contains(stderr, "attestation missing: https://spdx.dev/Document") {
				t.Errorf("another type: exit %d, stdout %q, stderr %q; want 1 and attestation missing", code, out, stderr)
			}
		})
	}
}
