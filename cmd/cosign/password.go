package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/cosign-dev/cosign/sigstore"
)

// passwordEnv names the environment variable that holds the private key
// password. When it is set, even to "", no prompt is shown.
const passwordEnv = "COSIGN_PASSWORD"

// newKeyPassword returns the password for a key being generated: from
// COSIGN_PASSWORD if set, else asked twice when stdin is a terminal, else
// empty (a plain PKCS#8 key).
func (c *cli) newKeyPassword() ([]byte, error) {
	if pw, ok := c.lookupEnv(passwordEnv); ok {
		return []byte(pw), nil
	}
	if !c.stdinTerminal() {
		return nil, nil
	}
	pw, err := c.prompt("Enter password for private key (empty for an unencrypted key): ")
	if err != nil {
		return nil, err
	}
	again, err := c.prompt("Enter password for private key again: ")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pw, again) {
		return nil, errors.New("passwords do not match")
	}
	return pw, nil
}

// keyPassword returns the password of an encrypted private key: from
// COSIGN_PASSWORD if set, else asked once when stdin is a terminal.
func (c *cli) keyPassword() ([]byte, error) {
	if pw, ok := c.lookupEnv(passwordEnv); ok {
		return []byte(pw), nil
	}
	if !c.stdinTerminal() {
		return nil, fmt.Errorf("%w: the key is encrypted; set %s or run from a terminal", sigstore.ErrPasswordRequired, passwordEnv)
	}
	return c.prompt("Enter password for private key: ")
}

func (c *cli) prompt(text string) ([]byte, error) {
	fmt.Fprint(c.stderr, text)
	pw, err := c.readPassword()
	fmt.Fprintln(c.stderr)
	if err != nil {
		return nil, fmt.Errorf("reading password: %w", err)
	}
	return pw, nil
}

// loadPrivateKey reads and decrypts a private key file.
func (c *cli) loadPrivateKey(path string) (sigstore.PrivateKey, error) {
	pemBytes, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	key, err := sigstore.ParsePrivateKey(pemBytes, c.keyPassword)
	if err != nil {
		return nil, fmt.Errorf("reading private key %s: %w", path, err)
	}
	return key, nil
}

// loadPublicKey reads a PKIX "PUBLIC KEY" PEM file.
func loadPublicKey(path string) (sigstore.PublicKey, error) {
	pemBytes, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	key, err := sigstore.ParsePublicKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("reading public key %s: %w", path, err)
	}
	return key, nil
}

func readKeyFile(path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: -key is required", errUsage)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	defer f.Close()
	b, err := readCapped(f)
	if err != nil {
		return nil, fmt.Errorf("reading key %s: %w", path, err)
	}
	return b, nil
}
