package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Red team, third round: the HEAD-first pull by tag, the upstream request
// slots, the refusal of encoded blobs, the batched bundle lookup, and
// whether real clients still pull after the changes that kept upstream
// challenges from clients.

// anonymousTokenFront is a public registry as Docker Hub, ghcr.io and
// quay.io are: anyone may pull, but every request must carry a Bearer
// token, which its token realm (here on its own origin, at /token) hands
// to anyone who asks, without credentials.
func anonymousTokenFront(t *testing.T, backend, service string) *upstreamFront {
	t.Helper()
	const token = "anonymous-pull-token"
	var front *upstreamFront
	front = newUpstreamFront(t, backend, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/token" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"token":%q,"access_token":%q,"expires_in":300}`, token, token)
			return true
		}
		if r.Header.Get("Authorization") == "Bearer "+token {
			return false
		}
		challenge := fmt.Sprintf(`Bearer realm="http://%s/token",service=%q`, front.host(), service)
		if repo, _, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/manifests/"); ok {
			challenge += fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
		} else if repo, _, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/blobs/"); ok {
			challenge += fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
		}
		w.Header().Set("WWW-Authenticate", challenge)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return true
	})
	return front
}

// TestRedTeam3PublicTokenRegistryAsSecondUpstream: a second upstream that
// is public the way Docker Hub, ghcr.io and quay.io are (anonymous pulls,
// but through an anonymous Bearer token from the registry's token realm)
// cannot be pulled through the proxy at all. The README sends containerd
// to every gated registry through one proxy (a hosts.toml per registry,
// ?ns= selecting the upstream), and says that upstreams other than the
// default "see anonymous requests". But the proxy sends them with no
// token and does not fetch the anonymous token itself; since the proxy
// keeps upstream challenges from clients (rightly), the client cannot do
// the token exchange either, and every pull, signed or not, ends in
// "401 ... this proxy forwards no client credentials to it". So does the
// default upstream as soon as clientAuth is on (its requests are
// anonymous too). Without clientAuth, forwardCredentials: true on the
// upstream lets containerd do the exchange; with clientAuth nothing does
// (forwardCredentials: true is refused, and auth: {dockerConfig} naming a
// config with no entry for the registry stops start-up).
//
// Fails until the proxy does the anonymous token exchange itself for an
// upstream it reaches anonymously (go-containerregistry's transport with
// authn.Anonymous does), with the realm checks it applies to its own
// credentials.
func TestRedTeam3PublicTokenRegistryAsSecondUpstream(t *testing.T) {
	l := newGateLab(t)
	hub := anonymousTokenFront(t, l.registry, "hub.test")
	signed := PushRandomImage(t, l.registry+"/prod/web:v1")
	l.signBundle(t, l.registry+"/prod/web:v1")
	p := startProxy(t, l.bin, l.sh.Dir, fmt.Sprintf(`listen: "%%[1]s"
upstreams:
  - registry: %[1]s
    url: http://%[1]s
  - registry: hub.test
    url: http://%[2]s
defaultUpstream: %[1]s
policies:
  - name: prod
    match: ["%[1]s/prod/**", "hub.test/prod/**"]
    keys: [%[3]s]
defaultPolicy: deny
`, l.registry, hub.host(), l.trusted.pub))

	// The same image through the default upstream: the lab works.
	if a := send(t, http.MethodGet, manifestURL(p.addr, "prod/web", "v1"), "Accept", manifestAccept); a.status != http.StatusOK {
		t.Fatalf("GET prod/web:v1 through the default upstream: %s\n%s", a, lastLines(p.proc.Output(), 20))
	}

	// A plain pull through ?ns=hub.test, as containerd sends it.
	a := send(t, http.MethodGet, manifestURL(p.addr, "prod/web", "v1")+"?ns=hub.test", "Accept", manifestAccept)
	if a.status != http.StatusOK {
		t.Errorf("GET /v2/prod/web/manifests/v1?ns=hub.test (a signed image on a public registry that hands out anonymous tokens): %s; want 200 with %s", a, signed)
	}

	// containerd, with hosts.toml naming the proxy as hub.test's server.
	c := containerdOf(t, NewContainerdClient(t, Mirror{Proxy: p.addr, Upstream: "hub.test"}))
	out, err := ctrPull(context.Background(), c, "hub", "prod/web:v1")
	if err != nil {
		t.Errorf("ctr images pull hub.test/prod/web:v1 through the proxy (signed with the trusted key): %v\n%s", err, lastLines(out, 5))
	}
	t.Logf("upstream hub.test saw:\n%s", listRequests(hub.requests()))
}

