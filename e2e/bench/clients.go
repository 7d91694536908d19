package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// containerd is a private containerd daemon: own root, state and socket,
// CRI plugin disabled.
type containerd struct {
	*proc
	sock string
	root string
}

// startContainerd writes a minimal config under dir and starts the daemon.
func startContainerd(ctx context.Context, dir string) (*containerd, error) {
	base := filepath.Join(dir, "ctd")
	root, state := filepath.Join(base, "root"), filepath.Join(base, "state")
	for _, d := range []string{root, state, filepath.Join(base, "opt")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("containerd dirs: %w", err)
		}
	}
	sock := filepath.Join(base, "c.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, root, state, sock, sock+".ttrpc", filepath.Join(base, "opt"))
	cfgPath := filepath.Join(base, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("containerd config: %w", err)
	}
	p, err := startProc(dir, "containerd", nil, containerdBin, "--config", cfgPath)
	if err != nil {
		return nil, err
	}
	c := &containerd{proc: p, sock: sock, root: root}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if p.exited() {
			return nil, fmt.Errorf("containerd exited (%v): %s", p.err, p.logTail())
		}
		if _, err := c.ctr(ctx, "default", "version"); err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("containerd not ready after 20s: %s", p.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ctr runs ctr against the private daemon in namespace ns.
func (c *containerd) ctr(ctx context.Context, ns string, args ...string) ([]byte, error) {
	return runCmd(ctx, "", nil, ctrBin, append([]string{"-a", c.sock, "-n", ns}, args...)...)
}

// pull pulls ref into a fresh namespace, timing it, then removes the image
// and its content so the next pull starts empty.
func (c *containerd) pull(ctx context.Context, ns, ref string) (time.Duration, error) {
	t := time.Now()
	_, err := c.ctr(ctx, ns, "images", "pull", "--plain-http", ref)
	d := time.Since(t)
	c.clean(ctx, ns, ref)
	return d, err
}

// clean removes the image and any content left in namespace ns.
func (c *containerd) clean(ctx context.Context, ns, ref string) {
	_, _ = c.ctr(ctx, ns, "images", "rm", "--sync", ref)
	out, err := c.ctr(ctx, ns, "content", "ls", "-q")
	if err != nil {
		return
	}
	if ds := strings.Fields(string(out)); len(ds) > 0 {
		_, _ = c.ctr(ctx, ns, append([]string{"content", "rm"}, ds...)...)
	}
}

// skopeoCopy copies ref to a fresh dir: destination, accepting any image.
func skopeoCopy(ctx context.Context, dir, ref string) (time.Duration, error) {
	policy := filepath.Join(dir, "skopeo-policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		return 0, err
	}
	dest, err := os.MkdirTemp(dir, "skopeo-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dest)
	t := time.Now()
	_, err = runCmd(ctx, "", nil, skopeoBin, "--policy", policy, "copy", "--src-tls-verify=false",
		"docker://"+ref, "dir:"+dest)
	return time.Since(t), err
}

// caseClients is case 8: wall time of a full multi-layer image pull by
// skopeo and by containerd, through the proxy vs direct.
func caseClients(ctx context.Context, e *env, r *report) {
	ref := func(addr string) string { return addr + "/" + e.multi.repo + ":" + e.multi.tag }
	run := 0
	clients := []struct {
		name string
		pull func(ref string) (time.Duration, error)
	}{
		{"skopeo copy", func(ref string) (time.Duration, error) { return skopeoCopy(ctx, e.ws, ref) }},
		{"ctr images pull", func(ref string) (time.Duration, error) {
			run++
			return e.containerd.pull(ctx, fmt.Sprintf("bench%d", run), ref)
		}},
	}
	for _, c := range clients {
		label := "8 " + c.name
		var times [2][]time.Duration
		// An unmeasured first pull: the first one of a fresh daemon or a cold
		// page cache is slower, whichever target it goes to.
		_, failed := c.pull(ref(e.upstream.addr))
		for i := 0; i < e.o.clientRuns && failed == nil; i++ {
			// Alternate the order so neither target always runs first.
			order := []int{0, 1}
			if i%2 == 1 {
				order = []int{1, 0}
			}
			for _, k := range order {
				addr := []string{e.upstream.addr, e.proxy.addr}[k]
				d, err := c.pull(ref(addr))
				if err != nil {
					failed = fmt.Errorf("via %s: %w", addr, err)
					break
				}
				times[k] = append(times[k], d)
			}
		}
		if failed != nil {
			r.fail(label, "wall time", failed)
			continue
		}
		dm, pm := median(times[0]), median(times[1])
		r.add(row{kase: label, metric: fmt.Sprintf("wall time, median of %d", e.o.clientRuns),
			baseline: "direct " + fSec(dm), proxy: fSec(pm), ratio: fRatio(ratio(float64(pm), float64(dm)))})
	}
	r.note("Case 8: image of 8 layers x 8 MiB; containerd pulls into a fresh namespace each run and the image and content are removed after it.")
}
