package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// RunOptions are what a process running the proxy of a configuration
// file says besides the file.
type RunOptions struct {
	// ConfigPath is the YAML configuration file.
	ConfigPath string
	// Listen, when set, overrides the configuration's listen address.
	Listen string
	// Stderr receives the logs (buffered, flushed at exit) and the start
	// banner.
	Stderr io.Writer
	// Reload, when it delivers, reloads the configuration (SIGHUP).
	Reload <-chan struct{}
	// PollInterval is how often the configuration's files are looked at
	// for changes; 0 means 2s.
	PollInterval time.Duration
	// Started, when set, is called with the addresses bound, once serving.
	Started func(addr, metricsAddr string)
}

// Check loads the configuration file and everything it names (keys,
// credentials, certificates) as Run would, without serving.
func Check(path string) error {
	cfg, err := LoadConfig(path)
	if err != nil {
		return err
	}
	_, err = New(cfg, WithLogger(slog.New(slog.DiscardHandler)))
	return err
}

// Run serves the configuration file's proxy until ctx ends: HTTPS when it
// has tls (the certificate files are read again when they change), /metrics
// on metricsListen when set. It reloads the configuration when o.Reload
// delivers or when any file it was read from changes; a configuration that
// does not load is logged and the one in force stays. When ctx ends it
// stops accepting, lets requests in flight finish (10 s at most), flushes
// the logs and returns nil.
func Run(ctx context.Context, o RunOptions) error {
	cfg, err := LoadConfig(o.ConfigPath)
	if err != nil {
		return err
	}
	if o.Listen != "" {
		cfg.Listen = o.Listen
	}
	logs := NewLogWriter(o.Stderr, 0)
	defer logs.Close()
	logger := newLogger(logs, cfg.Log)
	srv, err := New(cfg, WithLogger(logger))
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", srv.Addr())
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	scheme := "http"
	if cfg.TLS != nil {
		tc, err := newCertReloader(cfg.TLS, logger).config()
		if err != nil {
			ln.Close()
			return err
		}
		ln, scheme = tls.NewListener(ln, tc), "https"
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	metricsAddr := ""
	if cfg.MetricsListen != "" {
		mln, err := lc.Listen(ctx, "tcp", cfg.MetricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listening for metrics: %w", err)
		}
		metricsAddr = mln.Addr().String()
		wg.Go(func() {
			if err := srv.serveMetrics(ctx, mln); err != nil {
				errc <- err
				cancel()
			}
		})
	}
	fmt.Fprintf(o.Stderr, "cosign proxy listening on %s://%s (config %s)\n", scheme, ln.Addr(), o.ConfigPath)
	if o.Started != nil {
		o.Started(ln.Addr().String(), metricsAddr)
	}
	wg.Go(func() { srv.watch(ctx, o, cfg.Files()) })
	if err := srv.Serve(ctx, ln); err != nil {
		errc <- err
	}
	cancel()
	wg.Wait()
	close(errc)
	return errors.Join(drain(errc)...)
}

func drain(c <-chan error) []error {
	var out []error
	for err := range c {
		out = append(out, err)
	}
	return out
}

// newLogger makes the slog logger a configuration asks for.
func newLogger(w io.Writer, c LogConfig) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	switch c.Level {
	case "debug":
		opts.Level = slog.LevelDebug
	case "warn":
		opts.Level = slog.LevelWarn
	case "error":
		opts.Level = slog.LevelError
	}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serveMetrics serves /metrics alone on ln until ctx ends.
func (s *Server) serveMetrics(ctx context.Context, ln net.Listener) error {
	return s.serveHandler(ctx, ln, s.MetricsHandler())
}

// watch reloads the configuration when o.Reload delivers or a file of it
// changes (size or modification time), until ctx ends.
func (s *Server) watch(ctx context.Context, o RunOptions, files []string) {
	interval := o.PollInterval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	seen := stamps(files)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		why := ""
		select {
		case <-ctx.Done():
			return
		case <-o.Reload:
			why = "signal"
		case <-t.C:
			now := stamps(files)
			if changed := now.changedFrom(seen); changed != "" {
				why = changed + " changed"
			}
		}
		if why == "" {
			continue
		}
		next, err := s.reloadFile(o)
		if err != nil {
			s.metrics.reloadErrors.Inc()
			s.log.Error("configuration not reloaded; the one in force stays", slog.String("trigger", why), slog.String("error", err.Error()))
			seen = stamps(files) // do not retry the same broken files every tick
			continue
		}
		files, seen = next, stamps(next)
		s.log.Info("configuration reloaded", slog.String("trigger", why), slog.String("config", o.ConfigPath))
	}
}