// dockerWithConfig runs the docker CLI with its own DOCKER_CONFIG (so that
// logins stay in the test) and stdin, and returns its output.
func dockerWithConfig(t *testing.T, config, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+config)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestRedTeam3DockerLoginUncheckedWhenDefaultIsPublic: with clientAuth,
// a public default upstream and a private one the proxy holds credentials
// for (the layout of the second red team's lab), the /v2/ ping is answered
// 200 without a challenge. Docker only sends a password when the ping
// challenges, so:
//
//   - `docker login PROXY` with a wrong password prints "Login Succeeded"
//     (the password is never checked), and
//   - after a correct login, `docker pull PROXY/priv.test/prod/...` fails
//     with "authentication required: log in to this proxy": Docker set up
//     no authentication for the host from the ping and never sends the
//     login it stored.
//
// So Docker cannot reach a clientAuth-protected upstream unless it is the
// default, although the README tells users to `docker login` to the proxy
// and names upstreams in paths. Fails until the ping challenges (Basic,
// clientAuth's realm) a request without a valid login whenever some
// upstream needs one. Note the cost: Docker answers "no basic auth
// credentials" to a Basic challenge it holds no login for, so Docker users
// of the public default would then need a login too; if that is not
// wanted, the README must say that with clientAuth Docker reaches only the
// default upstream, and this test changes with it.
func TestRedTeam3DockerLoginUncheckedWhenDefaultIsPublic(t *testing.T) {
	Require(t, "docker")
	if out, err := dockerWithConfig(t, t.TempDir(), "", "info", "--format", "{{.ServerVersion}}"); err != nil {
		requireEngine(t, out)
	}
	l := newAuthLab(t, nil, bcrypt.MinCost)
	img := l.pushPrivate(t, "app")
	ref := l.proxy.addr + "/priv.test/prod/app@" + img.digest.String()
	config := t.TempDir()
	t.Cleanup(func() { _, _ = dockerWithConfig(t, config, "", "rmi", "--force", ref) })

	wrong := send(t, http.MethodGet, "http://"+l.proxy.addr+"/v2/", "Authorization", basicAuth(l.user, "not-the-password"))
	t.Logf("GET /v2/ with a wrong proxy password: %s", wrong)
	if out, err := dockerWithConfig(t, config, "not-the-password\n", "login", "-u", l.user, "--password-stdin", l.proxy.addr); err == nil {
		t.Errorf("docker login %s -u %s with a wrong password succeeded (the ping answered %d without a challenge, so Docker never sent the password):\n%s",
			l.proxy.addr, l.user, wrong.status, lastLines(out, 2))
	}
	if out, err := dockerWithConfig(t, config, l.password+"\n", "login", "-u", l.user, "--password-stdin", l.proxy.addr); err != nil {
		t.Fatalf("docker login %s -u %s with the right password: %v\n%s", l.proxy.addr, l.user, err, out)
	}
	start := time.Now()
	if out, err := dockerWithConfig(t, config, "", "pull", ref); err != nil {
		t.Errorf("after docker login, docker pull %s (signed with the trusted key, on the upstream that needs the proxy login): %v\n%s\nproxy log:\n%s",
			ref, err, lastLines(out, 3), lastLines(l.proxy.proc.Output(), 6))
	} else {
		t.Logf("pulled %s in %s", ref, time.Since(start).Round(time.Millisecond))
	}
}

