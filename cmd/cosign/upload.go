package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

func runUpload(ctx context.Context, c *cli, args []string) error {
	return upload(ctx, c, "upload", args)
}

// runAttach is sigstore cosign's "attach signature --signature F IMAGE".
func runAttach(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 || args[0] != "signature" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Fprintf(c.stdout, "Usage: cosign attach signature --signature FILE|- IMAGE [--payload FILE] [--key PUB]\n\n"+
				"sigstore cosign's spelling of 'cosign upload'; see 'cosign upload -h'.\n")
			return flag.ErrHelp
		}
		return usagef("attach supports only 'attach signature' (the same as upload)")
	}
	return upload(ctx, c, "attach signature", args[1:])
}

func upload(ctx context.Context, c *cli, name string, args []string) error {
	fs := newFlagSet(name, "-signature FILE|- IMAGE [-payload FILE] [-a key=value]... [-key PUB]",
		"Store a signature made elsewhere (e.g. by openssl over 'cosign generate IMAGE') for the digest\n"+
			"IMAGE resolves to. The signature is raw bytes or base64, read from FILE or from stdin for\n"+
			"'-' (or '--'). It is stored over the payload cosign generate would print (with the same -a\n"+
			"annotations it was signed with), or over -payload. A signature that no supported key type\n"+
			"could have made is refused; with -key, one that does not verify over that payload with PUB\n"+
			"is refused too. 'cosign attach signature' is the same command.",
		c.stdout)
	sigPath := fs.String("signature", "", "signature file, raw or base64; - (or --) reads stdin")
	payloadPath := fs.String("payload", "", "the signed payload file (default: regenerate it from IMAGE and -a)")
	ann := annotations{}
	fs.Var(ann, "a", "annotation `key=value` of the regenerated payload (repeatable)")
	keyRef := fs.String("key", "", "public key (PEM file or env://VAR): refuse a signature it does not verify")
	fs.yes()
	var reg registryFlags
	reg.register(fs.FlagSet)
	image, err := oneImage(fs, args)
	if err != nil {
		return err
	}
	if *sigPath == "" {
		return usagef("-signature is required")
	}
	if isStdin(*sigPath) && isStdin(*payloadPath) {
		return usagef("-signature and -payload cannot both read stdin")
	}
	if *payloadPath != "" && len(ann) > 0 {
		return usagef("-a annotates the regenerated payload; -payload is used as given")
	}
	var pub sigstore.PublicKey
	if *keyRef != "" {
		if pub, err = c.loadPublicKey(*keyRef); err != nil {
			return err
		}
	}
	sig, err := c.readSignature(*sigPath)
	if err != nil {
		return err
	}
	if err := sigstore.CheckSignatureEncoding(sig); err != nil {
		return fmt.Errorf("refusing signature %s, which could never verify: %w", *sigPath, err)
	}
	d, desc, err := reg.resolveImage(ctx, image)
	if err != nil {
		return err
	}
	payload, err := c.payloadFor(*payloadPath, d.Context().Name(), desc.Digest, ann)
	if err != nil {
		return err
	}
	if pub != nil && pub.Verify(payload, sig) != nil {
		what := "the payload for " + d.String()
		if len(ann) > 0 {
			what += " with -a " + ann.String()
		}
		if *payloadPath != "" {
			what = "the payload " + *payloadPath
		}
		return fmt.Errorf("refusing signature %s: it does not verify with the key %s over %s "+
			"(was it signed with other -a annotations, or for another image?)", *sigPath, *keyRef, what)
	}
	return c.appendSignature(ctx, &reg, d, payload, sig)
}

// readSignature reads a signature file (stdin for "-" or "--"), raw or base64.
func (c *cli) readSignature(path string) ([]byte, error) {
	b, err := readInput(path, c.stdin)
	if err != nil {
		return nil, fmt.Errorf("reading signature %s: %w", path, err)
	}
	sig, err := decodeSignature(b)
	if err != nil {
		return nil, fmt.Errorf("reading signature %s: %w", path, err)
	}
	return sig, nil
}

// payloadFor returns the payload file's bytes, or the payload NewPayload
// makes for the image when path is "". A payload file that is not a valid
// simple-signing document, or names another digest, is used as given with a
// warning: the user decides what to store, verify decides what it proves.
func (c *cli) payloadFor(path, reference string, digest v1.Hash, ann annotations) ([]byte, error) {
	if path == "" {
		p, err := sigstore.NewPayload(reference, digest, ann.orNil())
		if err != nil {
			return nil, fmt.Errorf("making payload: %w", err)
		}
		return p, nil
	}
	b, err := readInput(path, c.stdin)
	if err != nil {
		return nil, fmt.Errorf("reading payload %s: %w", path, err)
	}
	if len(b) > sigstore.MaxPayloadSize {
		return nil, fmt.Errorf("payload %s is larger than %d bytes", path, sigstore.MaxPayloadSize)
	}
	p, err := sigstore.ParsePayload(b)
	switch {
	case err != nil:
		fmt.Fprintf(c.stderr, "warning: payload %s is not a valid signature payload: %v\n", path, err)
	case p.Digest != digest:
		fmt.Fprintf(c.stderr, "warning: payload %s is for %s, the image is %s\n", path, p.Digest, digest)
	}
	return b, nil
}

// appendSignature stores one signature in d's .sig manifest and says so.
func (c *cli) appendSignature(ctx context.Context, reg *registryFlags, d name.Digest, payload, sig []byte) error {
	h, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return err
	}
	where := d.Context().Tag(sigstore.SignatureTag(h)).Name()
	added, err := sigstore.AppendSignature(ctx, d, payload, sig, reg.remoteOptions(ctx)...)
	if err != nil {
		return fmt.Errorf("pushing signature to %s: %w", where, registryFailure(d.Context().Name(), err))
	}
	if added {
		fmt.Fprintf(c.stderr, "Pushed signature for %s to %s, and read it back there\n", d, where)
	} else {
		fmt.Fprintf(c.stderr, "Signature for %s already in %s; nothing pushed\n", d, where)
	}
	return nil
}
