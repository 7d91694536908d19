// Command cosign signs container images and stores the signatures in the
// OCI registry beside them, verifies them, and runs a registry proxy that
// verifies signatures on every manifest pull.
//
// The commands only parse flags and wire packages together: the signature
// format lives in package sigstore, the decision in package verifier, the
// proxy in package proxy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"golang.org/x/term"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, c *cli, args []string) error
}

// commands lists the subcommands in the order help shows them.
var commands = []command{
	{"generate-key-pair", "write a new key pair: cosign.key (private) and cosign.pub", runGenerateKeyPair},
	{"sign", "sign an image and store the signature in its registry", runSign},
	{"generate", "print the payload sign would sign, to sign with another tool", runGenerate},
	{"upload", "store a signature made elsewhere", runUpload},
	{"verify", "verify an image's signatures against a public key", runVerify},
	{"download", "print an image's signatures, one JSON object per line", runDownload},
	{"proxy", "run a registry proxy that refuses unsigned digests", runProxy},
	{"version", "print the version", runVersion},
}

// cli holds what a command reads and writes, so tests can run commands in
// process.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
	// stdinTerminal reports whether stdin is a terminal (password prompts).
	stdinTerminal func() bool
	// readPassword reads a line from the terminal without echo.
	readPassword func() ([]byte, error)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	c := &cli{
		stdin:         os.Stdin,
		stdout:        os.Stdout,
		stderr:        os.Stderr,
		lookupEnv:     os.LookupEnv,
		stdinTerminal: func() bool { return term.IsTerminal(int(os.Stdin.Fd())) },
		readPassword:  func() ([]byte, error) { return readPassword(ctx, int(os.Stdin.Fd())) },
	}
	code := c.main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// readPassword reads a line from the terminal fd without echo. Ctrl-C
// (which ends ctx, since main handles SIGINT) abandons the read and restores
// the terminal, so an interrupted prompt neither hangs nor leaves echo off.
func readPassword(ctx context.Context, fd int) ([]byte, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return nil, err
	}
	type result struct {
		pw  []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		pw, err := term.ReadPassword(fd)
		done <- result{pw, err}
	}()
	select {
	case r := <-done:
		return r.pw, r.err
	case <-ctx.Done():
		_ = term.Restore(fd, state)
		return nil, ctx.Err()
	}
}

// main runs one command line and returns the exit code: 0 success, 1 the
// command failed, 2 the command line is wrong.
func (c *cli) main(ctx context.Context, args []string) int {
	if len(args) == 0 {
		c.usage()
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return c.main(ctx, []string{args[1], "-h"})
		}
		c.usage()
		return 0
	}
	cmd := lookup(args[0])
	if cmd == nil {
		fmt.Fprintf(c.stderr, "cosign: unknown command %q\n\n", args[0])
		c.usage()
		return 2
	}
	err := cmd.run(ctx, c, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(c.stderr, "cosign %s: %v\n", cmd.name, err)
		return 2
	default:
		fmt.Fprintf(c.stderr, "cosign %s: %v\n", cmd.name, err)
		return 1
	}
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

func (c *cli) usage() {
	fmt.Fprintf(c.stderr, "cosign: container signing, verification and storage in an OCI registry\n\n")
	fmt.Fprintf(c.stderr, "Usage: cosign COMMAND [flags] [IMAGE]\n\nCommands:\n")
	for _, cmd := range commands {
		fmt.Fprintf(c.stderr, "  %-18s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintf(c.stderr, "  %-18s %s\n", "help", "show this text, or a command's flags (cosign help sign)")
	fmt.Fprintf(c.stderr, "\nRun 'cosign COMMAND -h' for a command's flags.\n")
}

// parseErr turns a flag parsing error into a usage error (flag already
// printed the details and the usage); -h passes through as flag.ErrHelp.
func parseErr(err error) error {
	if errors.Is(err, flag.ErrHelp) || errors.Is(err, errUsage) {
		return err
	}
	return fmt.Errorf("%w: %w", errUsage, err)
}

func runVersion(_ context.Context, c *cli, args []string) error {
	fs := newFlagSet("version", "", "Print the version of this binary.", c.stderr)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return parseErr(err)
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: version takes no arguments", errUsage)
	}
	fmt.Fprintf(c.stdout, "cosign %s\n", buildVersion())
	return nil
}

// buildVersion is the -X main.version value, else the module version Go
// recorded (go install ...@version), else "devel".
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
