package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cosign-dev/cosign/sigstore"
)

func runGenerateKeyPair(_ context.Context, c *cli, args []string) error {
	fs := newFlagSet("generate-key-pair", "[--output-key-prefix PREFIX] [--force]",
		"Write a new Ed25519 key pair: PREFIX.key, the private key (mode 0600), and PREFIX.pub,\n"+
			"the PKIX public key. The password comes from COSIGN_PASSWORD when it is set (even empty),\n"+
			"else from a prompt (asked twice) when stdin is a terminal, else from stdin, as in\n"+
			"'echo pw | cosign generate-key-pair' (one trailing newline is dropped; empty stdin is\n"+
			"refused). A password encrypts the key in cosign's format (scrypt + secretbox); the empty\n"+
			"password (COSIGN_PASSWORD= or empty answers at the prompt) writes a plain PKCS#8 PEM key.\n"+
			"Whether the key written is encrypted is always said on stderr.",
		c.stdout)
	prefix := fs.String("output-key-prefix", "cosign", "file name prefix of the key pair")
	force := fs.Bool("force", false, "overwrite existing key files")
	fs.yes()
	if err := fs.noArgs(args); err != nil {
		return err
	}
	privPath, pubPath := *prefix+".key", *prefix+".pub"
	if !*force {
		for _, p := range []string{privPath, pubPath} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s already exists (use --force to overwrite)", p)
			}
		}
	}
	password, err := c.newKeyPassword()
	if err != nil {
		return err
	}
	privPEM, pubPEM, err := sigstore.GenerateKeyPair(password)
	if err != nil {
		return fmt.Errorf("generating key pair: %w", err)
	}
	if err := writeKeyFile(privPath, privPEM, 0o600, *force); err != nil {
		return err
	}
	if err := writeKeyFile(pubPath, pubPEM, 0o644, *force); err != nil {
		return err
	}
	if len(password) > 0 {
		fmt.Fprintf(c.stderr, "Private key written to %s, encrypted with the password\n", privPath)
	} else {
		fmt.Fprintf(c.stderr, "Private key written to %s, NOT encrypted (the password is empty): anyone who can read the file can sign\n", privPath)
	}
	fmt.Fprintf(c.stderr, "Public key written to %s\n", pubPath)
	return nil
}

// writeKeyFile writes data with the given mode. Without force it refuses an
// existing file (O_EXCL, so a file created meanwhile is not clobbered); with
// force it replaces the file and resets its mode.
func writeKeyFile(path string, data []byte, mode os.FileMode, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("replacing %s: %w", path, err)
		}
	}
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
