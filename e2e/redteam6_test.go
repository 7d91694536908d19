package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cosign-dev/cosign/sigstore/sigstoretest"
)

// Red team 6: the signature-artifact rule for .att-shaped manifests (DSSE
// envelope layers, admitted unsigned), the process-wide pool of
// signature-artifact bytes under many concurrent cold lookups, the keyless
// memo, the key-then-keyless fallback and attestation-only policies with
// indexes. verifier/redteam6_test.go has the attacks that need no client.

const dsseLayerType = "application/vnd.dsse.envelope.v1+json"

// rt6Envelope is a DSSE envelope as cosign writes in a .att layer: a JSON
// object, not a tar, not compressed. pad makes it larger.
func rt6Envelope(t testing.TB, marker string, pad int) []byte {
	t.Helper()
	stmt := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"%064x"}}],"predicateType":"https://example.com/%s","predicate":{"pad":%q}}`,
		1, marker, strings.Repeat("A", pad))
	b, err := json.Marshal(map[string]any{
		"payloadType": "application/vnd.in-toto+json",
		"payload":     base64.StdEncoding.EncodeToString([]byte(stmt)),
		"signatures":  []map[string]string{{"keyid": "", "sig": base64.StdEncoding.EncodeToString([]byte("not a signature"))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rt6RunnableConfig is an image config that runs args on this host's
// platform, listing diffIDs as its layers.
func rt6RunnableConfig(t testing.TB, diffIDs []string, args ...string) []byte {
	t.Helper()
	if diffIDs == nil {
		diffIDs = []string{}
	}
	b, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": args, "Env": []string{"PATH=/usr/bin:/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRedTeam6DSSEArtifactWithRunnableConfigDoesNotRun: a manifest shaped
// like a cosign .att manifest (every layer declares the DSSE envelope media
// type, and is a JSON object of at most 1 MiB that is no tar) is admitted
// without signatures as a signature artifact. Its config is not looked at,
// so the attacker gives it a runnable image config (an entrypoint, the
// DSSE layers as diff_ids, or none) and, in one variant, an artifactType;
// one variant is a Docker schema 2 manifest. The proxy serves all of them
// (200): that is the rule. What must hold is that no client turns them
// into a container or a root filesystem: containerd (`ctr images pull`
// with unpack, then `ctr run`), Docker (`docker pull`, `docker run`) and
// go-containerregistry's flattening (`crane export`). A JSON object starts
// with '{' (or whitespace), never with the magic of gzip (1f 8b), zstd
// (28 b5 2f fd), bzip2 ("BZh") or xz (fd "7zXZ"), so no client that sniffs
// compression finds any, and the layer is no tar.
//
// Passes while no client runs or unpacks any of them.
func TestRedTeam6DSSEArtifactWithRunnableConfigDoesNotRun(t *testing.T) {
	t.Parallel()
	l := newGateLab(t)
	p := l.proxy(t, l.registry, l.registry)
	const repo = "prod/dsse"
	marker := "rt6-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	small := l.raw.blob(repo, dsseLayerType, rt6Envelope(t, marker, 16))
	// 1 MiB exactly: the largest envelope the rule admits.
	bigEnv := rt6Envelope(t, marker+"-big", 0)
	bigEnv = rt6Envelope(t, marker+"-big", (1<<20)-len(bigEnv)-(1<<20)/3)
	for len(bigEnv) > 1<<20 {
		bigEnv = rt6Envelope(t, marker+"-big", len(bigEnv)/2)
	}
	big := l.raw.blob(repo, dsseLayerType, bigEnv)

	type variant struct {
		tag      string
		manifest craftedManifest
	}
	cfgOf := func(diffIDs []string, mediaType string) *craftedDescriptor {
		d := l.raw.blob(repo, mediaType, rt6RunnableConfig(t, diffIDs, "/proc/self/exe", "--version"))
		return &d
	}
	oci := string(types.OCIManifestSchema1)
	variants := []variant{
		{"diffids", craftedManifest{SchemaVersion: 2, MediaType: oci,
			Config: cfgOf([]string{small.Digest}, string(types.OCIConfigJSON)), Layers: &[]craftedDescriptor{small}}},
		{"nodiffids", craftedManifest{SchemaVersion: 2, MediaType: oci,
			Config: cfgOf(nil, string(types.OCIConfigJSON)), Layers: &[]craftedDescriptor{small}}},
		{"artifacttype", craftedManifest{SchemaVersion: 2, MediaType: oci, ArtifactType: dsseLayerType,
			Config: cfgOf([]string{small.Digest, big.Digest}, string(types.OCIConfigJSON)), Layers: &[]craftedDescriptor{small, big}}},
		{"docker", craftedManifest{SchemaVersion: 2, MediaType: string(types.DockerManifestSchema2),
			Config: cfgOf([]string{big.Digest}, string(types.DockerConfigJSON)), Layers: &[]craftedDescriptor{big}}},
	}
	for _, v := range variants {
		l.raw.manifestJSON(repo, v.tag, v.manifest)
	}

	c := containerdOf(t, NewContainerdClient(t, Mirror{Proxy: p.addr, Upstream: l.registry}))
	docker := dockerAvailable()
	ctx := context.Background()
	for i, v := range variants {
		a := send(t, http.MethodGet, manifestURL(p.addr, repo, v.tag), "Accept", manifestAccept)
		t.Logf("%s: proxy answered %d", v.tag, a.status)
		if a.status != http.StatusOK {
			continue // refused: nothing for a client to run
		}

		// go-containerregistry flattens layers by their bytes.
		if img, err := crane.Pull(p.addr+"/"+repo+":"+v.tag, crane.Insecure); err == nil {
			rc := mutate.Extract(img)
			buf := make([]byte, 1<<16)
			n, _ := rc.Read(buf)
			rc.Close()
			if n > 0 {
				t.Errorf("%s: crane export of the unsigned DSSE-shaped manifest through the proxy yields %d bytes of filesystem", v.tag, n)
			}
		}

		// containerd: pull for this platform (unpacks into a snapshot),
		// then run.
		ns := fmt.Sprintf("rt6run%d", i)
		out, err := ctrPull(ctx, c, ns, repo+":"+v.tag)
		t.Logf("%s: ctr images pull (unpack): %v\n%s", v.tag, err, lastLines(out, 2))
		snaps, _ := ctr(ctx, c, ns, "snapshots", "--snapshotter", "native", "ls")
		for _, line := range strings.Split(strings.TrimSpace(snaps), "\n")[1:] {
			if line = strings.TrimSpace(line); line != "" {
				t.Errorf("%s: containerd unpacked the unsigned DSSE-shaped manifest into a snapshot: %s", v.tag, line)
			}
		}
		ref := l.registry + "/" + repo + ":" + v.tag
		out, err = ctr(ctx, c, ns, "run", "--snapshotter", "native", "--rm", ref, "rt6-"+v.tag)
		t.Logf("%s: ctr run: %v\n%s", v.tag, err, lastLines(out, 3))
		if err == nil {
			t.Errorf("%s: ctr run started a container from the unsigned DSSE-shaped manifest pulled through the proxy:\n%s", v.tag, out)
		}

		if !docker {
			continue
		}
		dref := p.addr + "/" + repo + ":" + v.tag
		out, err = runTool(ctx, nil, "docker", "pull", dref)
		t.Logf("%s: docker pull: %v\n%s", v.tag, err, lastLines(out, 2))
		if err == nil {
			t.Cleanup(func() { _, _ = runTool(context.Background(), nil, "docker", "rmi", "--force", dref) })
			name := "rt6-" + v.tag + "-" + marker
			out, err = runTool(ctx, nil, "docker", "run", "--rm", "--name", name, dref)
			t.Logf("%s: docker run: %v\n%s", v.tag, err, lastLines(out, 3))
			if err == nil {
				t.Errorf("%s: docker ran the unsigned DSSE-shaped manifest pulled through the proxy:\n%s", v.tag, out)
			}
			_, _ = runTool(context.Background(), nil, "docker", "rm", "--force", name)
		}
	}
}

// dockerAvailable reports whether a Docker engine answers.
func dockerAvailable() bool {
	if _, err := os.Stat("/var/run/docker.sock"); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := runTool(ctx, nil, "docker", "info", "--format", "{{.ServerVersion}}")
	return err == nil
}

// rt6FloodConfig is a proxy whose policy prod trusts a key and the
// keyless identity rt4Issuer/rt4Subject of root.json on registry/prod/**.
const rt6FloodConfig = `listen: "%%[1]s"
upstreams:
  - registry: %[1]s
    url: http://%[1]s
