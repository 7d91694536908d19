package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cosign-dev/cosign/proxy"
)

// Binaries of the peers, as Debian installs them.
const (
	registryBin   = "/usr/bin/docker-registry"
	nginxBin      = "/usr/sbin/nginx"
	skopeoBin     = "/usr/bin/skopeo"
	containerdBin = "/usr/bin/containerd"
	ctrBin        = "/usr/bin/ctr"
)

// server is a started component listening on a loopback address. proc is
// nil for a proxy served inside the bench process (-profile).
type server struct {
	*proc
	addr string // 127.0.0.1:port
}

// url is "http://<addr>".
func (s *server) url() string { return "http://" + s.addr }

// startRegistry starts docker-registry with its own storage under dir. With
// remote set, it is a pull-through cache of that URL.
func startRegistry(ctx context.Context, dir, name, remote string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	storage := filepath.Join(dir, name+"-storage")
	if err := os.MkdirAll(storage, 0o755); err != nil {
		return nil, fmt.Errorf("%s storage: %w", name, err)
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: %s
  secret: bench-only-secret
`, storage, loopback(port))
	if remote != "" {
		cfg += fmt.Sprintf("proxy:\n  remoteurl: %s\n", remote)
	}
	cfgPath := filepath.Join(dir, name+".yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("%s config: %w", name, err)
	}
	return startServer(ctx, port, 20*time.Second, dir, name, nil, registryBin, "serve", cfgPath)
}

// startNginx starts nginx as a plain reverse proxy to upstream, with the
// settings a user would write: defaults plus proxy_pass.
func startNginx(ctx context.Context, dir, upstream string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	prefix := filepath.Join(dir, "nginx")
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			return nil, fmt.Errorf("nginx temp dir: %w", err)
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		// Workers would otherwise drop to "nobody" and lose access to the
		// temporary directories of the workspace.
		user = "user root;\n"
	}
	conf := fmt.Sprintf(`%sworker_processes auto;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 1024; }
http {
  access_log %[2]s/access.log;
  client_body_temp_path %[2]s/body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
  server {
    listen %[3]s;
    location / {
      proxy_pass http://%[4]s;
    }
  }
}
`, user, prefix, loopback(port), upstream)
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("nginx config: %w", err)
	}
	return startServer(ctx, port, 20*time.Second, dir, "nginx", nil, nginxBin,
		"-c", confPath, "-p", prefix, "-e", filepath.Join(prefix, "error.log"), "-g", "daemon off;")
}

// proxyConfig is the YAML of the cosign proxy in front of one upstream:
// clients name the registry "registry", the proxy reaches it at url, and
// every repository of that registry needs a signature by pubKey.
func proxyConfig(listen, registry, url, pubKey string) string {
	return fmt.Sprintf(`listen: %s
upstreams:
  - registry: %s
    url: %s
defaultUpstream: %[2]s
policies:
  - name: bench
    match: ["%[2]s/**"]
    keys: [%[4]s]
    threshold: 1
    mode: enforce
defaultPolicy: deny
cache: {size: 100000, ttl: 1h, negativeTTL: 30s}
`, listen, registry, url, pubKey)
}

// startProxy runs `cosign proxy --config` as a subprocess, so that its
// memory can be read from /proc.
func startProxy(ctx context.Context, dir, name, cosign, registry, url, pubKey string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, name+".yaml")
	cfg := proxyConfig(loopback(port), registry, url, pubKey)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("%s config: %w", name, err)
	}
	return startServer(ctx, port, 30*time.Second, dir, name, nil, cosign, "proxy", "--config", cfgPath)
}

// startProxyInProcess serves the same configuration from inside the bench
// process, so that -profile sees the proxy's code. Its access log goes to
// DIR/NAME.log as the subprocess's does. There is no process to read the
// memory of: case 4 reports no RSS in this mode.
func startProxyInProcess(ctx context.Context, dir, name, registry, url, pubKey string) (*server, func(), error) {
	port, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	cfgPath := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(proxyConfig(loopback(port), registry, url, pubKey)), 0o644); err != nil {
		return nil, nil, fmt.Errorf("%s config: %w", name, err)
	}
	cfg, err := proxy.LoadConfig(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, nil, err
	}
	srv, err := proxy.New(cfg, proxy.WithLogger(slog.New(slog.NewTextHandler(logf, nil))))
	if err != nil {
		logf.Close()
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		logf.Close()
		return nil, nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		_ = srv.Serve(sctx, ln)
		logf.Close()
		close(done)
	}()
	stop := func() { cancel(); <-done }
	return &server{addr: ln.Addr().String()}, stop, nil
}

// buildCosign compiles ./cmd/cosign of the module into dir.
func buildCosign(ctx context.Context, repo, dir string) (string, error) {
	bin := filepath.Join(dir, "cosign")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/cosign")
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/cosign: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// startServer starts bin in dir as name and waits up to wait for its /v2/
// on the loopback port; a server that does not answer is stopped.
func startServer(ctx context.Context, port int, wait time.Duration, dir, name string, env []string, bin string, args ...string) (*server, error) {
	p, err := startProc(dir, name, env, bin, args...)
	if err != nil {
		return nil, err
	}
	s := &server{proc: p, addr: loopback(port)}
	if err := p.waitHTTP(ctx, s.url()+"/v2/", wait); err != nil {
		p.stop()
		return nil, err
	}
	return s, nil
}
