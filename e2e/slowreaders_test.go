package e2e

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Slow readers (issue 8, finding 2): many connections, each with an
// Authorization of its own so that no two share an upstream fetch, GET a
// large signed manifest and never read the answer. The proxy must keep
// its memory bounded while they hang on and serve a new client once they
// have gone.

const (
	// slowReaders is how many connections hang on the manifest.
	slowReaders = 300
	// slowHold is how long they hang on.
	slowHold = 3 * time.Second
	// slowManifestBytes is roughly the size of the manifest they ask for.
	slowManifestBytes = 3_500_000
	// slowRSSBound is the proxy's RSS the test allows: twice the issue's
	// goal of 128 MiB for 1500 readers, so that a slow machine is no
	// reason to fail. Were each reader to pin a copy of the manifest, 300
	// would take about 1 GiB.
	slowRSSBound = 256 << 20
	// slowRecoverBound is how soon after they leave a new client must be
	// served.
	slowRecoverBound = 10 * time.Second
	// slowRcvBuf is a slow reader's socket receive buffer: small, so that
	// the manifest stays in the proxy rather than in the kernel's buffers.
	slowRcvBuf = 4096
)

// TestSlowReadersStayBounded proves issue 8's finding 2 closed: 300 slow
// readers with distinct credentials on a ~3.5 MB signed manifest, by tag
// and then by digest, each against a fresh proxy in front of the real
// docker-registry, keep the proxy's RSS under 256 MiB, every answer they
// got is 200 or 503, and a new client is served 200 within 10 s of their
// leaving.
func TestSlowReadersStayBounded(t *testing.T) {
	for _, by := range []string{"tag", "digest"} {
		t.Run(by, func(t *testing.T) {
			// A registry of its own: the other run must not leave it busy.
			l := newSlowLab(t)
			p := l.proxy(t)
			ref := "v1"
			if by == "digest" {
				ref = l.digest
			}
			path := "/v2/prod/large/manifests/" + ref
			url := "http://" + p.addr + path
			// Warm: the decision (and, by digest, the verified bytes) is in
			// the proxy before the slow readers come.
			if code, err := getManifest(url, ""); err != nil || code != http.StatusOK {
				t.Fatalf("GET %s before the slow readers: %d, %v", path, code, err)
			}
			pid := p.proc.cmd.Process.Pid
			idle, err := rssOf(pid, "VmRSS")
			if err != nil {
				t.Fatalf("reading the proxy's RSS: %v", err)
			}
			peak := watchRSS(pid)

			conns, dialErrs := openSlowReaders(t, p.addr, path, by)
			time.Sleep(slowHold) // the load itself: readers that hang on
			statuses := statusLines(conns)
			for _, c := range conns {
				c.Close()
			}
			gone := time.Now()
			// The upstream, asked directly at the same time, tells a proxy
			// that stalls from an upstream that does.
			upstream := make(chan string, 1)
			go func() {
				ok, _, last := waitServed("http://"+l.registry+path, gone.Add(slowRecoverBound))
				if ok {
					upstream <- fmt.Sprintf("the upstream, asked directly, answered 200 after %s", time.Since(gone).Round(time.Millisecond))
				} else {
					upstream <- fmt.Sprintf("the upstream, asked directly, did not answer 200 within %s either (last: %s): "+
						"the stall is upstream's, under the requests the proxy made of it for the slow readers", slowRecoverBound, last)
				}
			}()
			served, tries, last := waitServed(url, gone.Add(slowRecoverBound))
			after := time.Since(gone)
			high := peak()
			up := <-upstream

			outcome := fmt.Sprintf("served 200 after %s", after.Round(time.Millisecond))
			if !served {
				outcome = fmt.Sprintf("not served 200 within %s", after.Round(time.Millisecond))
			}
			t.Logf("by %s: %d slow readers (%d could not connect), held %s: proxy RSS idle %.1f MiB, peak %.1f MiB; "+
				"answers %v; a new client %s (%d tries); %s",
				by, len(conns), dialErrs, slowHold, mib(idle), mib(high), statuses, outcome, tries, up)
			if high >= slowRSSBound {
				t.Errorf("proxy peak RSS %.1f MiB with %d slow readers by %s, want < %.0f MiB (idle %.1f MiB)",
					mib(high), len(conns), by, mib(slowRSSBound), mib(idle))
			}
			for code, n := range statuses {
				if code != "200" && code != "503" && code != "none" {
					t.Errorf("%d slow readers were answered %s, want 200 or 503", n, code)
				}
			}
			if !served {
				t.Errorf("no new client was served 200 within %s after the slow readers left (%d tries, last: %s); %s",
					slowRecoverBound, tries, last, up)
			}
		})
	}
}

// slowLab is the real docker-registry holding prod/large:v1, a ~3.5 MB OCI
// image manifest signed with a trusted key.
type slowLab struct {
	bin      string
	sh       *Shell
	registry string
	trusted  keyPair
	digest   string
}

