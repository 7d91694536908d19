package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cosign-dev/cosign/proxy"
	"github.com/cosign-dev/cosign/proxy/demo"
)

// demoListen is where the embedded demo proxy listens by default.
const demoListen = "127.0.0.1:5050"

func runProxy(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet("proxy", "[--config FILE [--check]] [--listen ADDR]",
		"Run a registry proxy that verifies signatures on every manifest pull and refuses digests\n"+
			"no trusted key signed. With --config, serve the upstreams and policies of that YAML file;\n"+
			"SIGHUP, or a change of the file or of any key, credential or certificate file it names,\n"+
			"reloads it (a file that does not load is logged and the configuration in force stays).\n"+
			"With --check, load the file and everything it names, say whether it is valid, and exit.\n"+
			"Without --config, run the embedded demo: an in-process upstream registry holding a signed\n"+
			"and an unsigned image, behind the proxy, with the pull commands to try (no network needed).\n"+
			"SIGINT or SIGTERM stops it: no new connections, requests in flight finish (10s at most).",
		c.stdout)
	configPath := fs.String("config", "", "proxy configuration file (YAML)")
	listen := fs.String("listen", "", "address to listen on (default: the config's, or "+demoListen+" for the demo)")
	check := fs.Bool("check", false, "with --config: validate the configuration and exit 0 (valid) or 1")
	if err := fs.noArgs(args); err != nil {
		return err
	}
	if *configPath == "" {
		if *check {
			return fmt.Errorf("%w: --check needs --config", errUsage)
		}
		return c.runDemo(ctx, *listen)
	}
	if *check {
		if err := proxy.Check(*configPath); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s: valid\n", *configPath)
		return nil
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	err := proxy.Run(ctx, proxy.RunOptions{ConfigPath: *configPath, Listen: *listen, Stderr: c.stderr, Reload: reload})
	if err == nil {
		fmt.Fprintln(c.stderr, "cosign proxy stopped")
	}
	return err
}

// runDemo runs the embedded demo until ctx ends.
func (c *cli) runDemo(ctx context.Context, listen string) error {
	if listen == "" {
		listen = demoListen
	}
	d, err := demo.Start(ctx, listen)
	if err != nil {
		return err
	}
	defer d.Close()
	logs, opt := c.proxyLogger()
	defer logs.Close()
	srv, err := proxy.New(d.Config, opt)
	if err != nil {
		return err
	}
	notes := []string{
		fmt.Sprintf("Demo upstream registry: http://%s (in process), policy: %s/demo/** must be signed by the demo key:", d.Upstream, d.Upstream),
		strings.TrimSpace(string(d.PublicKey)),
		"Try (the first pull is admitted, the second refused with 403 DENIED):",
	}
	for _, cmd := range d.Commands {
		notes = append(notes, "  "+cmd)
	}
	return c.serve(ctx, srv, notes...)
}

// proxyLogger sends the proxy's access log and warnings to stderr, in
// batches: a write system call per request would cost the warm pull path
// about a quarter of the proxy's own time. Close the writer to flush.
func (c *cli) proxyLogger() (*proxy.LogWriter, proxy.Option) {
	w := proxy.NewLogWriter(c.stderr, 0)
	return w, proxy.WithLogger(slog.New(slog.NewTextHandler(w, nil)))
}

// serve listens on the server's address and serves until ctx ends, then
// shuts down gracefully. It prints where it listens and the lines in notes.
func (c *cli) serve(ctx context.Context, srv *proxy.Server, notes ...string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", srv.Addr())
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	fmt.Fprintf(c.stderr, "cosign proxy listening on http://%s (Ctrl-C to stop)\n", ln.Addr())
	for _, n := range notes {
		fmt.Fprintln(c.stderr, n)
	}
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	fmt.Fprintln(c.stderr, "cosign proxy stopped")
	return nil
}