// reloadFile loads the configuration file again and puts it in force. It
// returns the files the new configuration was read from.
func (s *Server) reloadFile(o RunOptions) ([]string, error) {
	cfg, err := LoadConfig(o.ConfigPath)
	if err != nil {
		return nil, err
	}
	if o.Listen != "" {
		cfg.Listen = o.Listen
	}
	if err := s.Reload(cfg); err != nil {
		return nil, err
	}
	return cfg.Files(), nil
}

// fileStamps are the size and modification time of files, "" for one that
// cannot be read.
type fileStamps map[string]string

func stamps(files []string) fileStamps {
	out := make(fileStamps, len(files))
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			out[f] = fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
		} else {
			out[f] = ""
		}
	}
	return out
}

// changedFrom names a file whose stamp differs from old, or "".
func (f fileStamps) changedFrom(old fileStamps) string {
	for name, st := range f {
		if old[name] != st {
			return name
		}
	}
	return ""
}

// certReloader serves the certificate of tls.cert and tls.key, and checks
// client certificates against tls.clientCA, each read again when its files
// change (looked at at most once a second, on handshakes): cert-manager
// rotates certificates, and a CA taken out of clientCA must stop admitting
// clients at once.
type certReloader struct {
	cfg *TLSConfig
	log *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	pool    *x509.CertPool
	stamp   fileStamps
	checked time.Time
}

func newCertReloader(c *TLSConfig, log *slog.Logger) *certReloader {
	return &certReloader{cfg: c, log: log}
}

// config is the server's TLS configuration: TLS 1.2 or later, the
// certificate from the files, and client certificates required and checked
// against clientCA when it is set.
func (c *certReloader) config() (*tls.Config, error) {
	if err := c.refresh(); err != nil {
		return nil, err
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if err := c.refresh(); err != nil {
			return nil, err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		tc := base.Clone()
		tc.GetConfigForClient = nil
		tc.Certificates = []tls.Certificate{*c.cert}
		if c.pool != nil {
			tc.ClientCAs, tc.ClientAuth = c.pool, tls.RequireAndVerifyClientCert
		}
		return tc, nil
	}
	return base, nil
}

// refresh reads the files again when they changed. A set that does not
// load keeps the previous one in force (mid-rotation), with a warning;
// the first one must load.
func (c *certReloader) refresh() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && time.Since(c.checked) < time.Second {
		return nil
	}
	c.checked = time.Now()
	files := []string{c.cfg.Cert, c.cfg.Key}
	if c.cfg.ClientCA != "" {
		files = append(files, c.cfg.ClientCA)
	}
	now := stamps(files)
	if c.cert != nil && now.changedFrom(c.stamp) == "" {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(c.cfg.Cert, c.cfg.Key)
	var pool *x509.CertPool
	if err == nil && c.cfg.ClientCA != "" {
		pool, err = loadCertPool(c.cfg.ClientCA)
	}
	if err != nil {
		if c.cert != nil {
			c.log.Warn("TLS certificate not reloaded; the previous certificate and client CA stay in force", slog.String("error", err.Error()))
			c.stamp = now
			return nil
		}
		return fmt.Errorf("tls: %w", err)
	}
	if c.cert != nil {
		c.log.Info("TLS certificate and client CA reloaded", slog.String("cert", c.cfg.Cert))
	}
	c.cert, c.pool, c.stamp = &cert, pool, now
	return nil
}