defaultUpstream: %[1]s
upstreamTimeout: 60s
trustedRoots:
  test: root.json
policies:
  - name: prod
    match: ["%[1]s/prod/**"]
    keys: [%[2]s]
    keyless:
      trustedRoot: test
      identities:
        - issuer: %[3]s
          subject: %[4]s
defaultPolicy: deny
`

// rt6FromAddr is an HTTP client whose connections come from the loopback
// address local (127.0.0.2, say): another client address to the proxy.
func rt6FromAddr(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	return &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 256}}
}

// rt6JunkSigManifest is a .sig manifest of MaxSignatures simple-signing
// layers, each pointing at payload (64 KiB, the largest payload read) with
// a junk signature, padded with an annotation to about 4 MiB, the largest
// manifest read.
func rt6JunkSigManifest(t testing.TB, config, payload craftedDescriptor) []byte {
	t.Helper()
	layers := make([]craftedDescriptor, 100)
	pad := strings.Repeat("p", (4<<20)/100-2048)
	for i := range layers {
		l := payload
		l.Annotations = map[string]string{
			"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("junk %d", i))),
			"pad":                                pad,
		}
		layers[i] = l
	}
	b, err := json.Marshal(craftedManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1), Config: &config, Layers: &layers})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rt6JunkReferrersIndex is a referrers-tag index of 1,000 bundle
// referrers (MaxReferrers) that are 64 KiB manifests whose one layer is a
// 1 MiB junk bundle, padded to about 4 MiB.
func rt6JunkReferrersIndex(t testing.TB, referrer craftedDescriptor) []byte {
	t.Helper()
	entries := make([]craftedDescriptor, 1000)
	pad := strings.Repeat("q", (4<<20)/1000-600)
	for i := range entries {
		e := referrer
		e.ArtifactType = bundleType
		e.Annotations = map[string]string{"pad": pad}
		entries[i] = e
	}
	b, err := json.Marshal(referrersIndex(entries))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRedTeam6LookupFloorTimesConcurrency: every lookup may hold
// lookupFloorBytes (1 MiB) of signature artifacts past the process-wide
// pool of 64 MiB, and the manifests it reads (a .sig manifest of up to
// 4 MiB, counted but never refused; the referrers-tag index of up to
// 4 MiB, not counted) come on top. Lookups run detached from the client
// and nothing bounds how many run at once except the upstream request
// slots (64, 32 per client address), which a lookup holds only while a
// request is in flight. The attacker pushes rt6Digests images of their
// own over several repositories, each with a 4 MiB .sig manifest of 100
// junk layers (64 KiB payloads) and a 4 MiB referrers index, and asks for
// them again and again from 128 connections on four client addresses
// (every 503 is uncached, so every request is a cold lookup).
//
// Memory stays bounded (about 200-330 MiB peak here), and two small
// images, one signed with the trusted key (.sig) and one by the trusted
// keyless identity (bundle referrer), still pull with containerd: the
// floor carries them. FINDING: the floor is spent on whatever the lookup
// reads first. A third image, correctly signed by the trusted identity,
// to which the attacker has added 16 junk bundle referrers of 0.9 MiB
// listed before its bundle (anyone who can push can add referrers; the
// same image with the same junk is served when there is no flood, checked
// here on a fresh proxy), is refused with 503 "the lookups in flight hold
// their limit of 67108864 bytes of signature artifacts" for as long as the
// flood lasts: its first junk bundle takes its floor, every later read
// needs the pool, which the flood keeps full, and a read the pool refuses
// fails the whole lookup. Neither half alone denies the image; together
// they deny any image the attacker can add referrers to, without a key.
//
// Safe: the proxy's peak resident memory grows by at most what the
// documented bounds allow, 2 x (64 MiB + rt6Digests x 9 MiB) (the pool,
// each lookup's floor and manifests, 100% slack for the Go heap); and all
// three correctly signed images pull with containerd during the flood.
func TestRedTeam6LookupFloorTimesConcurrency(t *testing.T) {
	t.Parallel()
	l := newGateLab(t)
	ss, err := sigstoretest.New()
	if err != nil {
		t.Fatal(err)
	}
	const rt6Digests = 96
	repos := []string{"prod/flood0", "prod/flood1", "prod/flood2"}
	sigs := map[string][]byte{}
	idx := map[string][]byte{}
	for _, repo := range repos {
		payload := l.raw.blob(repo, simpleSigningType, []byte("{"+strings.Repeat(" ", (64<<10)-2)+"}"))
		sigs[repo] = rt6JunkSigManifest(t, l.raw.emptyConfig(repo), payload)
		ref := l.raw.blob(repo, "application/octet-stream", []byte(`{"schemaVersion":2}`))
		ref.MediaType = string(types.OCIManifestSchema1)
		idx[repo] = rt6JunkReferrersIndex(t, ref)
	}
	type target struct {
		repo, tag string
	}
	targets := make([]target, rt6Digests)
	var wg sync.WaitGroup
	for k := range targets {
		repo := repos[k%len(repos)]
		tag := "v" + strconv.Itoa(k)
		targets[k] = target{repo, tag}
		wg.Go(func() {
			img := pushRunnableImage(t, l.registry, repo)
			if _, err := l.raw.putManifest(repo, tag, string(types.OCIManifestSchema1), img.raw); err != nil {
				t.Error(err)
				return
			}
			if _, err := l.raw.putManifest(repo, "sha256-"+img.digest.Hex+".sig", string(types.OCIManifestSchema1), sigs[repo]); err != nil {
				t.Error(err)
				return
			}
			if _, err := l.raw.putManifest(repo, "sha256-"+img.digest.Hex, string(types.OCIImageIndex), idx[repo]); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// The victims: a key-signed .sig image and a keyless bundle image.
	keyRef := l.registry + "/prod/victim:key"
	PushRandomImage(t, keyRef)
	sign(t, l.sh, l.trusted, keyRef)
	keylessRef := l.registry + "/prod/victim:keyless"
	d := PushRandomImage(t, keylessRef)
	b, err := ss.SignatureBundle(d, sigstoretest.Options{Identity: rt4Subject, Issuer: rt4Issuer})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(l.registry+"/prod/victim", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigstoretest.WriteSignatureBundle(context.Background(), repo, d, b, crane.GetOptions(crane.Insecure).Remote...); err != nil {
		t.Fatal(err)
	}

	// The same, with 16 junk referrers of 0.9 MiB added before its
	// bundle in its referrers index, as anyone who can push can add them.
	junkRef := l.registry + "/prod/victim:junk"
	jd := PushRandomImage(t, junkRef)
	b, err = ss.SignatureBundle(jd, sigstoretest.Options{Identity: rt4Subject, Issuer: rt4Issuer})
	if err != nil {
		t.Fatal(err)
	}
	if err := sigstoretest.WriteSignatureBundle(context.Background(), repo, jd, b, crane.GetOptions(crane.Insecure).Remote...); err != nil {
		t.Fatal(err)
	}
	rt6PrependJunkReferrers(t, l.raw, "prod/victim", jd, 16, 900<<10)

	dir := rt4RootDir(t, ss)
	config := fmt.Sprintf(rt6FloodConfig, l.registry, l.trusted.pub, rt4Issuer, rt4Subject)
	// Without a flood, the junk referrers cost reading, not the image.
	p0 := startProxy(t, l.bin, dir, config)
	if a := send(t, http.MethodGet, manifestURL(p0.addr, "prod/victim", "junk"), "Accept", manifestAccept); a.status != http.StatusOK {
		t.Fatalf("without a flood, prod/victim:junk (correctly signed, 16 junk referrers) is not served: %s", a)
	}
	p0.proc.Stop()
	p := startProxy(t, l.bin, dir, config)
	pid := p.proc.cmd.Process.Pid
	c := containerdOf(t, NewContainerdClient(t, Mirror{Proxy: p.addr, Upstream: l.registry}))
	idle := procStatusKB(t, pid, "VmRSS")

	clients := []*http.Client{rt6FromAddr("127.0.0.2"), rt6FromAddr("127.0.0.3"), rt6FromAddr("127.0.0.4"), rt6FromAddr("127.0.0.5")}
	// The flood: 128 workers (32 per address, each address's share of the
	// upstream slots) ask for the junk-laden digests in turn, again and
	// again (a 503 is not cached, so every request is a cold lookup),
	// until the victims are pulled.
	stop := make(chan struct{})
	var smu sync.Mutex
	count := map[int]int{}
	var sample []string
	start := time.Now()
	var flood sync.WaitGroup
	for w := range 128 {
		flood.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tg := targets[(w+i*128)%rt6Digests]
				req, err := http.NewRequest(http.MethodGet, manifestURL(p.addr, tg.repo, tg.tag), nil)
				if err != nil {
					t.Error(err)
					return
				}
				req.Header.Set("Accept", manifestAccept)
				status := -1
				var body []byte
				if resp, err := clients[w%len(clients)].Do(req); err == nil {
					body, _ = io.ReadAll(io.LimitReader(resp.Body, 300))
					resp.Body.Close()
					status = resp.StatusCode
				}
				smu.Lock()
				count[status]++
				if status == http.StatusOK {
					t.Errorf("%s:%s (junk signatures only) was admitted", tg.repo, tg.tag)
				}
				if len(sample) < 3 && status != http.StatusOK {
					sample = append(sample, fmt.Sprintf("%d %s", status, body))
				}
				smu.Unlock()
			}
		})
	}
	// The victims, pulled by containerd (from 127.0.0.1) during the flood.
	time.Sleep(time.Second)
	victims := map[string]error{}
	var vmu sync.Mutex
	for _, tag := range []string{"key", "keyless", "junk"} {
		wg.Go(func() {
			res, err := c.Pull(context.Background(), "prod/victim:"+tag)
			if err != nil {
				err = fmt.Errorf("%w\n%s", err, lastLines(res.Output, 3))
			}
			vmu.Lock()
			victims[tag] = err
			vmu.Unlock()
		})
	}
	wg.Wait()
	// The junk victim: the attacker's junk referrers eat its lookup's 1 MiB
	// floor, and the flood holds the shared pool, so its lookup may not
	// get the bytes to read past the junk. That is an availability limit
	// of the pool (README: "Broken signature containers"), not a gate
	// failure: the answer must be a retryable 503 with Retry-After, never
	// a cached refusal, and the image is served once the flood stops.
	junkDuring := send(t, http.MethodGet, manifestURL(p.addr, "prod/victim", "junk"), "Accept", manifestAccept)
	t.Logf("GET prod/victim:junk during the flood: %d %s", junkDuring.status, junkDuring.body)
	if junkDuring.status != http.StatusOK &&
		(junkDuring.status != http.StatusServiceUnavailable || junkDuring.code != "TOOMANYREQUESTS" || junkDuring.header.Get("Retry-After") == "") {
		t.Errorf("GET prod/victim:junk during the flood: %s; want 200, or 503 TOOMANYREQUESTS with Retry-After", junkDuring)
	}
	// Keep flooding a little longer, so that memory is measured under it.
	time.Sleep(2 * time.Second)
	close(stop)
	flood.Wait()
	peak := procStatusKB(t, pid, "VmHWM")
	for _, s := range sample {
		t.Logf("a flood answer: %s", s)
	}
	t.Logf("128 workers from 4 addresses over %d junk-laden digests: answers %v in %v; proxy resident memory %d MiB idle, peak %d MiB",
		rt6Digests, count, time.Since(start).Round(time.Millisecond), idle>>20, peak>>20)
	if err := victims["junk"]; err != nil {
		t.Logf("ctr pull prod/victim:junk during the flood failed (retryable 503): %v", err)
		delete(victims, "junk")
		res, err := c.Pull(context.Background(), "prod/victim:junk")
		if err != nil {
			t.Errorf("ctr pull prod/victim:junk after the flood (nothing may have been cached): %v\n%s", err, lastLines(res.Output, 3))
		}
	}
	for tag, err := range victims {
		if err != nil {
			t.Errorf("ctr pull prod/victim:%s (correctly signed) failed through the proxy during the flood: %v", tag, err)
		}
	}
	bound := 2 * (int64(64<<20) + rt6Digests*(9<<20))
	if grew := peak - idle; grew > bound {
		t.Errorf("%d concurrent cold lookups raised the proxy's resident memory by %d MiB (to %d MiB); the pool, floors and manifests allow %d MiB with 100%% slack",
			rt6Digests, grew>>20, peak>>20, bound>>20)
	}
}

// rt6PrependJunkReferrers adds n bundle referrers of digest d in repo,
// each a manifest whose one layer is a JSON blob of size bytes, before the
// entries of d's referrers-tag index.
func rt6PrependJunkReferrers(t testing.TB, r *rawRegistry, repo string, d v1.Hash, n, size int) {
	t.Helper()
	a := send(t, http.MethodGet, "http://"+r.host+"/v2/"+repo+"/manifests/"+d.String(), "Accept", manifestAccept)
	if a.status != http.StatusOK {
		t.Fatalf("reading %s@%s: %s", repo, d, a)
	}
	subject := craftedDescriptor{MediaType: a.header.Get("Content-Type"), Digest: d.String(), Size: int64(len(a.body))}
	tag := "sha256-" + d.Hex
	a = send(t, http.MethodGet, "http://"+r.host+"/v2/"+repo+"/manifests/"+tag, "Accept", string(types.OCIImageIndex))
	if a.status != http.StatusOK {
		t.Fatalf("reading the referrers tag of %s: %s", d, a)
	}
	var idx struct {
		Manifests []craftedDescriptor `json:"manifests"`
	}
	if err := json.Unmarshal(a.body, &idx); err != nil {
		t.Fatal(err)
	}
	cfg := r.emptyConfig(repo)
	blob := r.blob(repo, bundleType, []byte("{"+strings.Repeat(" ", size-2)+"}"))
	var entries []craftedDescriptor
	for i := range n {
		e, _ := r.manifestJSON(repo, "", craftedManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
			ArtifactType: bundleType, Config: &cfg, Layers: &[]craftedDescriptor{blob}, Subject: &subject,
			Annotations: map[string]string{"junk": strconv.Itoa(i)}})
		e.ArtifactType = bundleType
		entries = append(entries, e)
	}
	entries = append(entries, idx.Manifests...)
	body, err := json.Marshal(referrersIndex(entries))
	if err != nil {
		t.Fatal(err)
	}
	r.manifest(repo, tag, string(types.OCIImageIndex), body)
}

// TestRedTeam6ArtifactCheckReadsOutsideThePool: before a manifest shaped
// like a signature artifact is admitted unsigned, the proxy reads every
// layer blob (up to 100 of them, 1 MiB each for DSSE envelopes, 32 MiB in
// all) to check it is a JSON object and no tar. Those reads are made
// outside any signature lookup, so the process-wide pool of 64 MiB does
// not count them. The attacker pushes 32 DSSE envelopes of 1 MiB once and
// rt6Artifacts distinct .att-shaped manifests that list all of them (one
// annotation apart), and asks for all the manifests at once from four
// client addresses: each cold check reads 32 MiB.
//
// Safe: the peak resident memory of the proxy grows by at most 2 x (64 MiB
// of pool + 64 upstream slots x 1 MiB being read): what the proxy holds
// for these reads is bounded by its slots or its pool, not by the number
// of manifests asked for at once. And the correctly signed image still
// pulls with containerd during the flood.
func TestRedTeam6ArtifactCheckReadsOutsideThePool(t *testing.T) {
	t.Parallel()
	l := newGateLab(t)
	const repo = "prod/atts"
	const rt6Artifacts = 64
	env := rt6Envelope(t, "pool", 0)
	env = rt6Envelope(t, "pool", ((1<<20)-len(env))*3/4-64)
	layers := make([]craftedDescriptor, 32)
	for i := range layers {
		layers[i] = l.raw.blob(repo, dsseLayerType, append([]byte(strings.Repeat(" ", i)), env...))
	}
	cfg := l.raw.emptyConfig(repo)
	var wg sync.WaitGroup
	for k := range rt6Artifacts {
		wg.Go(func() {
			body, err := json.Marshal(craftedManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1),
				Config: &cfg, Layers: &layers, Annotations: map[string]string{"n": strconv.Itoa(k)}})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := l.raw.putManifest(repo, "a"+strconv.Itoa(k), string(types.OCIManifestSchema1), body); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	victim := l.registry + "/prod/victim:key"
	PushRandomImage(t, victim)
	sign(t, l.sh, l.trusted, victim)

	p := l.proxy(t, l.registry, l.registry)
	pid := p.proc.cmd.Process.Pid
	c := NewContainerdClient(t, Mirror{Proxy: p.addr, Upstream: l.registry})
	idle := procStatusKB(t, pid, "VmRSS")
	clients := []*http.Client{rt6FromAddr("127.0.0.2"), rt6FromAddr("127.0.0.3"), rt6FromAddr("127.0.0.4"), rt6FromAddr("127.0.0.5")}
	statuses := make([]int, rt6Artifacts)
	start := time.Now()
	for k := range rt6Artifacts {
		wg.Go(func() {
			req, err := http.NewRequest(http.MethodGet, manifestURL(p.addr, repo, "a"+strconv.Itoa(k)), nil)
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("Accept", manifestAccept)
			resp, err := clients[k%len(clients)].Do(req)
			if err != nil {
				statuses[k] = -1
				return
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			statuses[k] = resp.StatusCode
			if k < 2 && resp.StatusCode != http.StatusOK {
				t.Logf("a%d: %d %s", k, resp.StatusCode, body)
			}
		})
	}
	var victimErr error
	wg.Go(func() {
		time.Sleep(200 * time.Millisecond)
		res, err := c.Pull(context.Background(), "prod/victim:key")
		if err != nil {
			victimErr = fmt.Errorf("%w\n%s", err, lastLines(res.Output, 3))
		}
	})
	wg.Wait()
	peak := procStatusKB(t, pid, "VmHWM")
	count := map[int]int{}
	for _, s := range statuses {
		count[s]++
	}
	t.Logf("%d concurrent cold GETs of .att-shaped manifests (32 x 1 MiB DSSE layers each): answers %v in %v; proxy resident memory %d MiB idle, peak %d MiB",
		rt6Artifacts, count, time.Since(start).Round(time.Millisecond), idle>>20, peak>>20)
	if victimErr != nil {
		t.Errorf("ctr pull prod/victim:key (correctly signed) failed through the proxy during the flood: %v", victimErr)
	}
	bound := int64(2 * (64 + 64) << 20)
	if grew := peak - idle; grew > bound {
		t.Errorf("%d concurrent checks of .att-shaped manifests raised the proxy's resident memory by %d MiB (to %d MiB), past %d MiB: "+
			"the layer reads of the signature-artifact check are bounded neither by the lookup pool nor by the slots",
			rt6Artifacts, grew>>20, peak>>20, bound>>20)
	}
}
