package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/cosign-dev/cosign/sigstore"
)

// TestSchema1ManifestPosingAsSignatureArtifactIsVerified: Docker schema 1
// manifests (and bodies served as application/json, which Docker reads as
// schema 1) run the blobs named by fsLayers and ignore a "layers" field.
// Layers that declare a signature media type must not make such a document
// a signature artifact: it is verified like any image, and refused unsigned.
func TestSchema1ManifestPosingAsSignatureArtifactIsVerified(t *testing.T) {
	e := newEnv(t)
	const tarBlob = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
	body := `{"schemaVersion":1,"name":"prod/app","tag":"v1","architecture":"amd64",` +
		`"fsLayers":[{"blobSum":"` + tarBlob + `"}],` +
		`"history":[{"v1Compatibility":"{\"id\":\"x\",\"config\":{\"Cmd\":[\"/evil\"]}}"}],` +
		`"layers":[{"mediaType":"` + sigstore.SimpleSigningMediaType + `","size":2,"digest":"` + tarBlob + `"}],` +
		`"signatures":[]}`
	for _, contentType := range []string{
		"application/vnd.docker.distribution.manifest.v1+prettyjws",
		"application/vnd.docker.distribution.manifest.v1+json",
		"application/json",
	} {
		t.Run(contentType, func(t *testing.T) {
			e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path != "/v2/prod/app/manifests/v1" {
					return false
				}
				serveBytes(w, []byte(body), contentType)
				return true
			})
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				wantStatus(t, e.do(method, "/v2/prod/app/manifests/v1"), http.StatusForbidden, "DENIED")
			}
		})
	}
}

// TestHalfClosedClientGetsNoEmpty200: a client that half-closes its
// connection after sending the request makes net/http cancel the request's
// context while the response can still be read. The manifest gate must not
// then end with nothing written, which net/http turns into "200 OK" with an
// empty body for a manifest that was never verified.
func TestHalfClosedClientGetsNoEmpty200(t *testing.T) {
	e := newEnv(t)
	e.pushRandom("prod/app", "v1")
	e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		time.Sleep(300 * time.Millisecond) // the client half-closes meanwhile
		return false
	})
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		conn, err := net.Dial("tcp", e.host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "%s /v2/prod/app/manifests/v1 HTTP/1.1\r\nHost: %s\r\n\r\n", method, e.host)
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
		if err != nil {
			continue // nothing answered: fine
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("%s: a cancelled, unverified manifest request answered 200 (%v)", method, resp.Header)
		}
	}
}

// TestZeroLayerManifestIsNotASignatureArtifact: "every layer is a
// signature payload" must not hold vacuously for a manifest with no layers.
func TestZeroLayerManifestIsNotASignatureArtifact(t *testing.T) {
	e := newEnv(t)
	const oci = "application/vnd.oci.image.manifest.v1+json"
	body := `{"schemaVersion":2,"mediaType":"` + oci + `","config":{"mediaType":"application/vnd.oci.image.config.v1+json",` +
		`"size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}`
	e.up.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/v2/prod/app/manifests/empty" {
			return false
		}
		serveBytes(w, []byte(body), oci)
		return true
	})
	wantStatus(t, e.do(http.MethodGet, "/v2/prod/app/manifests/empty"), http.StatusForbidden, "DENIED")
}
