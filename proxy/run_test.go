package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// running is a proxy.Run serving in the background.
type running struct {
	addr   string
	maddr  string // metricsListen's address, if any
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
}

// startRun runs the proxy of the configuration file at path until the test
// ends (or stop is called).
func startRun(t *testing.T, path string, reload <-chan struct{}) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), logs: &syncBuffer{}}
	started := make(chan [2]string, 1)
	go func() {
		r.done <- Run(ctx, RunOptions{
			ConfigPath:   path,
			Stderr:       r.logs,
			Reload:       reload,
			PollInterval: 20 * time.Millisecond,
			Started:      func(addr, maddr string) { started <- [2]string{addr, maddr} },
		})
	}()
	select {
	case a := <-started:
		r.addr, r.maddr = a[0], a[1]
	case err := <-r.done:
		cancel()
		t.Fatalf("Run returned before serving: %v", err)
	}
	t.Cleanup(func() {
		if r.cancel != nil {
			r.stop(t)
		}
	})
	return r
}

// stop cancels Run's context and checks that it returns nil.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Errorf("Run returned %v after its context ended, want nil", err)
	}
}

// status is the status of GET url (-1 and the error text on a transport
// error).
func status(c *http.Client, url string) (int, string) {
	resp, err := c.Get(url)
	if err != nil {
		return -1, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// runConfig is a configuration file for e's upstream, trusting the key in
// keys/trusted.pub, with extra YAML appended.
func runConfig(e *env, extra string) string {
	return fmt.Sprintf(`listen: 127.0.0.1:0
upstreams:
  - registry: %s
    url: %s
policies:
  - name: all
    match: ["%s/**"]
    keys: [keys/trusted.pub]
upstreamTimeout: 10s
%s`, e.up.host, e.up.URL, e.up.host, extra)
}

func TestRunReloadsWhenFilesChangeOrOnSignal(t *testing.T) {
	e := newEnv(t)
	other := newTestKey(t)
	_, d1 := e.pushRandom("app", "v1")
	e.sign("app", d1, e.key)
	_, d2 := e.pushRandom("app", "v2")
	e.sign("app", d2, other)

	dir := t.TempDir()
	cfgPath, keyPath := filepath.Join(dir, "proxy.yaml"), filepath.Join(dir, "keys", "trusted.pub")
	good := runConfig(e, "log:\n  format: json\n")
	writeFileAtomic(t, keyPath, e.key.pem)
	writeFileAtomic(t, cfgPath, []byte(good))
	reload := make(chan struct{})
	r := startRun(t, cfgPath, reload)
	base := "http://" + r.addr
	v1, v2 := base+"/v2/app/manifests/v1", base+"/v2/app/manifests/v2"
	metric := func(name string) float64 {
		code, text := status(http.DefaultClient, base+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d", code)
		}
		return metricIn(t, text, name)
	}
	pulls := func(want1, want2 int) func() bool {
		return func() bool {
			c1, _ := status(http.DefaultClient, v1)
			c2, _ := status(http.DefaultClient, v2)
			return c1 == want1 && c2 == want2
		}
	}
	if !pulls(http.StatusOK, http.StatusForbidden)() {
		t.Fatal("before any change: want v1 200 and v2 403")
	}

	// The key file the policy names changes: the next pulls are decided
	// with the new key.
	writeFileAtomic(t, keyPath, other.pem)
	eventually(t, "the new key in force", pulls(http.StatusForbidden, http.StatusOK))
	reloads := metric("cosign_proxy_config_reloads_total")
	if reloads < 1 {
		t.Fatalf("config_reloads_total = %v after a reload", reloads)
	}

	// A broken configuration: logged, counted, the one in force stays.
	errorsBefore := metric("cosign_proxy_config_reload_errors_total")
	writeFileAtomic(t, cfgPath, []byte("upstreams: [\n"))
	eventually(t, "the broken configuration counted", func() bool {
		return metric("cosign_proxy_config_reload_errors_total") > errorsBefore
	})
	if !pulls(http.StatusForbidden, http.StatusOK)() {
		t.Fatal("after a broken configuration: want the one in force (v1 403, v2 200)")
	}
	if got := metric("cosign_proxy_config_reloads_total"); got != reloads {
		t.Errorf("config_reloads_total went from %v to %v on a broken configuration", reloads, got)
	}

	// Fixed again: picked up.
	writeFileAtomic(t, cfgPath, []byte(good))
	eventually(t, "the fixed configuration reloaded", func() bool {
		return metric("cosign_proxy_config_reloads_total") > reloads
	})
	reloads = metric("cosign_proxy_config_reloads_total")

	// A signal with no file changed reloads too.
	select {
	case reload <- struct{}{}:
	case <-time.After(20 * time.Second):
		t.Fatal("Run does not receive from RunOptions.Reload")
	}
	eventually(t, "a reload on the signal", func() bool {
		return metric("cosign_proxy_config_reloads_total") == reloads+1
	})
	if !pulls(http.StatusForbidden, http.StatusOK)() {
		t.Fatal("after the signal: want v1 403, v2 200")
	}

	r.stop(t)
	// The logs are JSON (log.format), flushed when Run returns.
	var sawError, sawSignal bool
	for line := range strings.SplitSeq(strings.TrimSpace(logText(r.logs)), "\n") {
		if strings.HasPrefix(line, "cosign proxy listening on ") {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		switch rec["msg"] {
		case "configuration not reloaded; the one in force stays":
			sawError = rec["level"] == "ERROR" && strings.Contains(fmt.Sprint(rec["error"]), "proxy.yaml")
		case "configuration reloaded":
			sawSignal = sawSignal || rec["trigger"] == "signal"
		}
	}
	if !sawError || !sawSignal {
		t.Errorf("logs lack the refused reload (%v) or the reload on signal (%v):\n%s", sawError, sawSignal, logText(r.logs))
	}
}

func TestCheckValidatesTheFileAndWhatItNames(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "proxy.yaml")
	writeFileAtomic(t, filepath.Join(dir, "keys", "trusted.pub"), e.key.pem)
	for _, tc := range []struct {
		name, yaml string
		ok         bool
	}{
		{"good", runConfig(e, ""), true},
		{"syntax", "upstreams: [\n", false},
		{"missing cert", runConfig(e, "tls:\n  cert: nope.crt\n  key: nope.key\n"), false},
		{"missing htpasswd", runConfig(e, "clientAuth:\n  htpasswd: nope\n"), false},
		{"unknown key", runConfig(e, "log:\n  colour: red\n"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFileAtomic(t, cfgPath, []byte(tc.yaml))
			err := Check(cfgPath)
			if (err == nil) != tc.ok {
				t.Fatalf("Check: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// --- certificates for the TLS tests ---

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a leaf certificate for 127.0.0.1 (a server's) or a client's,
// and returns its PEM certificate and key.
func (ca *testCA) issue(t testing.TB, serial int64, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: fmt.Sprintf("leaf %d", serial)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	if client {
		tmpl.ExtKeyUsage, tmpl.IPAddresses = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// httpsClient trusts ca, presents cert when given, and opens a new
// connection for every request.
func httpsClient(ca *testCA, cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	tc := &tls.Config{RootCAs: pool}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
}

// servedSerial is the serial number of the certificate a new connection
// to addr sees, or -1.
func servedSerial(ca *testCA, addr string) int64 {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		return -1
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestRunServesTLSAndPicksUpRotatedCertificates(t *testing.T) {
	e := newEnv(t)
	_, d := e.pushRandom("app", "v1")
	e.sign("app", d, e.key)
	ca := newTestCA(t, "proxy CA")
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c1, k1 := ca.issue(t, 100, false)
	writeFileAtomic(t, certPath, c1)
	writeFileAtomic(t, keyPath, k1)
	writeFileAtomic(t, filepath.Join(dir, "keys", "trusted.pub"), e.key.pem)
	cfgPath := filepath.Join(dir, "proxy.yaml")
	writeFileAtomic(t, cfgPath, []byte(runConfig(e, "tls:\n  cert: tls.crt\n  key: tls.key\n")))

	r := startRun(t, cfgPath, nil)
	client := httpsClient(ca, nil)
	base := "https://" + r.addr
	if code, b := status(client, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz over HTTPS: %d %s", code, b)
	}
	if code, b := status(client, base+"/v2/app/manifests/v1"); code != http.StatusOK {
		t.Fatalf("pull over HTTPS: %d %s", code, b)
	}
	if code, b := status(http.DefaultClient, "http://"+r.addr+"/healthz"); code == http.StatusOK {
		t.Fatalf("plain HTTP answered on the TLS listener: %s", b)
	}
	if got := servedSerial(ca, r.addr); got != 100 {
		t.Fatalf("serving serial %d, want 100", got)
	}

	// cert-manager replaces the pair.
	c2, k2 := ca.issue(t, 200, false)
	writeFileAtomic(t, keyPath, k2)
	writeFileAtomic(t, certPath, c2)
	eventually(t, "the rotated certificate served", func() bool { return servedSerial(ca, r.addr) == 200 })
	if code, b := status(client, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz after rotation: %d %s", code, b)
	}

	// A pair that does not load (the key of another certificate): the
	// previous one stays.
	_, k3 := ca.issue(t, 300, false)
	writeFileAtomic(t, keyPath, k3)
	eventually(t, "the mismatched pair looked at and refused", func() bool {
		if code, b := status(client, base+"/healthz"); code != http.StatusOK {
			t.Fatalf("/healthz with a mismatched pair on disk: %d %s", code, b)
		}
		if got := servedSerial(ca, r.addr); got != 200 {
			t.Fatalf("serving serial %d with a mismatched pair on disk, want 200 still", got)
		}
		return strings.Contains(logText(r.logs), "TLS certificate not reloaded")
	})
	r.stop(t)
}

func TestRunRequiresClientCertificatesWithClientCA(t *testing.T) {
	e := newEnv(t)
	serverCA, clientCA, strangerCA := newTestCA(t, "server CA"), newTestCA(t, "client CA"), newTestCA(t, "stranger CA")
	dir := t.TempDir()
	sc, sk := serverCA.issue(t, 1, false)
	writeFileAtomic(t, filepath.Join(dir, "tls.crt"), sc)
	writeFileAtomic(t, filepath.Join(dir, "tls.key"), sk)
	writeFileAtomic(t, filepath.Join(dir, "clients.pem"), clientCA.pem)
	writeFileAtomic(t, filepath.Join(dir, "keys", "trusted.pub"), e.key.pem)
	cfgPath := filepath.Join(dir, "proxy.yaml")
	writeFileAtomic(t, cfgPath, []byte(runConfig(e, "tls:\n  cert: tls.crt\n  key: tls.key\n  clientCA: clients.pem\n")))
	r := startRun(t, cfgPath, nil)
	url := "https://" + r.addr + "/healthz"

	pair := func(ca *testCA) *tls.Certificate {
		c, k := ca.issue(t, 7, true)
		cert, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return &cert
	}
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		ok   bool
	}{
		{"no client certificate", nil, false},
		{"a certificate of another CA", pair(strangerCA), false},
		{"a certificate of the client CA", pair(clientCA), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b := status(httpsClient(serverCA, tc.cert), url)
			if tc.ok && code != http.StatusOK {
				t.Fatalf("%d %s, want 200", code, b)
			}
			if !tc.ok && code != -1 {
				t.Fatalf("answered %d %s, want a failed handshake", code, b)
			}
		})
	}
	r.stop(t)
}

// TestRunRefusesWhatDoesNotLoad: Run returns the configuration's error
// instead of serving.
func TestRunRefusesWhatDoesNotLoad(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "proxy.yaml")
	writeFileAtomic(t, cfgPath, []byte("upstreams: [\n"))
	err := Run(context.Background(), RunOptions{ConfigPath: cfgPath, Stderr: io.Discard,
		Started: func(string, string) { t.Error("Run served a configuration that does not load") }})
	if err == nil || !strings.Contains(err.Error(), "proxy.yaml") {
		t.Fatalf("Run: %v, want the configuration's error", err)
	}
}

func TestRunServesMetricsOnMetricsListen(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	writeFileAtomic(t, filepath.Join(dir, "keys", "trusted.pub"), e.key.pem)
	cfgPath := filepath.Join(dir, "proxy.yaml")
	writeFileAtomic(t, cfgPath, []byte(runConfig(e, "metricsListen: 127.0.0.1:0\n")))
	r := startRun(t, cfgPath, nil)
	if r.maddr == "" || r.maddr == r.addr {
		t.Fatalf("metrics address %q (proxy at %q)", r.maddr, r.addr)
	}
	if code, _ := status(http.DefaultClient, "http://"+r.addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}
	code, text := status(http.DefaultClient, "http://"+r.maddr+"/metrics")
	if code != http.StatusOK || !strings.Contains(text, "cosign_proxy_requests_total") {
		t.Fatalf("/metrics on metricsListen: %d", code)
	}
	if code, _ := status(http.DefaultClient, "http://"+r.addr+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the proxy's own address: %d, want 404 when metricsListen is set", code)
	}
	r.stop(t)
}
