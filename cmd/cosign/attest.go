package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

// maxPredicateSize is the largest predicate file attest reads.
const maxPredicateSize = 1 << 20

func runAttest(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("attest", "-key KEY --predicate FILE [--type TYPE] [--bundle] [-a key=value]... [--no-upload] IMAGE",
		"Attest the digest IMAGE resolves to: sign an in-toto statement whose subject is that digest and\n"+
			"whose predicate is FILE (one JSON object, at most 1 MiB; - reads stdin) as a DSSE envelope, and\n"+
			"store it in IMAGE's repository as a layer of the tag sha256-<hex>.att, as sigstore cosign does\n"+
			"(earlier attestations are kept, an identical one is not added twice, and concurrent attests do\n"+
			"not lose each other's). With --bundle, store a Sigstore bundle as an OCI referrer of the image\n"+
			"instead. TYPE is the predicate type: a URI, or one of cosign's short names\n"+
			"  "+strings.Join(sigstore.PredicateTypeNames(), ", ")+"\n"+
			"(custom, the default, wraps the file as cosign does: {\"Data\":\"<file>\",\"Timestamp\":\"<now>\"}).\n"+
			"KEY is a PEM file or env://VAR; an encrypted key takes its password from COSIGN_PASSWORD,\n"+
			"a prompt on a terminal, or stdin. No transparency-log entry is made.",
		c.stdout)
	keyRef := fs.String("key", "", "private key: PKCS#8 PEM or cosign's encrypted format, a file or env://VAR")
	predicatePath := fs.String("predicate", "", "the predicate: a file holding one JSON object, or - for stdin")
	typ := fs.String("type", "custom", "predicate type: a URI or a short name ("+strings.Join(sigstore.PredicateTypeNames(), "|")+")")
	ann := annotations{}
	fs.Var(ann, "a", "annotation `key=value` put in the statement's subject (repeatable)")
	bundle := fs.Bool("bundle", false, "store a Sigstore bundle v0.3 as a referrer instead of a .att layer")
	newBundle := fs.Bool("new-bundle-format", false, "same as --bundle (sigstore cosign's spelling)")
	noUpload := fs.Bool("no-upload", false, "print the DSSE envelope (the bundle with --bundle) to stdout; write nothing to the registry")
	fs.yes()
	output := c.outputFile(fs)
	var reg registryFlags
	reg.register(fs.FlagSet)
	image, err := oneImage(fs, args)
	if err != nil {
		return err
	}
	if *predicatePath == "" {
		return usagef("--predicate is required")
	}
	if _, err := sigstore.ParsePredicateType(*typ); err != nil {
		return usagef("--type: %v", err)
	}
	if err := output(); err != nil {
		return err
	}
	file, err := readPredicate(*predicatePath, c)
	if err != nil {
		return err
	}
	predicateType, predicate, err := sigstore.AttestationPredicate(*typ, file, time.Now())
	if err != nil {
		return fmt.Errorf("predicate %s: %w", *predicatePath, err)
	}
	key, err := c.loadPrivateKey(*keyRef)
	if err != nil {
		return err
	}
	d, desc, err := reg.resolveImage(ctx, image)
	if err != nil {
		return err
	}
	statement, err := sigstore.NewStatement(d.Context().Name(), desc.Digest, predicateType, predicate, ann.orNil())
	if err != nil {
		return fmt.Errorf("attesting %s: %w", d, err)
	}
	if *bundle || *newBundle {
		return c.attestBundle(ctx, &reg, key, d, desc, statement, predicateType, *predicatePath, *noUpload)
	}
	env, err := sigstore.NewAttestationEnvelope(key, statement)
	if err != nil {
		return fmt.Errorf("attesting %s: %w", d, err)
	}
	if err := fitsVerifiers(*predicatePath, "DSSE envelope", env); err != nil {
		return err
	}
	if *noUpload {
		_, err := fmt.Fprintf(c.stdout, "%s\n", env)
		return err
	}
	where := d.Context().Tag(sigstore.AttestationTag(desc.Digest)).Name()
	added, err := sigstore.AppendAttestation(ctx, d, env, reg.remoteOptions(ctx)...)
	if err != nil {
		return fmt.Errorf("pushing attestation to %s: %w", where, registryFailure(d.Context().Name(), err))
	}
	if added {
		fmt.Fprintf(c.stderr, "Pushed attestation (%s) for %s to %s, and read it back there\n", predicateType, d, where)
	} else {
		fmt.Fprintf(c.stderr, "Attestation for %s already in %s; nothing pushed\n", d, where)
	}
	return nil
}

// attestBundle stores (or prints) the statement as a Sigstore bundle.
func (c *cli) attestBundle(ctx context.Context, reg *registryFlags, key sigstore.PrivateKey, d name.Digest, desc v1.Descriptor,
	statement []byte, predicateType, predicatePath string, noUpload bool) error {
	b, err := sigstore.NewAttestationBundle(key, statement)
	if err != nil {
		return fmt.Errorf("attesting %s: %w", d, err)
	}
	if err := fitsVerifiers(predicatePath, "bundle", b); err != nil {
		return err
	}
	if noUpload {
		_, err := fmt.Fprintf(c.stdout, "%s\n", b)
		return err
	}
	if err := sigstore.WriteAttestationBundle(ctx, d, desc, b, reg.remoteOptions(ctx)...); err != nil {
		return fmt.Errorf("pushing attestation bundle for %s: %w", d, registryFailure(d.Context().Name(), err))
	}
	fmt.Fprintf(c.stderr, "Pushed a Sigstore bundle attesting %s for %s as a referrer in %s\n", predicateType, d, d.Context().Name())
	return nil
}

// readPredicate reads the predicate file, or stdin for "-", up to
// maxPredicateSize.
func readPredicate(path string, c *cli) ([]byte, error) {
	if isStdin(path) {
		b, err := readCappedN(c.stdin, maxPredicateSize)
		if err != nil {
			return nil, fmt.Errorf("reading predicate from stdin: %w", err)
		}
		return b, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading predicate: %w", err)
	}
	defer f.Close()
	b, err := readCappedN(f, maxPredicateSize)
	if err != nil {
		return nil, fmt.Errorf("reading predicate %s: %w", path, err)
	}
	return b, nil
}

// fitsVerifiers refuses an envelope or bundle larger than verifiers read,
// naming the predicate that made it so.
func fitsVerifiers(predicatePath, what string, b []byte) error {
	if len(b) <= sigstore.MaxAttestationSize {
		return nil
	}
	return fmt.Errorf("predicate %s is too large: its signed %s would be %d bytes, more than the %d verifiers read "+
		"(the statement is base64 in it, a third larger than the predicate)", predicatePath, what, len(b), sigstore.MaxAttestationSize)
}