func newSlowLab(t *testing.T) *slowLab {
	t.Helper()
	l := &slowLab{registry: StartRegistry(t), bin: BuildBinary(t), sh: NewShell(t)}
	l.sh.Set("COSIGN_PASSWORD", "")
	l.trusted = generateKeyPair(t, l.sh, "trusted")
	raw := newRawRegistry(t, l.registry)
	const repo = "prod/large"
	cfg := raw.blob(repo, string(types.OCIConfigJSON),
		[]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	layer := raw.blob(repo, string(types.OCILayer), []byte("slow readers"))
	pad := strings.Repeat("0123456789abcdef", 100_000/16)
	ann := map[string]string{}
	for i := 0; i < slowManifestBytes/len(pad); i++ {
		ann[fmt.Sprintf("dev.cosign.test.padding.%02d", i)] = pad
	}
	d, body := raw.manifestJSON(repo, "v1", craftedManifest{
		SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
		Config: &cfg, Layers: &[]craftedDescriptor{layer}, Annotations: ann,
	})
	if len(body) < 3_000_000 {
		t.Fatalf("the large manifest is %d bytes, want about %d", len(body), slowManifestBytes)
	}
	sign(t, l.sh, l.trusted, l.registry+"/"+repo+":v1")
	l.digest = d.Digest
	return l
}

// proxy starts a proxy in front of the lab's registry, enforcing the
// trusted key on prod/**.
func (l *slowLab) proxy(t *testing.T) *runningProxy {
	t.Helper()
	return startProxy(t, l.bin, l.sh.Dir, fmt.Sprintf(`listen: "%%[1]s"
upstreams:
  - registry: %[1]s
    url: http://%[1]s
defaultUpstream: %[1]s
policies:
  - name: prod
    match: ["%[1]s/prod/**"]
    keys: [%[2]s]
defaultPolicy: deny
`, l.registry, l.trusted.pub))
}

// openSlowReaders opens slowReaders connections to addr, 32 dials at a
// time; each sends one GET of path with credentials of its own and reads
// nothing. It returns the open connections and how many dials failed (the
// test fails when more than a tenth do).
func openSlowReaders(t *testing.T, addr, path, label string) ([]net.Conn, int) {
	t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, slowRcvBuf)
		})
		return errors.Join(err, serr)
	}}
	var (
		mu    sync.Mutex
		conns []net.Conn
		errs  []error
		wg    sync.WaitGroup
		work  = make(chan int)
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c, err := d.Dial("tcp", addr)
				if err == nil {
					auth := basic(fmt.Sprintf("slow-%s-%d", label, i), strconv.Itoa(i))
					_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
					_, err = io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+addr+"\r\nAccept: "+manifestAccept+
						"\r\nAuthorization: "+auth+"\r\n\r\n")
					if err != nil {
						c.Close()
					}
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range slowReaders {
		work <- i
	}
	close(work)
	wg.Wait()
	if len(errs) > slowReaders/10 {
		for _, c := range conns {
			c.Close()
		}
		t.Fatalf("%d of %d slow readers could not connect, first: %v", len(errs), slowReaders, errs[0])
	}
	return conns, len(errs)
}

// statusLines reads, within a few seconds, the status line each slow
// reader was answered with so far, and counts the codes ("none": no answer
// yet).
func statusLines(conns []net.Conn) map[string]int {
	counts := map[string]int{}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	deadline := time.Now().Add(3 * time.Second)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(deadline)
			line, err := bufio.NewReaderSize(c, 256).ReadSlice('\n')
			code := "none"
			if f := strings.Fields(string(line)); err == nil && len(f) >= 2 {
				code = f[1]
			}
			mu.Lock()
			counts[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return counts
}

// waitServed asks for url with fresh credentials until it is answered 200
// or deadline passes; it returns whether it was, the tries, and the last
// other answer.
func waitServed(url string, deadline time.Time) (bool, int, string) {
	tries, last := 0, ""
	for {
		tries++
		code, err := getManifest(url, basic("after", strconv.Itoa(tries)))
		if err == nil && code == http.StatusOK {
			return true, tries, last
		}
		if err != nil {
			last = err.Error()
		} else {
			last = strconv.Itoa(code)
		}
		if !time.Now().Add(50 * time.Millisecond).Before(deadline) {
			return false, tries, last
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// getManifest GETs a manifest (reading the body) with auth as the
// Authorization header when it is set, giving up after 5 s.
func getManifest(url, auth string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", manifestAccept)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, err
}

// basic is an "Authorization: Basic" value.
func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// watchRSS resets pid's peak RSS (clear_refs 5) and samples VmRSS every
// 10 ms; the returned function stops and returns the peak: the larger of
// the samples and, when the reset worked, VmHWM.
func watchRSS(pid int) func() int64 {
	reset := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
	quit, done := make(chan struct{}), make(chan struct{})
	var high int64
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if v, err := rssOf(pid, "VmRSS"); err == nil && v > high {
				high = v
			}
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		close(quit)
		<-done
		if reset {
			if v, err := rssOf(pid, "VmHWM"); err == nil && v > high {
				high = v
			}
		}
		return high
	}
}

// rssOf reads a "kB" field of /proc/PID/status, in bytes.
func rssOf(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", field, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", field, pid)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