// TestRedTeam3SecondContentEncodingPassesBlobGate: the blob gate refuses a
// blob with a Content-Encoding, but reads only the first Content-Encoding
// header line. An upstream (or a CDN in front of it) that answers
//
//	Content-Encoding: identity
//	Content-Encoding: gzip
//
// gets a gzip body past the gate, both lines forwarded: the gate sees
// 1f 8b, not '{', and passes an unsigned manifest as a blob. Go clients
// (containerd, Docker, skopeo) read only the first line and do not
// decode, but HTTP says the codings apply in order (RFC 9110 8.4), and
// curl --compressed decodes both: it gets the unsigned manifest's exact
// bytes. Low severity: it takes an upstream that encodes unasked.
//
// Fails until every Content-Encoding value of every line, not only the
// first, must be identity.
func TestRedTeam3SecondContentEncodingPassesBlobGate(t *testing.T) {
	l := newGateLab(t)
	front := newUpstreamFront(t, l.registry, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			return false
		}
		return serveGzipped(w, r, l.registry, "identity", "gzip")
	})
	p := l.proxy(t, l.registry, front.host())
	const repo = "prod/app"
	img := pushRunnableImage(t, l.registry, repo)
	l.raw.blob(repo, "application/octet-stream", img.raw) // the unsigned manifest, as a blob
	u := "http://" + p.addr + "/v2/" + repo + "/blobs/" + img.digest.String()
	a := send(t, http.MethodGet, u)
	if a.status != http.StatusOK {
		t.Logf("answer: %s", a)
		return
	}
	zr, err := gzip.NewReader(bytes.NewReader(a.body))
	if err != nil {
		t.Fatalf("GET %s: 200 with Content-Encoding %q, but not gzip: %v", u, a.header.Values("Content-Encoding"), err)
	}
	decoded, _ := io.ReadAll(zr)
	if bytes.Equal(decoded, img.raw) {
		t.Errorf("GET %s: the proxy passed the unsigned manifest %s as a blob with Content-Encoding %q (%d bytes; decoded in order, they are the manifest's exact bytes); want it refused",
			u, img.digest, a.header.Values("Content-Encoding"), len(a.body))
	}
}

// TestRedTeam3OneClientStarvesUpstreamSlots: the 64 request slots of an
// upstream are shared by every client, first come first served, and a
// request that waits 2 s for one is 503. One anonymous client with 3,000
// connections asking for tags that do not exist (no push rights needed)
// keeps every slot of an upstream at a realistic distance (here
// 300 ms a round trip, as Docker Hub from many places) busy, and everyone
// else's pulls of that upstream fail with 503 for as long as it goes on.
// containerd and Docker do not retry a 503 on a manifest: a node's image
// pulls fail.
//
// Fails until one client cannot take all of an upstream's slots (a share
// per client address or user, or answers for what upstream said does not
// exist kept briefly), so that a pull of a signed image by another client
// still succeeds while the flood goes on.
func TestRedTeam3OneClientStarvesUpstreamSlots(t *testing.T) {
	l := newGateLab(t)
	const rtt = 300 * time.Millisecond
	front := newUpstreamFront(t, l.registry, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/v2/" {
			time.Sleep(rtt)
		}
		return false
	})
	p := l.proxy(t, l.registry, front.host())
	var imgs []runnableImage
	for range 3 {
		img := pushRunnableImage(t, l.registry, "prod/app")
		l.signBundle(t, l.registry+"/prod/app@"+img.digest.String())
		imgs = append(imgs, img)
	}

	// The flood: one client, 3,000 connections, tags that do not exist.
	stop := make(chan struct{})
	var sent atomic.Int64
	var wg sync.WaitGroup
	flooder := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 3000}}
	for i := range 3000 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := flooder.Get(manifestURL(p.addr, "prod/app", fmt.Sprintf("nope-%d-%d", i, n)))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				sent.Add(1)
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	time.Sleep(2 * time.Second)

	// Another client, from another address (127.0.0.2: the proxy shares
	// an upstream's slots by client address), pulls three signed images,
	// one after the other.
	victim := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	for _, img := range imgs {
		start := time.Now()
		req, err := http.NewRequest(http.MethodGet, manifestURL(p.addr, "prod/app", img.digest.String()), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", manifestAccept)
		resp, err := victim.Do(req)
		took := time.Since(start).Round(time.Millisecond)
		if err != nil {
			t.Errorf("GET prod/app@%s by another client while one client floods the upstream's slots: %v after %s", img.digest, err, took)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET prod/app@%s (signed with the trusted key) by another client while one client floods the upstream's slots: %d %s after %s; want 200",
				img.digest, resp.StatusCode, body, took)
		} else {
			t.Logf("the other client's pull of %s took %s", img.digest, took)
		}
	}
	t.Logf("the flooding client sent %d requests", sent.Load())
}
