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
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, c *cli, args []string) error
	// server commands stop gracefully on a signal and take their time.
	server bool
}

// commands lists the subcommands in the order help shows them.
var commands = []command{
	{name: "generate-key-pair", summary: "write a new key pair: cosign.key (private) and cosign.pub", run: runGenerateKeyPair},
	{name: "public-key", summary: "print the public key of a private key", run: runPublicKey},
	{name: "sign", summary: "sign an image and store the signature in its registry", run: runSign},
	{name: "generate", summary: "print the payload sign would sign, to sign with another tool", run: runGenerate},
	{name: "upload", summary: "store a signature made elsewhere (also: attach signature)", run: runUpload},
	{name: "attach", summary: "attach signature: sigstore cosign's spelling of upload", run: runAttach},
	{name: "attest", summary: "sign an in-toto attestation (a predicate file) for an image and store it", run: runAttest},
	{name: "verify", summary: "verify an image's signatures against a public key or a certificate identity", run: runVerify},
	{name: "verify-attestation", summary: "verify an image's attestations of a predicate type and print them", run: runVerifyAttestation},
	{name: "download", summary: "print an image's signatures, one JSON object per line (also: download signature)", run: runDownload},
	{name: "proxy", summary: "run a registry proxy that refuses unsigned digests", run: runProxy, server: true},
	{name: "version", summary: "print the version and the commit it was built from", run: runVersion},
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
	// closeOutput, if set, closes the --output-file stdout went to.
	closeOutput func() error
}

// signalError is the cause of the context of a command a signal stopped.
type signalError struct{ sig syscall.Signal }

func (e signalError) Error() string {
	if e.sig == syscall.SIGINT {
		return "interrupted"
	}
	return "terminated"
}

// exitCode is the shell's convention for a process a signal ended.
func (e signalError) exitCode() int { return 128 + int(e.sig) }

// errInterrupted is the cause of a context that Ctrl-C ended.
var errInterrupted error = signalError{syscall.SIGINT}

// graceTime is how long a command that is not a server has, after the
// first Ctrl-C, to stop by itself before the process exits anyway.
const graceTime = 3 * time.Second

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	server := len(os.Args) > 1 && lookup(os.Args[1]) != nil && lookup(os.Args[1]).server
	go func() {
		s := (<-signals).(syscall.Signal)
		cause := signalError{s}
		cancel(cause)
		// A second signal, or a command that does not stop in time (it
		// should: everything it waits for ends with ctx), ends the process.
		var late <-chan time.Time
		if !server {
			late = time.After(graceTime)
		}
		select {
		case <-signals:
		case <-late:
		}
		fmt.Fprintf(os.Stderr, "\ncosign: %v\n", cause)
		os.Exit(cause.exitCode())
	}()
	c := &cli{
		stdin:         os.Stdin,
		stdout:        os.Stdout,
		stderr:        os.Stderr,
		lookupEnv:     os.LookupEnv,
		stdinTerminal: func() bool { return term.IsTerminal(int(os.Stdin.Fd())) },
		readPassword:  func() ([]byte, error) { return readPassword(ctx, int(os.Stdin.Fd())) },
	}
	code := c.main(ctx, os.Args[1:])
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
		return nil, context.Cause(ctx)
	}
}

// main runs one command line and returns the exit code: 0 success, 1 the
// command failed, 2 the command line is wrong, 130 interrupted (Ctrl-C).
func (c *cli) main(ctx context.Context, args []string) int {
	if len(args) == 0 {
		c.usage(c.stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return c.main(ctx, []string{args[1], "-h"})
		}
		c.usage(c.stdout)
		return 0
	case "-version", "--version":
		args = append([]string{"version"}, args[1:]...)
	}
	cmd := lookup(args[0])
	if cmd == nil {
		fmt.Fprintf(c.stderr, "cosign: unknown command %q\nRun 'cosign help' for the list of commands.\n", args[0])
		return 2
	}
	err := cmd.run(ctx, c, args[1:])
	if c.closeOutput != nil {
		if cerr := c.closeOutput(); cerr != nil && err == nil {
			err = cerr
		}
	}
	var sig signalError
	if cause := context.Cause(ctx); errors.As(cause, &sig) && (err != nil || sig.sig == syscall.SIGINT) {
		// However the command ended, say that it was stopped; a server
		// stopped by SIGTERM (its normal end) exits 0.
		fmt.Fprintf(c.stderr, "cosign %s: %v\n", cmd.name, sig)
		return sig.exitCode()
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(c.stderr, "cosign %s: %v\nRun 'cosign %s -h' for help.\n", cmd.name, err, cmd.name)
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

func (c *cli) usage(w io.Writer) {
	fmt.Fprintf(w, "cosign: container signing, verification and storage in an OCI registry\n\n")
	fmt.Fprintf(w, "Usage: cosign COMMAND [flags] [IMAGE]\n\nCommands:\n")
	for _, cmd := range commands {
		fmt.Fprintf(w, "  %-18s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintf(w, "  %-18s %s\n", "help", "show this text, or a command's flags (cosign help sign)")
	fmt.Fprintf(w, "\nRun 'cosign COMMAND -h' for a command's flags; 'cosign --version' for the version.\n")
	fmt.Fprintf(w, "Exit status: 0 success, 1 failure, 2 a wrong command line, 130 interrupted.\n")
}

func runVersion(_ context.Context, c *cli, args []string) error {
	fs := newFlagSet("version", "", "Print the version of this binary, the commit it was built from and the Go version.", c.stdout)
	if err := fs.noArgs(args); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "cosign %s\n", buildVersion())
	return nil
}

// buildVersion is the version (-X main.version, else the module version Go
// recorded for go install ...@version, else "devel"), then the commit, its
// time and whether the tree was modified, as go build records them from
// git, and the Go version.
func buildVersion() string {
	v := version
	bi, ok := debug.ReadBuildInfo()
	if v == "" && ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	if v == "" {
		v = "devel"
	}
	var details []string
	if ok {
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if rev := settings["vcs.revision"]; rev != "" {
			details = append(details, "commit "+rev)
			if t := settings["vcs.time"]; t != "" {
				details = append(details, t)
			}
			if settings["vcs.modified"] == "true" {
				details = append(details, "modified")
			}
		}
	}
	details = append(details, runtime.Version())
	return v + " (" + strings.Join(details, ", ") + ")"
}
