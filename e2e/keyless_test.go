package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/sigstore/sigstoretest"
	"github.com/cosign-dev/cosign/verifier"
)

// Keyless signatures and attestations at pull, with the real clients: one
// docker-registry, one proxy whose policies trust certificate identities of
// a private Sigstore (sigstoretest) instead of keys, and images signed and
// attested by that Sigstore in both of cosign's layouts (Sigstore bundle
// referrers and the legacy .sig/.att tags), each pulled through the proxy by
// containerd, docker and skopeo.
//
// sigstoretest issues the GitHub Actions workflow identity as a URI SAN,
// as Fulcio does for workflow certificates, and the policy names it
// exactly. A second policy matches e-mail identities by regular
// expression.

const (
	ghIssuer  = "https://token.actions.githubusercontent.com"
	ghSubject = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
	ghBuilder = "https://github.com/actions/runner/github-hosted"
	// The regexp policy's issuer, and a subject it accepts.
	mailIssuer  = "https://accounts.example.com"
	mailSubject = "release@acme.example"
)

// keylessConfig is the proxy configuration of the keyless test: the trusted
// root "test" (root.json next to the configuration) and one policy per
// repository glob of the upstream registry.
const keylessConfig = `listen: "%%[1]s"
upstreams:
  - registry: %[1]s
    url: http://%[1]s
defaultUpstream: %[1]s
trustedRoots:
  test: root.json
policies:
  - name: gh
    match: ["%[1]s/gh/**"]
    keyless:
      trustedRoot: test
      identities:
        - issuer: %[2]s
          subject: %[3]s
  - name: mail
    match: ["%[1]s/mail/**"]
    keyless:
      trustedRoot: test
      identities:
        - issuerRegExp: '^https://accounts\.example\.com$'
          subjectRegExp: '^[a-z]+@acme\.example$'
  - name: slsa
    match: ["%[1]s/slsa/**"]
    keyless:
      trustedRoot: test
      identities:
        - issuer: %[2]s
          subject: %[3]s
    attestations:
      - predicateType: %[4]s
        predicate:
          runDetails.builder.id: %[5]s
  - name: attonly
    match: ["%[1]s/attonly/**"]
    keyless:
      trustedRoot: test
      identities:
        - issuer: %[2]s
          subject: %[3]s
    attestations:
      - predicateType: %[4]s
        predicate:
          runDetails.builder.id: %[5]s
    signature: false
defaultPolicy: deny
`

// slsaPredicate is a SLSA provenance v1 predicate naming builder.
func slsaPredicate(builder string) map[string]any {
	return map[string]any{
		"buildDefinition": map[string]any{
			"buildType":          "https://actions.github.io/buildtypes/workflow/v1",
			"externalParameters": map[string]any{"workflow": map[string]any{"ref": "refs/heads/main", "repository": "https://github.com/acme/app", "path": ".github/workflows/release.yml"}},
		},
		"runDetails": map[string]any{
			"builder":  map[string]any{"id": builder},
			"metadata": map[string]any{"invocationId": "https://github.com/acme/app/actions/runs/1/attempts/1"},
		},
	}
}

// keylessLab is the upstream registry and the Sigstore that signs into it.
type keylessLab struct {
	registry string
	sig      *sigstoretest.Sigstore
}

