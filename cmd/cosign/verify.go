package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
	"github.com/cosign-dev/cosign/verifier"
)

func runVerify(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("verify", "(-key PUB | --certificate-identity[-regexp] ID --certificate-oidc-issuer[-regexp] ISSUER\n"+
		"       --trusted-root FILE) IMAGE [-a key=value]... [-signature FILE|- [-payload FILE]] [--recursive]",
		"Exit 0 when at least one signature stored for the digest IMAGE resolves to was made by the key\n"+
			"PUB, over a payload that names that digest and carries every -a annotation. Instead of a key,\n"+
			"keyless verification accepts a signature whose Fulcio certificate chains to the trusted root\n"+
			"FILE (a Sigstore trusted_root.json), with a transparency-log entry of that root, and whose\n"+
			"identity (SAN) and OIDC issuer match the --certificate-* flags, exactly or by regular expression\n"+
			"(Go RE2, unanchored unless anchored, as in sigstore cosign). Verified payloads\n"+
			"go to stdout as a JSON array; the checks go to stderr. As in sigstore cosign, the payload's\n"+
			"docker-reference is not checked: the digest binds the signature. With -signature, verify that\n"+
			"detached signature (raw or base64) over the regenerated payload, or over -payload, instead.\n"+
			"With --recursive, a multi-platform index and each of its platform manifests must verify.",
		c.stdout)
	var signer signerFlags
	signer.register(fs.FlagSet)
	ann := annotations{}
	fs.Var(ann, "a", "annotation `key=value` the signed payload must carry (repeatable)")
	sigPath := fs.String("signature", "", "verify this detached signature instead (file, or - for stdin)")
	payloadPath := fs.String("payload", "", "with -signature: the signed payload (default: regenerate it from IMAGE and -a)")
	recursive := fs.Bool("recursive", false, "for a multi-platform index, also verify each platform manifest")
	fs.yes()
	output := c.outputFile(fs)
	var reg registryFlags
	reg.register(fs.FlagSet)
	image, err := oneImage(fs, args)
	if err != nil {
		return err
	}
	if err := signer.check(); err != nil {
		return err
	}
	if *sigPath != "" && signer.key == "" {
		return usagef("-signature verifies a detached signature with -key; keyless verification reads the certificates stored with the signatures")
	}
	if *payloadPath != "" && *sigPath == "" {
		return usagef("-payload needs -signature")
	}
	if isStdin(*sigPath) && isStdin(*payloadPath) {
		return usagef("-signature and -payload cannot both read stdin")
	}
	if *recursive && *sigPath != "" {
		return usagef("--recursive verifies the signatures stored for each manifest; a detached -signature is for one")
	}
	if err := output(); err != nil {
		return err
	}
	who, err := c.loadSigners(&signer)
	if err != nil {
		return err
	}
	d, desc, err := reg.resolveImage(ctx, image)
	if err != nil {
		return err
	}
	targets := []v1.Descriptor{desc}
	if *recursive {
		children, err := reg.platformManifests(ctx, d, desc)
		if err != nil {
			return err
		}
		targets = append(targets, children...)
	}
	type passed struct {
		img      verifier.Image
		verified []sigstore.Signature
	}
	var passes []passed
	var failures []error
	for _, t := range targets {
		td := d.Context().Digest(t.Digest.String())
		var sigs []sigstore.Signature
		if *sigPath != "" {
			sigs, err = c.detachedSignature(*sigPath, *payloadPath, d.Context().Name(), t.Digest, ann)
		} else {
			sigs, err = reg.signatures(ctx, td)
		}
		if err != nil {
			return err
		}
		img := verifierImage(d.Context(), t.Digest)
		dec := verifier.Evaluate(who.policy(ann), img, sigs)
		if !dec.Admit || dec.Warn {
			err := refusal(dec, img, who, sigs, ann)
			if len(targets) > 1 {
				err = fmt.Errorf("%s%s: %w", manifestKind(t, desc), platformNote(t), err)
			}
			failures = append(failures, err)
			continue
		}
		passes = append(passes, passed{img, dec.Verified})
	}
	switch len(failures) {
	case 0:
	case 1:
		return failures[0]
	default:
		return fmt.Errorf("%d of %d manifests did not verify; the first: %w", len(failures), len(targets), failures[0])
	}
	var verified []sigstore.Signature
	for _, p := range passes {
		c.reportChecks(p.img, who, ann, len(p.verified))
		verified = append(verified, p.verified...)
	}
	return c.printPayloads(verified)
}

// manifestKind names the manifest t for --recursive messages.
func manifestKind(t, top v1.Descriptor) string {
	if t.Digest == top.Digest {
		return "the index"
	}
	return "platform manifest " + t.Digest.String()
}

// platformNote is " (linux/arm64)" for a manifest with a platform, else "".
func platformNote(t v1.Descriptor) string {
	if p := platform(t); p != "" {
		return " (" + p + ")"
	}
	return ""
}

// detachedSignature is the one signature -signature names, over the payload
// -payload names or the regenerated one.
func (c *cli) detachedSignature(sigPath, payloadPath, reference string, digest v1.Hash, ann annotations) ([]sigstore.Signature, error) {
	sig, err := c.readSignature(sigPath)
	if err != nil {
		return nil, err
	}
	payload, err := c.payloadFor(payloadPath, reference, digest, ann)
	if err != nil {
		return nil, err
	}
	return []sigstore.Signature{{
		Format:  sigstore.FormatSimpleSigning,
		Signed:  payload,
		Sig:     sig,
		Payload: payload,
		Where:   "detached signature " + sigPath,
	}}, nil
}

