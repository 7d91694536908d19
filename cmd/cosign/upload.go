package main

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cosign-dev/cosign/sigstore"
)

func runUpload(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("upload", "-signature FILE|- IMAGE [-payload FILE] [-a key=value]...",
		"Store a signature made elsewhere (e.g. by openssl over 'cosign generate IMAGE') for the digest\n"+
			"IMAGE resolves to. The signature is raw bytes or base64, read from FILE or from stdin for\n"+
			"'-' (or '--'). It is stored over the payload cosign generate would print, or over -payload.",
		c.stderr)
	sigPath := fs.String("signature", "", "signature file, raw or base64; - (or --) reads stdin")
	payloadPath := fs.String("payload", "", "the signed payload file (default: regenerate it from IMAGE and -a)")
	ann := annotations{}
	fs.Var(ann, "a", "annotation `key=value` of the regenerated payload (repeatable)")
	var reg registryFlags
	reg.register(fs)
	image, err := oneImage(fs, args)
	if err != nil {
		return err
	}
	if *sigPath == "" {
		return fmt.Errorf("%w: -signature is required", errUsage)
	}
	if isStdin(*sigPath) && isStdin(*payloadPath) {
		return fmt.Errorf("%w: -signature and -payload cannot both read stdin", errUsage)
	}
	if *payloadPath != "" && len(ann) > 0 {
		return fmt.Errorf("%w: -a annotates the regenerated payload; -payload is used as given", errUsage)
	}
	sig, err := c.readSignature(*sigPath)
	if err != nil {
		return err
	}
	d, desc, err := reg.resolveImage(ctx, image)
	if err != nil {
		return err
	}
	payload, err := c.payloadFor(*payloadPath, d.Context().Name(), desc.Digest, ann)
	if err != nil {
		return err
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
		fmt.Fprintf(c.stderr, "Pushed signature for %s to %s\n", d, where)
	} else {
		fmt.Fprintf(c.stderr, "Signature for %s already in %s; nothing pushed\n", d, where)
	}
	return nil
}