// repo is the upstream repository path of the lab's registry.
func (l *keylessLab) repo(t *testing.T, path string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(l.registry+"/"+path, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// writeOpts are the go-containerregistry options of writes to the lab's
// registry (plain HTTP).
func writeOpts() []remote.Option { return crane.GetOptions(crane.Insecure).Remote }

// signBundle writes a v0.3 bundle signature of d by s into repo.
func (l *keylessLab) signBundle(t *testing.T, s *sigstoretest.Sigstore, repo string, d v1.Hash, o sigstoretest.Options) {
	t.Helper()
	b, err := s.SignatureBundle(d, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigstoretest.WriteSignatureBundle(context.Background(), l.repo(t, repo), d, b, writeOpts()...); err != nil {
		t.Fatal(err)
	}
}

// signLegacy writes a keyless .sig layer of d for the repository as
// docker-reference.
func (l *keylessLab) signLegacy(t *testing.T, repo string, d v1.Hash, o sigstoretest.Options) {
	t.Helper()
	payload, ann, err := l.sig.SimpleSigningLayer(l.registry+"/"+repo, d, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigstoretest.WriteSimpleSigning(context.Background(), l.repo(t, repo), d, payload, ann, writeOpts()...); err != nil {
		t.Fatal(err)
	}
}

// attestBundle writes a SLSA v1 attestation bundle of d naming builder.
func (l *keylessLab) attestBundle(t *testing.T, repo string, d v1.Hash, builder string, o sigstoretest.Options) {
	t.Helper()
	o.SubjectName = l.registry + "/" + repo
	b, err := l.sig.AttestationBundle(d, sigstore.PredicateSLSA1, slsaPredicate(builder), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigstoretest.WriteAttestationBundle(context.Background(), l.repo(t, repo), d, b, writeOpts()...); err != nil {
		t.Fatal(err)
	}
}

// attestLegacy writes a SLSA v1 attestation about subject, naming builder,
// as a layer of the .att tag of d in repo (subject is d, except when a test
// puts another image's attestation there).
func (l *keylessLab) attestLegacy(t *testing.T, repo string, d, subject v1.Hash, builder string, o sigstoretest.Options) {
	t.Helper()
	o.SubjectName = l.registry + "/" + repo
	env, ann, err := l.sig.AttestationEnvelope(subject, sigstore.PredicateSLSA1, slsaPredicate(builder), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigstoretest.WriteAttestation(context.Background(), l.repo(t, repo), d, env, ann, writeOpts()...); err != nil {
		t.Fatal(err)
	}
}

// keylessCase is one image of the keyless test and what the proxy must do
// with it.
type keylessCase struct {
	gateCase
	// detail must appear in the refusal message after the reason: what
	// names the failed check precisely.
	detail string
	// blobs are a refused image's config and layers: no client store may
	// hold them afterwards.
	blobs []string
	// message is the proxy's DENIED message, read before the clients pull.
	message string
}

// TestKeylessPullRealClients proves keyless signers and required
// attestations at pull time, with containerd, docker and skopeo behind the
// proxy: signatures and attestations by the trusted identities admit, in
// both layouts, and an index signed keylessly admits its children; every
// other case is refused with the reason that names what failed, which every
// client shows, and no refused image lands in containerd's or docker's
// store.
func TestKeylessPullRealClients(t *testing.T) {
	t.Parallel()
	start := time.Now()
	bin := BuildBinary(t)
	l := &keylessLab{registry: StartRegistry(t)}
	var err error
	if l.sig, err = sigstoretest.New(); err != nil {
		t.Fatal(err)
	}
	otherCA, err := sigstoretest.New()
	if err != nil {
		t.Fatal(err)
	}
	gh := sigstoretest.Options{Identity: ghSubject, Issuer: ghIssuer}

	var cases []*keylessCase
	push := func(path string) v1.Hash { return PushRandomImage(t, l.registry+"/"+path) }
	admit := func(name, path string, d v1.Hash) {
		cases = append(cases, &keylessCase{gateCase: gateCase{name: name, path: path, digest: d, admit: true}})
	}
	refuse := func(name, path string, d v1.Hash, reason verifier.Reason, detail string) {
		cases = append(cases, &keylessCase{
			gateCase: gateCase{name: name, path: path, digest: d, reason: reason},
			detail:   detail,
			blobs:    imageBlobDigests(t, l.registry+"/"+path),
		})
	}

	// --- admitted ---
	d := push("gh/bundle:v1")
	l.signBundle(t, l.sig, "gh/bundle", d, gh)
	admit("v0.3 bundle by the GitHub workflow identity", "gh/bundle:v1", d)

	d = push("gh/legacy:v1")
	l.signLegacy(t, "gh/legacy", d, gh)
	admit("legacy .sig by the GitHub workflow identity", "gh/legacy:v1", d)

	d = push("mail/regexp:v1")
	l.signBundle(t, l.sig, "mail/regexp", d, sigstoretest.Options{Identity: mailSubject, Issuer: mailIssuer})
	admit("bundle by an e-mail identity the regexps match", "mail/regexp:v1", d)

	idx, children := pushIndex(t, l.registry+"/gh/index:v1")
	l.signBundle(t, l.sig, "gh/index", idx, gh)
	cases = append(cases, &keylessCase{gateCase: gateCase{name: "index signed keylessly admits its children",
		path: "gh/index:v1", digest: idx, admit: true, children: children}})

	d = push("slsa/bundle:v1")
	l.signBundle(t, l.sig, "slsa/bundle", d, gh)
	l.attestBundle(t, "slsa/bundle", d, ghBuilder, gh)
	admit("bundle signature and SLSA v1 bundle attestation", "slsa/bundle:v1", d)

	d = push("slsa/legacy:v1")
	l.signLegacy(t, "slsa/legacy", d, gh)
	l.attestLegacy(t, "slsa/legacy", d, d, ghBuilder, gh)
	slsaLegacy := d
	admit("legacy .sig and legacy .att SLSA v1 attestation", "slsa/legacy:v1", d)

	d = push("attonly/app:v1")
	l.attestBundle(t, "attonly/app", d, ghBuilder, gh)
	admit("signature: false, attestation alone", "attonly/app:v1", d)

	// --- refused ---
	d = push("gh/other-subject:v1")
	evilSubject := "https://github.com/evil/app/.github/workflows/release.yml@refs/heads/main"
	l.signBundle(t, l.sig, "gh/other-subject", d, sigstoretest.Options{Identity: evilSubject, Issuer: ghIssuer})
	refuse("another subject", "gh/other-subject:v1", d, verifier.ReasonCertificateIdentity,
		"certificate identity mismatch (issuer "+ghIssuer+", subject "+evilSubject+")")

	d = push("gh/other-issuer:v1")
	l.signBundle(t, l.sig, "gh/other-issuer", d, sigstoretest.Options{Identity: ghSubject, Issuer: "https://accounts.google.com"})
	refuse("another issuer", "gh/other-issuer:v1", d, verifier.ReasonCertificateIdentity,
		"certificate identity mismatch (issuer https://accounts.google.com, subject "+ghSubject+")")

	d = push("mail/other-domain:v1")
	l.signBundle(t, l.sig, "mail/other-domain", d, sigstoretest.Options{Identity: "release@evil.example", Issuer: mailIssuer})
	refuse("e-mail identity the regexps do not match", "mail/other-domain:v1", d, verifier.ReasonCertificateIdentity,
		"certificate identity mismatch (issuer "+mailIssuer+", subject release@evil.example)")

	// The right identity, but certified, logged and timestamped by another
	// Sigstore: nothing of it chains to the trusted root. sigstoretest
	// makes the CA and the log together, so the log entry, checked first,
	// is what fails: sigstore-go skips an entry of a log the root does not
	// name. The refusal must be a keyless failure against this root.
	d = push("gh/other-ca:v1")
	l.signBundle(t, otherCA, "gh/other-ca", d, gh)
	refuse("certificate of another CA", "gh/other-ca:v1", d, verifier.ReasonKeyless, `from a log that trusted root "test" does not name`)

	// No Rekor entry, only the RFC 3161 timestamp. This proves the property
	// the issue asks for ("an expired certificate without a log entry is
	// refused") in its strongest form: the refusal does not depend on the
	// certificate's validity at all. The certificate is still within its 10
	// minutes when it is pulled, its timestamp verifies, and it is refused
	// all the same, because without a log entry nothing places the
	// signature in time for anyone else; so it is refused once expired too.
	// (sigstoretest cannot issue an already expired certificate, and
	// waiting 10 minutes is too slow for this suite.)
	d = push("gh/notlog:v1")
	l.signBundle(t, l.sig, "gh/notlog", d, sigstoretest.Options{Identity: ghSubject, Issuer: ghIssuer, NoTlog: true})
	refuse("no log entry (would be an expired certificate)", "gh/notlog:v1", d, verifier.ReasonNoTransparencyLog,
		"no transparency log entry")

	// A genuine log entry, same certificate, but for another statement.
	d = push("gh/other-bytes:v1")
	l.signBundle(t, l.sig, "gh/other-bytes", d, sigstoretest.Options{Identity: ghSubject, Issuer: ghIssuer, OtherBytes: true})
	refuse("bundle whose log entry is for other bytes", "gh/other-bytes:v1", d, verifier.ReasonKeyless,
		`transparency log entry does not verify against trusted root "test" or does not bind this signature`)

	d = push("gh/other-bytes-legacy:v1")
	l.signLegacy(t, "gh/other-bytes-legacy", d, sigstoretest.Options{Identity: ghSubject, Issuer: ghIssuer, OtherBytes: true})
	refuse("legacy .sig whose log entry is for other bytes", "gh/other-bytes-legacy:v1", d, verifier.ReasonKeyless,
		`transparency log entry does not verify against trusted root "test" or does not bind this signature`)

	// Logged 11 minutes after issue: the certificate (valid 10 minutes) had
	// expired when the log saw the signature.
	d = push("gh/log-time:v1")
	l.signBundle(t, l.sig, "gh/log-time", d, sigstoretest.Options{Identity: ghSubject, Issuer: ghIssuer,
		IntegratedTime: time.Now().Add(11 * time.Minute)})
	refuse("certificate not valid at log time", "gh/log-time:v1", d, verifier.ReasonCertificateTime,
		"certificate not valid at log time")

	d = push("gh/unsigned:v1")
	refuse("unsigned", "gh/unsigned:v1", d, verifier.ReasonNoSignatures, "none found for this digest")

	d = push("slsa/no-attestation:v1")
	l.signBundle(t, l.sig, "slsa/no-attestation", d, gh)
	refuse("signed, attestation missing", "slsa/no-attestation:v1", d, verifier.ReasonAttestationMissing,
		"attestation missing: "+sigstore.PredicateSLSA1)

	d = push("slsa/other-builder:v1")
	l.signBundle(t, l.sig, "slsa/other-builder", d, gh)
	l.attestBundle(t, "slsa/other-builder", d, "https://builder.evil.example/runner", gh)
	refuse("provenance from another builder", "slsa/other-builder:v1", d, verifier.ReasonPredicate,
		"predicate condition failed: runDetails.builder.id")

	// A genuine attestation of slsa/legacy's image, by the trusted identity,
	// copied into the .att tag of this image (the bundle writer refuses a
	// statement that does not name the digest, so the legacy layout).
	d = push("slsa/other-digest:v1")
	l.signBundle(t, l.sig, "slsa/other-digest", d, gh)
	l.attestLegacy(t, "slsa/other-digest", d, slsaLegacy, ghBuilder, gh)
	refuse("attestation made for another digest", "slsa/other-digest:v1", d, verifier.ReasonAttestationMissing,
		"it is for "+slsaLegacy.String()+", not this digest")

	d = push("attonly/signed-only:v1")
	l.signBundle(t, l.sig, "attonly/signed-only", d, gh)
	refuse("signature: false, signature without attestation", "attonly/signed-only:v1", d, verifier.ReasonAttestationMissing,
		"attestation missing: "+sigstore.PredicateSLSA1)

	// The proxy, with the trusted root of l.sig.
	dir := t.TempDir()
	rootJSON, err := l.sig.TrustedRootJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "root.json"), rootJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, bin, dir, fmt.Sprintf(keylessConfig, l.registry, ghIssuer, ghSubject, sigstore.PredicateSLSA1, ghBuilder))
	m := Mirror{Proxy: p.addr, Upstream: l.registry}
	t.Logf("registry, images, signatures and proxy ready in %s", time.Since(start).Round(time.Millisecond))

	// The proxy's own answer first: 403 DENIED naming the digest, the
	// reason and the detail; HEAD refused too.
	for _, c := range cases {
		if c.admit {
			if a := askProxy(t, p.addr, "GET", c.path); a.status != 200 {
				t.Errorf("%s: GET %s answered %d %s %q, want 200", c.name, c.path, a.status, a.code, a.message)
			}
			continue
		}
		c.message = expectDenied(t, p.addr, c.path, c.digest, c.reason)
		t.Logf("%s: %s", c.name, c.message)
		if !strings.Contains(c.message, c.detail) {
			t.Errorf("%s: DENIED message for %s does not say %q:\n%s", c.name, c.path, c.detail, c.message)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Run("audit log names each decision", func(t *testing.T) { checkKeylessAudit(t, p, cases) })

	for _, cm := range clientsNamed(t, "containerd", "docker", "skopeo-mirror") {
		t.Run(cm.name, func(t *testing.T) {
			t.Parallel()
			c := cm.make(t, m)
			clientStart := time.Now()
			for _, kc := range cases {
				t.Run(kc.name, func(t *testing.T) { checkKeylessPull(t, c, kc) })
			}
			switch cm.name {
			case "containerd":
				checkContainerdHoldsNone(t, containerdOf(t, c), cases)
			case "docker":
				checkDockerHoldsNone(t, p.addr, cases)
			}
			t.Logf("%s: %d pulls in %s", cm.name, len(cases), time.Since(clientStart).Round(time.Millisecond))
		})
	}
}

// checkKeylessPull pulls one case with one client: an admitted image must
// arrive with its digest; a refused one must fail, showing the proxy's
// message at least up to the detail that names the failed check.
func checkKeylessPull(t *testing.T, c Client, kc *keylessCase) {
	t.Helper()
	if kc.admit {
		checkPull(t, c, kc.gateCase, "")
		return
	}
	res, err := c.Pull(context.Background(), kc.path)
	if err == nil {
		t.Fatalf("%s pulled %s (digest %s), want refused: %s (%s)\n%s", c.Name(), kc.path, res.Digest, kc.reason, kc.detail, res.Output)
	}
	want := kc.message
	if c.Name() == "containerd" {
		// ctr shows only the HEAD refusal's status line, which the proxy
		// cuts at 1 KiB: it must carry the message through the detail.
		i := strings.Index(want, kc.detail)
		want = want[:i+len(kc.detail)]
	}
	if !showsMessage(res.Output, want) {
		t.Errorf("%s refused %s but does not show the reason %q (want %q):\n%s%s", c.Name(), kc.path, kc.detail, want, lastLines(res.Output, 6), hint(c))
	}
}

// checkKeylessAudit checks the proxy's audit log: one decision line per
// case, under the policy named like the repository's first segment, with
// result deny and the reason for a refusal, and result admit (with the
// attestation that counted, under the slsa and attonly policies) for an
// admission. The proxy writes the line as it answers, so it is waited for.
func checkKeylessAudit(t *testing.T, p *runningProxy, cases []*keylessCase) {
	// want is the key=value fields the case's line must have.
	want := func(kc *keylessCase) []string {
		policy, _, _ := strings.Cut(kc.path, "/")
		w := []string{"msg", "decision", "digest", kc.digest.String(), "policy", policy}
		switch {
		case !kc.admit:
			w = append(w, "result", "deny", "reason", string(kc.reason))
		case policy == "slsa" || policy == "attonly":
			w = append(w, "result", "admit", "attestations", sigstore.PredicateSLSA1)
		default:
			w = append(w, "result", "admit", "reason", string(verifier.ReasonVerified))
		}
		return w
	}
	// logged reports whether a line of log has every field of w, its value
	// as slog's text handler writes it: bare, or quoted when it needs it.
	logged := func(log string, w []string) bool {
		for _, line := range strings.Split(log, "\n") {
			line += " "
			all := true
			for i := 0; i+1 < len(w) && all; i += 2 {
				all = strings.Contains(line, " "+w[i]+"="+w[i+1]+" ") ||
					strings.Contains(line, " "+w[i]+"="+strconv.Quote(w[i+1])+" ")
			}
			if all {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		log := p.proc.Output()
		var missing []string
		for _, kc := range cases {
			if w := want(kc); !logged(log, w) {
				missing = append(missing, fmt.Sprintf("%s: %s", kc.name, strings.Join(w, " ")))
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy's audit log has no line with:\n  %s", strings.Join(missing, "\n  "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkContainerdHoldsNone checks that containerd's content store, in any
// namespace, holds neither the manifest nor a blob of a refused image, and
// lists no refused image.
func checkContainerdHoldsNone(t *testing.T, c *containerdClient, cases []*keylessCase) {
	t.Helper()
	ctx := context.Background()
	held := ctrContent(ctx, t, c)
	out, err := ctr(ctx, c, "default", "namespaces", "ls", "-q")
	if err != nil {
		t.Fatalf("ctr namespaces ls: %v\n%s", err, out)
	}
	var images []string
	for _, ns := range strings.Fields(out) {
		images = append(images, ctrImages(ctx, t, c, ns)...)
	}
	for _, kc := range cases {
		if kc.admit {
			continue
		}
		for _, d := range append([]string{kc.digest.String()}, kc.blobs...) {
			if ns, ok := held[d]; ok {
				t.Errorf("containerd's content store (namespace %s) holds %s of %s, which the proxy refused", ns, d, kc.path)
			}
		}
		if ref := c.m.Upstream + "/" + kc.path; slices.Contains(images, ref) {
			t.Errorf("containerd lists image %s, which the proxy refused", ref)
		}
	}
}

// checkDockerHoldsNone checks that the Docker engine has no image of a
// refused case: none by its name through the proxy, none whose ID is the
// refused image's config digest.
func checkDockerHoldsNone(t *testing.T, proxy string, cases []*keylessCase) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := runTool(ctx, nil, "docker", "images", "--all", "--no-trunc", "--digests",
		"--format", "{{.ID}} {{.Repository}}:{{.Tag}} {{.Digest}}")
	if err != nil {
		t.Fatalf("docker images: %v\n%s", err, out)
	}
	for _, kc := range cases {
		if kc.admit {
			continue
		}
		repo := proxy + "/" + repoOf(kc.path) + ":"
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 3 {
				continue
			}
			if f[0] == kc.blobs[0] || strings.HasPrefix(f[1], repo) || f[2] == kc.digest.String() {
				t.Errorf("docker holds %q, of %s, which the proxy refused", line, kc.path)
			}
		}
	}
}