// verifyPolicyName names the one-signer policy verify evaluates with.
const verifyPolicyName = "cosign verify"

// refusal turns a refusing decision into the error the user sees.
func refusal(dec verifier.Decision, img verifier.Image, who signers, sigs []sigstore.Signature, ann annotations) error {
	pub := who.key
	switch {
	case dec.Reason == verifier.ReasonNoSignatures:
		return fmt.Errorf("no signatures found for %s", img)
	case pub == nil:
		return decisionError(dec, img)
	case dec.Reason == verifier.ReasonUntrusted:
		if other := otherPayload(img, pub, sigs, ann); other != "" {
			return fmt.Errorf("a signature by this key covers a different payload than the one stored with it: "+
				"it verifies over %s (upload it with the -a annotations it was signed with) for %s", other, img)
		}
		return fmt.Errorf("none of %d signatures was made by this key (%s %s) for %s%s",
			len(sigs), pub.Algorithm(), pub.ID(), img, malformed(sigs))
	case dec.Reason == verifier.ReasonDigestMismatch:
		return fmt.Errorf("digest mismatch: signature is for %s, image is %s (%s)",
			digestNames(dec.SignedDigests), img.Digest, img)
	}
	detail := strings.NewReplacer("(required: ", "(required by -a: ").Replace(dec.Detail)
	return fmt.Errorf("%s (%s) for %s", dec.Reason, detail, img)
}

// otherPayload finds a stored simple-signing signature that pub made over
// a payload cosign generate makes for this image (with verify's -a, or with
// none) other than the payload stored beside it: a signature uploaded
// without the -a it was signed with. It names that payload, or returns "".
func otherPayload(img verifier.Image, pub sigstore.PublicKey, sigs []sigstore.Signature, ann annotations) string {
	ref := img.Registry + "/" + img.Repository
	type candidate struct {
		what string
		ann  map[string]string
	}
	candidates := []candidate{{"the payload for this image without annotations", nil}}
	if len(ann) > 0 {
		candidates = append([]candidate{{"the payload for this image with -a " + ann.String(), ann}}, candidates...)
	}
	for _, c := range candidates {
		payload, err := sigstore.NewPayload(ref, img.Digest, c.ann)
		if err != nil {
			continue
		}
		for _, s := range sigs {
			if s.Err == nil && s.Format == sigstore.FormatSimpleSigning && !bytes.Equal(s.Signed, payload) && pub.Verify(payload, s.Sig) == nil {
				return c.what
			}
		}
	}
	return ""
}

// malformed says how many signatures were malformed and why the first was,
// or "" when none was.
func malformed(sigs []sigstore.Signature) string {
	n, first := 0, ""
	for _, s := range sigs {
		if s.Err != nil {
			if n == 0 {
				first = fmt.Sprintf("%s: %v", s.Where, s.Err)
			}
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; %d malformed, first: %s", n, first)
}

// digestNames lists the digests a trusted signature binds instead of the
// image's, from the decision.
func digestNames(ds []v1.Hash) string {
	if len(ds) == 0 {
		return "another digest"
	}
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = d.String()
	}
	return strings.Join(names, ", ")
}

// verifierImage is the image, as the verifier names it, at digest in repo.
func verifierImage(repo name.Repository, digest v1.Hash) verifier.Image {
	return verifier.Image{Registry: repo.RegistryStr(), Repository: repo.RepositoryStr(), Digest: digest}
}

// reportSigners begins the report on stderr of what was verified for img:
// the image, and the checks of who (the key or the certificate identity)
// that each of the verified signatures or attestations (what) passed.
func (c *cli) reportSigners(img verifier.Image, who signers, what string) {
	fmt.Fprintf(c.stderr, "Verification for %s --\n", img)
	fmt.Fprintf(c.stderr, "The following checks were performed on each of these %s:\n", what)
	for _, line := range who.describe() {
		fmt.Fprintf(c.stderr, "  - %s\n", line)
	}
}

// reportChecks says on stderr which checks n signatures of img passed.
func (c *cli) reportChecks(img verifier.Image, who signers, ann annotations, n int) {
	c.reportSigners(img, who, "signatures")
	fmt.Fprintf(c.stderr, "  - The signed payload names the image digest %s.\n", img.Digest)
	if len(ann) > 0 {
		fmt.Fprintf(c.stderr, "  - The signed payload carries the annotations %s.\n", ann)
	}
	fmt.Fprintf(c.stderr, "  - The payload's docker-reference was not checked (as in sigstore cosign): the digest binds it.\n")
	fmt.Fprintf(c.stderr, "%d verified signature(s).\n", n)
}

// printPayloads prints the verified payloads as a JSON array to stdout.
func (c *cli) printPayloads(verified []sigstore.Signature) error {
	docs := make([]json.RawMessage, 0, len(verified))
	for _, s := range verified {
		if !json.Valid(s.Payload) {
			return fmt.Errorf("verified payload %s is not JSON", s.Where)
		}
		docs = append(docs, json.RawMessage(s.Payload))
	}
	out, err := json.Marshal(docs)
	if err != nil {
		return fmt.Errorf("encoding payloads: %w", err)
	}
	_, err = fmt.Fprintf(c.stdout, "%s\n", out)
	return err
}
