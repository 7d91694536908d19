package deploy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/cosign-dev/cosign/proxy"
	"github.com/cosign-dev/cosign/sigstore"
)

// manifestDir holds the manifests that kustomization.yaml lists.
const manifestDir = "kubernetes"

// The user the image and every proxy container run as (the Dockerfile's
// USER), and the host directory containerd reads hosts.toml files from.
const (
	proxyUID         = 65532
	containerdCertsD = "/etc/containerd/certs.d"
	// tlsSecret is the one Secret the manifests use but do not ship: the
	// proxy's certificate, made by cert-manager or by hand.
	tlsSecret = "cosign-proxy-tls"
)

// object is one decoded manifest.
type object struct {
	file string
	kind string // apiVersion/kind
	obj  any
}

// newObject returns the k8s.io/api type for apiVersion and kind.
func newObject(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return &corev1.Namespace{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Secret":
		return &corev1.Secret{}
	case "v1/Service":
		return &corev1.Service{}
	case "apps/v1/DaemonSet":
		return &appsv1.DaemonSet{}
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	}
	return nil
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeStrict decodes every YAML document of data into its k8s.io/api
// type; an unknown or misspelt field, a duplicate key or an unknown kind
// fails.
func decodeStrict(t *testing.T, file string, data []byte) []object {
	t.Helper()
	var out []object
	for i, doc := range docSeparator.Split(string(data), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Errorf("%s: document %d: %v", file, i, err)
			continue
		}
		obj := newObject(tm.APIVersion, tm.Kind)
		if obj == nil {
			t.Errorf("%s: document %d: %s %s is not a kind this test knows; add it to newObject", file, i, tm.APIVersion, tm.Kind)
			continue
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Errorf("%s: document %d (%s): %v", file, i, tm.Kind, err)
			continue
		}
		out = append(out, object{file: file, kind: tm.APIVersion + "/" + tm.Kind, obj: obj})
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// kustomization is the part of kustomization.yaml the manifests use;
// decoding it strictly keeps it to that.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images"`
}

// manifests is everything under deploy/kubernetes, decoded.
type manifests struct {
	kust    kustomization
	objects []object
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{}
	data, err := os.ReadFile(filepath.Join(manifestDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &m.kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	entries, err := os.ReadDir(manifestDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || name == "kustomization.yaml" || (!strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml")) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(manifestDir, name))
		if err != nil {
			t.Fatal(err)
		}
		m.objects = append(m.objects, decodeStrict(t, name, data)...)
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

func find[T any](m *manifests) []T {
	var out []T
	for _, o := range m.objects {
		if v, ok := o.obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func (m *manifests) configMap(name string) *corev1.ConfigMap {
	for _, c := range find[*corev1.ConfigMap](m) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (m *manifests) secret(name string) *corev1.Secret {
	for _, s := range find[*corev1.Secret](m) {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// podSpec is a workload's pod template, named for messages.
type podSpec struct {
	name string
	spec *corev1.PodSpec
}

func (m *manifests) pods() []podSpec {
	var out []podSpec
	for _, d := range find[*appsv1.DaemonSet](m) {
		out = append(out, podSpec{"DaemonSet " + d.Name, &d.Spec.Template.Spec})
	}
	for _, d := range find[*appsv1.Deployment](m) {
		out = append(out, podSpec{"Deployment " + d.Name, &d.Spec.Template.Spec})
	}
	return out
}

// TestKustomizationListsEveryManifest: kubectl apply -k applies only what
// the kustomization lists, so a manifest left out would silently not be
// deployed.
func TestKustomizationListsEveryManifest(t *testing.T) {
	m := loadManifests(t)
	k := m.kust
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: apiVersion/kind %s/%s", k.APIVersion, k.Kind)
	}
	files := map[string]bool{}
	for _, o := range m.objects {
		files[o.file] = true
	}
	listed := map[string]bool{}
	for _, r := range k.Resources {
		if listed[r] {
			t.Errorf("kustomization.yaml lists %s twice", r)
		}
		listed[r] = true
		if !files[r] {
			t.Errorf("kustomization.yaml lists %s, which is not a manifest in %s", r, manifestDir)
		}
	}
	for f := range files {
		if !listed[f] {
			t.Errorf("%s is not listed in kustomization.yaml resources", f)
		}
	}
	for _, o := range m.objects {
		meta := objectMeta(o.obj)
		if o.kind == "v1/Namespace" {
			if meta.name != k.Namespace {
				t.Errorf("%s: Namespace %s, but the kustomization puts everything in %s", o.file, meta.name, k.Namespace)
			}
			continue
		}
		if meta.namespace != k.Namespace {
			t.Errorf("%s: %s %s is in namespace %q, want %q", o.file, o.kind, meta.name, meta.namespace, k.Namespace)
		}
	}
	// Every image override names an image the manifests use.
	used := map[string]bool{}
	for _, p := range m.pods() {
		for _, c := range slices.Concat(p.spec.InitContainers, p.spec.Containers) {
			name, _, _ := strings.Cut(c.Image, "@")
			if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
				name = name[:i]
			}
			used[name] = true
		}
	}
	for _, img := range k.Images {
		if !used[img.Name] {
			t.Errorf("kustomization.yaml images: %s is used by no container", img.Name)
		}
	}
}

type meta struct{ name, namespace string }

func objectMeta(o any) meta {
	switch v := o.(type) {
	case *corev1.Namespace:
		return meta{v.Name, v.Namespace}
	case *corev1.ServiceAccount:
		return meta{v.Name, v.Namespace}
	case *corev1.ConfigMap:
		return meta{v.Name, v.Namespace}
	case *corev1.Secret:
		return meta{v.Name, v.Namespace}
	case *corev1.Service:
		return meta{v.Name, v.Namespace}
	case *appsv1.DaemonSet:
		return meta{v.Name, v.Namespace}
	case *appsv1.Deployment:
		return meta{v.Name, v.Namespace}
	case *policyv1.PodDisruptionBudget:
		return meta{v.Name, v.Namespace}
	}
	panic(fmt.Sprintf("objectMeta: %T", o))
}

// TestKustomizeBuilds runs kubectl's built-in kustomize, where there is a
// kubectl, and decodes what it prints as strictly as the files.
func TestKustomizeBuilds(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("no kubectl on PATH: kustomize build not checked (the manifests are, by the other tests)")
	}
	out, err := exec.Command("kubectl", "kustomize", manifestDir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", manifestDir, err, out)
	}
	objs := decodeStrict(t, "kubectl kustomize output", out)
	if want := len(loadManifests(t).objects); len(objs) != want {
		t.Errorf("kustomize built %d objects, the files hold %d", len(objs), want)
	}
}

// TestPodSecurity checks every pod the manifests run: non-root as the
// image's user, read-only root filesystem, no privilege escalation, no
// capabilities, the runtime's seccomp profile, no service account token,
// and resources. The one exception is the init container that writes
// hosts.toml files to the node: it may run as root, with that hostPath as
// its only writable mount.
func TestPodSecurity(t *testing.T) {
	m := loadManifests(t)
	pods := m.pods()
	if len(pods) == 0 {
		t.Fatal("no workloads found")
	}
	sas := map[string]*corev1.ServiceAccount{}
	for _, sa := range find[*corev1.ServiceAccount](m) {
		sas[sa.Name] = sa
	}
	for _, p := range pods {
		s := p.spec
		if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken must be false", p.name)
		}
		sa := sas[s.ServiceAccountName]
		if sa == nil {
			t.Errorf("%s: serviceAccountName %q is not a ServiceAccount of the manifests", p.name, s.ServiceAccountName)
		} else if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Errorf("ServiceAccount %s: automountServiceAccountToken must be false", sa.Name)
		}
		psc := s.SecurityContext
		if psc == nil {
			t.Errorf("%s: no pod securityContext", p.name)
			continue
		}
		if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod seccompProfile must be RuntimeDefault", p.name)
		}
		if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != proxyUID {
			t.Errorf("%s: the pod must say runAsNonRoot: true, runAsUser: %d", p.name, proxyUID)
		}
		if s.HostPID || s.HostIPC {
			t.Errorf("%s: hostPID/hostIPC", p.name)
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range s.Volumes {
			volumes[v.Name] = v
		}
		check := func(c corev1.Container, init bool) {
			where := fmt.Sprintf("%s: container %s", p.name, c.Name)
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s: no securityContext", where)
				return
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: readOnlyRootFilesystem must be true", where)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation must be false", where)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s: privileged", where)
			}
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s: capabilities must drop ALL and add none", where)
			}
			if sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: seccompProfile overridden to %s", where, sc.SeccompProfile.Type)
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					t.Errorf("%s: no %s request", where, r)
				}
				if _, ok := c.Resources.Limits[r]; !ok {
					t.Errorf("%s: no %s limit", where, r)
				}
			}
			if c.ImagePullPolicy != corev1.PullIfNotPresent {
				t.Errorf("%s: imagePullPolicy %q, want IfNotPresent (a node whose proxy is down must not need to pull it again)", where, c.ImagePullPolicy)
			}
			uid, nonRoot := psc.RunAsUser, psc.RunAsNonRoot
			if sc.RunAsUser != nil {
				uid = sc.RunAsUser
			}
			if sc.RunAsNonRoot != nil {
				nonRoot = sc.RunAsNonRoot
			}
			asProxyUser := uid != nil && *uid == proxyUID && nonRoot != nil && *nonRoot
			var writable []string
			for _, vm := range c.VolumeMounts {
				v, ok := volumes[vm.Name]
				if !ok {
					t.Errorf("%s: mounts volume %s, which the pod does not have", where, vm.Name)
					continue
				}
				// Kubernetes mounts these read-only whatever readOnly says.
				if v.Projected != nil || v.Secret != nil || v.ConfigMap != nil {
					continue
				}
				if !vm.ReadOnly {
					writable = append(writable, vm.Name)
				}
			}
			switch {
			case asProxyUser:
				if len(writable) > 0 {
					t.Errorf("%s: writable mounts %v: the proxy writes nothing to disk", where, writable)
				}
			case !init:
				t.Errorf("%s: runs as uid %v (runAsNonRoot %v), want %d non-root", where, deref(uid), deref(nonRoot), proxyUID)
			default:
				// The hosts.toml installer: root, and only the node's
				// containerd certs.d directory writable.
				if len(writable) != 1 || volumes[writable[0]].HostPath == nil || volumes[writable[0]].HostPath.Path != containerdCertsD {
					t.Errorf("%s: runs as root, so its only writable mount must be the hostPath %s; it has %v", where, containerdCertsD, writable)
				}
			}
		}
		for _, c := range s.InitContainers {
			check(c, true)
		}
		for _, c := range s.Containers {
			check(c, false)
		}
		// A hostPath other than containerd's certs.d is not what the
		// proxy needs.
		for _, v := range s.Volumes {
			if v.HostPath != nil && v.HostPath.Path != containerdCertsD {
				t.Errorf("%s: hostPath %s", p.name, v.HostPath.Path)
			}
		}
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestNodeProxyShape checks the DaemonSet is the gate that cannot be
// bypassed: on every node, on the node's network, critical, and
// installing a hosts.toml for every registry its configuration gates.
func TestNodeProxyShape(t *testing.T) {
	m := loadManifests(t)
	dss := find[*appsv1.DaemonSet](m)
	if len(dss) != 1 {
		t.Fatalf("want one DaemonSet, have %d", len(dss))
	}
	ds := dss[0]
	s := &ds.Spec.Template.Spec
	if !s.HostNetwork {
		t.Error("DaemonSet: hostNetwork must be true: containerd reaches the proxy on the node's loopback")
	}
	if s.PriorityClassName != "system-node-critical" {
		t.Errorf("DaemonSet: priorityClassName %q, want system-node-critical: it gates every pull on the node", s.PriorityClassName)
	}
	if !slices.ContainsFunc(s.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
	}) {
		t.Error("DaemonSet: must tolerate every taint (operator: Exists): an ungated node is a bypass")
	}
	if len(s.InitContainers) < 2 || !slices.Contains(s.InitContainers[0].Args, "--check") {
		t.Error("DaemonSet: the first init container must run cosign proxy --check, before hosts.toml is installed")
	}

	pc := proxyContainer(t, "DaemonSet "+ds.Name, s)
	cfg, raw, _ := loadProxyConfig(t, m, "DaemonSet "+ds.Name, s, pc)
	if _, ok := raw["tls"]; ok {
		t.Error("node configuration: tls on loopback is not needed (containerd's hosts.toml names http://)")
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil || host != "127.0.0.1" {
		t.Errorf("node configuration: listen %q, want 127.0.0.1:PORT (the node's loopback only)", cfg.Listen)
	}
	// The check init container reads the same configuration.
	check := s.InitContainers[0]
	if !slices.Equal(check.Args[:len(check.Args)-1], pc.Args) || !reflect.DeepEqual(check.VolumeMounts, pc.VolumeMounts) || check.Image != pc.Image {
		t.Errorf("DaemonSet: init container %s must run the proxy's image with its args and mounts, plus --check", check.Name)
	}

	// hosts.toml: one per upstream, server = the proxy, no other host.
	var hostsVol *corev1.Volume
	var installer *corev1.Container
	for i := range s.Volumes {
		if cm := s.Volumes[i].ConfigMap; cm != nil && cm.Name == "cosign-containerd-hosts" {
			hostsVol = &s.Volumes[i]
		}
	}
	if hostsVol == nil {
		t.Fatal("DaemonSet: no volume of the ConfigMap cosign-containerd-hosts")
	}
	for i, c := range s.InitContainers {
		for _, vm := range c.VolumeMounts {
			if vm.Name == hostsVol.Name {
				installer = &s.InitContainers[i]
			}
		}
	}
	if installer == nil {
		t.Fatal("DaemonSet: no init container mounts the hosts.toml files")
	}
	cm := m.configMap("cosign-containerd-hosts")
	if cm == nil {
		t.Fatal("no ConfigMap cosign-containerd-hosts")
	}
	if len(hostsVol.ConfigMap.Items) != len(cm.Data) {
		t.Errorf("ConfigMap cosign-containerd-hosts has %d files, the DaemonSet installs %d", len(cm.Data), len(hostsVol.ConfigMap.Items))
	}
	upstreams := map[string]bool{}
	for _, u := range cfg.Upstreams {
		upstreams[u.Registry] = true
	}
	want := "http://" + cfg.Listen
	installed := map[string]bool{}
	for _, it := range hostsVol.ConfigMap.Items {
		registry, file := path.Split(it.Path)
		registry = strings.TrimSuffix(registry, "/")
		if file != "hosts.toml" || strings.Contains(registry, "/") || registry == "" {
			t.Errorf("hosts item %s: path %q, want <registry>/hosts.toml", it.Key, it.Path)
			continue
		}
		if !upstreams[registry] {
			t.Errorf("hosts.toml for %s, which is no upstream of the node configuration", registry)
		}
		installed[registry] = true
		toml, ok := cm.Data[it.Key]
		if !ok {
			t.Errorf("hosts item %s: no such key in ConfigMap cosign-containerd-hosts", it.Key)
			continue
		}
		servers := regexp.MustCompile(`(?m)^\s*server\s*=\s*"([^"]*)"\s*$`).FindAllStringSubmatch(toml, -1)
		if len(servers) != 1 || servers[0][1] != want {
			t.Errorf("%s/hosts.toml: want exactly one server = %q (the node proxy), got %v", registry, want, servers)
		}
		for _, h := range regexp.MustCompile(`(?m)^\s*\[host\."([^"]*)"\]`).FindAllStringSubmatch(toml, -1) {
			if h[1] != want {
				t.Errorf("%s/hosts.toml: [host.%q]: containerd would pull from it around the proxy; only %s may be listed", registry, h[1], want)
			}
		}
	}
	for r := range upstreams {
		if !installed[r] {
			t.Errorf("upstream %s of the node configuration has no hosts.toml: containerd would pull it directly", r)
		}
	}
	var hostPathOK bool
	for _, vm := range installer.VolumeMounts {
		for _, v := range s.Volumes {
			if v.Name == vm.Name && v.HostPath != nil && v.HostPath.Path == containerdCertsD && !vm.ReadOnly {
				hostPathOK = true
			}
		}
	}
	if !hostPathOK {
		t.Errorf("DaemonSet: init container %s does not mount %s writable", installer.Name, containerdCertsD)
	}
}

// TestServiceProxyShape checks the Deployment for Docker and podman
// clients: TLS, client authentication, a Service in front, a disruption
// budget.
func TestServiceProxyShape(t *testing.T) {
	m := loadManifests(t)
	deps := find[*appsv1.Deployment](m)
	if len(deps) != 1 {
		t.Fatalf("want one Deployment, have %d", len(deps))
	}
	d := deps[0]
	s := &d.Spec.Template.Spec
	if s.HostNetwork {
		t.Error("Deployment: hostNetwork")
	}
	pc := proxyContainer(t, "Deployment "+d.Name, s)
	cfg, raw, _ := loadProxyConfig(t, m, "Deployment "+d.Name, s, pc)
	if _, ok := raw["tls"]; !ok {
		t.Error("service configuration: no tls: Docker and containerd need HTTPS off loopback")
	}
	if _, ok := raw["clientAuth"]; !ok {
		t.Error("service configuration: no clientAuth: anyone who reaches the Service would pull with the proxy's credentials")
	}
	if host, _, _ := net.SplitHostPort(cfg.Listen); host != "0.0.0.0" && host != "" && host != "::" {
		t.Errorf("service configuration: listen %q: the Service reaches the pod's IP, not its loopback", cfg.Listen)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Error("Deployment: fewer than 2 replicas")
	}
	labels := d.Spec.Template.Labels
	var pdbs int
	for _, pdb := range find[*policyv1.PodDisruptionBudget](m) {
		if selects(pdb.Spec.Selector.MatchLabels, labels) {
			pdbs++
			if pdb.Spec.MinAvailable == nil && pdb.Spec.MaxUnavailable == nil {
				t.Errorf("PodDisruptionBudget %s: neither minAvailable nor maxUnavailable", pdb.Name)
			}
		}
	}
	if pdbs != 1 {
		t.Errorf("Deployment: %d PodDisruptionBudgets select its pods, want 1", pdbs)
	}
	var svcs int
	for _, svc := range find[*corev1.Service](m) {
		if !selects(svc.Spec.Selector, labels) {
			continue
		}
		svcs++
		for _, p := range svc.Spec.Ports {
			if port, ok := containerPort(pc, p.TargetPort); !ok || strconv.Itoa(int(port)) != portOf(cfg.Listen) {
				t.Errorf("Service %s port %s: targetPort %s is not the proxy's listen port %s", svc.Name, p.Name, p.TargetPort.String(), cfg.Listen)
			}
		}
	}
	if svcs != 1 {
		t.Errorf("Deployment: %d Services select its pods, want 1", svcs)
	}
}

// selects reports whether a non-empty selector matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func portOf(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// proxyContainer returns the container that runs `cosign proxy`, and
// checks its probes.
func proxyContainer(t *testing.T, where string, s *corev1.PodSpec) *corev1.Container {
	t.Helper()
	for i, c := range s.Containers {
		if len(c.Args) > 0 && c.Args[0] == "proxy" {
			return &s.Containers[i]
		}
	}
	t.Fatalf("%s: no container runs cosign proxy", where)
	return nil
}

// containerPort resolves a probe's or Service's port against c's ports.
func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// TestProbes checks that liveness asks /healthz and readiness /readyz, on
// the port and scheme the proxy's configuration listens on, at an address
// the kubelet reaches.
func TestProbes(t *testing.T) {
	m := loadManifests(t)
	for _, p := range m.pods() {
		c := proxyContainer(t, p.name, p.spec)
		cfg, raw, _ := loadProxyConfig(t, m, p.name, p.spec, c)
		host, port, _ := net.SplitHostPort(cfg.Listen)
		scheme := corev1.URISchemeHTTP
		if _, ok := raw["tls"]; ok {
			scheme = corev1.URISchemeHTTPS
		}
		for _, pr := range []struct {
			kind  string
			probe *corev1.Probe
			path  string
		}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
			where := fmt.Sprintf("%s: %s probe", p.name, pr.kind)
			if pr.probe == nil || pr.probe.HTTPGet == nil {
				t.Errorf("%s: want an httpGet probe of %s", where, pr.path)
				continue
			}
			g := pr.probe.HTTPGet
			if g.Path != pr.path {
				t.Errorf("%s: path %q, want %q", where, g.Path, pr.path)
			}
			if got, ok := containerPort(c, g.Port); !ok || strconv.Itoa(int(got)) != port {
				t.Errorf("%s: port %s is not the container port of listen %s", where, g.Port.String(), cfg.Listen)
			}
			if g.Scheme != scheme {
				t.Errorf("%s: scheme %q, want %q", where, g.Scheme, scheme)
			}
			// The kubelet probes the pod's IP unless told otherwise: a
			// proxy on loopback is reachable only with hostNetwork and
			// host 127.0.0.1.
			if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
				if !p.spec.HostNetwork || g.Host != host {
					t.Errorf("%s: the proxy listens on %s: want hostNetwork and host: %s", where, cfg.Listen, host)
				}
			} else if g.Host != "" {
				t.Errorf("%s: host %q: probe the pod's IP", where, g.Host)
			}
		}
	}
}

// TestSecretsArePlaceholders: the shipped Secret holds no key material,
// only REPLACE-ME text.
func TestSecretsArePlaceholders(t *testing.T) {
	m := loadManifests(t)
	for _, s := range find[*corev1.Secret](m) {
		if len(s.Data) > 0 {
			t.Errorf("Secret %s: data: use stringData with REPLACE-ME placeholders", s.Name)
		}
		for k, v := range s.StringData {
			if !strings.Contains(v, "REPLACE-ME") {
				t.Errorf("Secret %s: %s is not a REPLACE-ME placeholder", s.Name, k)
			}
			if strings.Contains(v, "-----BEGIN") {
				t.Errorf("Secret %s: %s holds PEM", s.Name, k)
			}
		}
	}
}

// TestProxyConfigsAreValid is done by loadProxyConfig for each pod; this
// names it, and checks that every proxy configuration in the ConfigMap is
// used by a pod.
func TestProxyConfigsAreValid(t *testing.T) {
	m := loadManifests(t)
	used := map[string]bool{}
	var resolvedConfigs [][2]string // workload, configuration file
	for _, p := range m.pods() {
		c := proxyContainer(t, p.name, p.spec)
		cfg, _, resolved := loadProxyConfig(t, m, p.name, p.spec, c)
		resolvedConfigs = append(resolvedConfigs, [2]string{p.name, resolved})
		t.Logf("%s: configuration valid: listen %s, %d upstreams, %d policies", p.name, cfg.Listen, len(cfg.Upstreams), len(cfg.Policies))
		for _, v := range p.spec.Volumes {
			if v.Projected == nil {
				continue
			}
			for _, src := range v.Projected.Sources {
				if src.ConfigMap != nil && src.ConfigMap.Name == "cosign-proxy-config" {
					for _, it := range src.ConfigMap.Items {
						used[it.Key] = true
					}
				}
			}
		}
	}
	cm := m.configMap("cosign-proxy-config")
	if cm == nil {
		t.Fatal("no ConfigMap cosign-proxy-config")
	}
	for k := range cm.Data {
		if !used[k] {
			t.Errorf("ConfigMap cosign-proxy-config: %s is used by no pod", k)
		}
	}

	// What the node proxy's init container runs: the real CLI's --check,
	// which also reads the credential and certificate files.
	bin := filepath.Join(t.TempDir(), "cosign")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/cosign")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ../cmd/cosign: %v\n%s", err, out)
	}
	for _, rc := range resolvedConfigs {
		out, err := exec.Command(bin, "proxy", "--config", rc[1], "--check").CombinedOutput()
		if err != nil {
			t.Errorf("%s: cosign proxy --check: %v\n%s", rc[0], err, out)
		} else {
			t.Logf("%s: cosign proxy --check: %s", rc[0], strings.TrimSpace(string(out)))
		}
	}
}

// loadProxyConfig materializes the files the proxy container sees under its
// projected mounts in a temporary directory (ConfigMap data as shipped,
// Secret placeholders replaced by test keys, credentials and a
// certificate), checks that every path the configuration names is among
// them, and parses the configuration with proxy.ParseConfig. It returns the
// parsed configuration, its top-level keys, and the path of a copy whose
// paths point into the temporary directory.
func loadProxyConfig(t *testing.T, m *manifests, where string, s *corev1.PodSpec, c *corev1.Container) (*proxy.Config, map[string]any, string) {
	t.Helper()
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("%s: container %s: no --config FILE in args %v", where, c.Name, c.Args)
	}
	configPath := c.Args[i+1]
	root := t.TempDir()
	volumes := map[string]corev1.Volume{}
	for _, v := range s.Volumes {
		volumes[v.Name] = v
	}
	files := map[string]bool{} // paths inside the container
	var mounts []string
	for _, vm := range c.VolumeMounts {
		v := volumes[vm.Name]
		if v.Projected == nil {
			t.Errorf("%s: container %s: volume %s is not projected: the proxy's files come from one projected volume", where, c.Name, vm.Name)
			continue
		}
		mounts = append(mounts, vm.MountPath)
		for _, src := range v.Projected.Sources {
			switch {
			case src.ConfigMap != nil:
				cm := m.configMap(src.ConfigMap.Name)
				if cm == nil {
					t.Fatalf("%s: projects ConfigMap %s, which the manifests do not ship", where, src.ConfigMap.Name)
				}
				for _, it := range src.ConfigMap.Items {
					data, ok := cm.Data[it.Key]
					if !ok {
						t.Fatalf("%s: ConfigMap %s has no key %s", where, cm.Name, it.Key)
					}
					writeIn(t, root, path.Join(vm.MountPath, it.Path), []byte(data), files)
				}
			case src.Secret != nil:
				sec := m.secret(src.Secret.Name)
				if sec == nil && src.Secret.Name != tlsSecret {
					t.Errorf("%s: projects Secret %s, which the manifests do not ship (only %s is left to cert-manager)", where, src.Secret.Name, tlsSecret)
				}
				for _, it := range src.Secret.Items {
					if sec != nil {
						if _, ok := sec.StringData[it.Key]; !ok {
							t.Errorf("%s: Secret %s has no key %s", where, sec.Name, it.Key)
						}
					} else if !slices.Contains([]string{"tls.crt", "tls.key", "ca.crt"}, it.Key) {
						t.Errorf("%s: Secret %s (kubernetes.io/tls) has no key %s", where, src.Secret.Name, it.Key)
					}
					writeIn(t, root, path.Join(vm.MountPath, it.Path), testMaterial(t, it.Path), files)
				}
			default:
				t.Errorf("%s: volume %s: a projected source this test does not know", where, vm.Name)
			}
		}
	}
	if !files[configPath] {
		t.Fatalf("%s: --config %s is not a file of the container's mounts (%v)", where, configPath, sortedKeys(files))
	}
	data, err := os.ReadFile(filepath.Join(root, configPath))
	if err != nil {
		t.Fatal(err)
	}
	// Every absolute path under a mount that the configuration names (not
	// in a comment) must be a file the pod provides.
	text := stripComments(string(data))
	for _, mp := range mounts {
		re := regexp.MustCompile(regexp.QuoteMeta(mp+"/") + `[A-Za-z0-9._/-]+`)
		for _, p := range re.FindAllString(text, -1) {
			if !files[p] {
				t.Errorf("%s: the configuration names %s, which no volume of the container provides", where, p)
			}
		}
		text = strings.ReplaceAll(text, mp+"/", filepath.Join(root, mp)+"/")
	}
	cfg, err := proxy.ParseConfig([]byte(text), where+": "+configPath, filepath.Dir(filepath.Join(root, configPath)))
	if err != nil {
		t.Fatalf("%s: proxy.ParseConfig rejects the configuration: %v", where, err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	resolved := filepath.Join(filepath.Dir(filepath.Join(root, configPath)), "config.resolved.yaml")
	if err := os.WriteFile(resolved, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, raw, resolved
}

func writeIn(t *testing.T, root, p string, data []byte, files map[string]bool) {
	t.Helper()
	if files[p] {
		t.Errorf("two volume items write %s", p)
	}
	files[p] = true
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// testMaterial is what a deployment puts in place of a placeholder, made
// up for the test from the file's name.
func testMaterial(t *testing.T, p string) []byte {
	t.Helper()
	base := path.Base(p)
	switch {
	case strings.HasSuffix(base, ".pub"):
		_, pub, err := sigstore.GenerateKeyPair(nil)
		if err != nil {
			t.Fatal(err)
		}
		return pub
	case base == "htpasswd":
		h, err := bcrypt.GenerateFromPassword([]byte("test-password"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return []byte("test:" + string(h) + "\n")
	case strings.HasSuffix(base, ".json"):
		registry := strings.TrimSuffix(base, ".json")
		auth := base64.StdEncoding.EncodeToString([]byte("test:test-password"))
		return fmt.Appendf(nil, `{"auths": {%q: {"auth": %q}}}`, registry, auth)
	case base == "tls.crt" || base == "ca.crt" || strings.HasSuffix(base, ".crt"):
		cert, _ := testCertificate(t)
		return cert
	case base == "tls.key":
		_, key := testCertificate(t)
		return key
	case strings.Contains(base, "password"):
		return []byte("test-password\n")
	}
	t.Fatalf("no test material for %s: teach testMaterial about it", p)
	return nil
}

var testCert struct{ cert, key []byte }

// testCertificate returns one self-signed certificate and its key (PEM),
// the same on every call so that tls.crt and tls.key match.
func testCertificate(t *testing.T) (cert, key []byte) {
	t.Helper()
	if testCert.cert != nil {
		return testCert.cert, testCert.key
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cosign-proxy.cosign-system.svc"},
		DNSNames:              []string{"cosign-proxy.cosign-system.svc"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	testCert.cert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	testCert.key = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	return testCert.cert, testCert.key
}

// TestInstallHostsScript runs the DaemonSet's hosts.toml installer with
// this machine's sh, on a copy of the ConfigMap volume laid out as the
// kubelet lays it out (files in a timestamped directory, ..data and the
// top-level names as symlinks), twice, the second time with changed
// files as after an update: each <registry>/hosts.toml must end up in
// certs.d with the ConfigMap's content, and nothing else.
func TestInstallHostsScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH")
	}
	m := loadManifests(t)
	ds := find[*appsv1.DaemonSet](m)[0]
	s := &ds.Spec.Template.Spec
	cm := m.configMap("cosign-containerd-hosts")
	var hostsVol, certsVol string
	var items []corev1.KeyToPath
	for _, v := range s.Volumes {
		switch {
		case v.ConfigMap != nil && v.ConfigMap.Name == cm.Name:
			hostsVol, items = v.Name, v.ConfigMap.Items
		case v.HostPath != nil && v.HostPath.Path == containerdCertsD:
			certsVol = v.Name
		}
	}
	var installer *corev1.Container
	var hostsMount, certsMount string
	for i, c := range s.InitContainers {
		for _, vm := range c.VolumeMounts {
			switch vm.Name {
			case hostsVol:
				installer, hostsMount = &s.InitContainers[i], vm.MountPath
			case certsVol:
				certsMount = vm.MountPath
			}
		}
	}
	if installer == nil || hostsMount == "" || certsMount == "" {
		t.Fatal("DaemonSet: no init container mounts both the hosts ConfigMap and the certs.d hostPath")
	}
	cmd := slices.Concat(installer.Command, installer.Args)
	if len(cmd) != 3 || cmd[0] != "/bin/sh" || !strings.HasPrefix(cmd[1], "-") {
		t.Fatalf("installer: command %q, want [/bin/sh -ec SCRIPT]", cmd)
	}
	tmp := t.TempDir()
	hostsDir, certsDir := filepath.Join(tmp, "hosts"), filepath.Join(tmp, "certs.d")
	if err := os.MkdirAll(certsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The mount paths as whole words of the script: not /hosts of
	// */hosts.toml.
	script := cmd[2]
	for mount, dir := range map[string]string{hostsMount: hostsDir, certsMount: certsDir} {
		re := regexp.MustCompile(`(^|[\s"'])` + regexp.QuoteMeta(mount) + `([/\s"']|$)`)
		script = re.ReplaceAllString(script, "${1}"+dir+"${2}")
	}

	for round, suffix := range []string{"", "# changed\n"} {
		layConfigMapVolume(t, hostsDir, round, items, cm.Data, suffix)
		out, err := exec.Command(sh, cmd[1], script).CombinedOutput()
		if err != nil {
			t.Fatalf("round %d: the installer script failed: %v\n%s\nscript:\n%s", round, err, out, script)
		}
		var got []string
		err = filepath.WalkDir(certsDir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(certsDir, p)
			got = append(got, rel)
			if d.Type()&os.ModeSymlink != 0 {
				t.Errorf("round %d: %s is a symlink into the ConfigMap volume, want a copy", round, rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, it := range items {
			want = append(want, it.Path)
			data, err := os.ReadFile(filepath.Join(certsDir, it.Path))
			if err != nil {
				t.Errorf("round %d: %v", round, err)
				continue
			}
			if string(data) != cm.Data[it.Key]+suffix {
				t.Errorf("round %d: %s holds %q, want the ConfigMap's %s", round, it.Path, data, it.Key)
			}
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("round %d: certs.d holds %v, want exactly %v", round, got, want)
		}
	}
}

// layConfigMapVolume writes items as the kubelet does for a ConfigMap
// volume: the files in ..<timestamp>/, ..data pointing at it, and each
// top-level name a symlink through ..data.
func layConfigMapVolume(t *testing.T, dir string, round int, items []corev1.KeyToPath, data map[string]string, suffix string) {
	t.Helper()
	ts := fmt.Sprintf("..2026_01_01_00_00_0%d.000000001", round)
	for _, it := range items {
		p := filepath.Join(dir, ts, it.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data[it.Key]+suffix), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmpLink := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(ts, tmpLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		top := strings.Split(it.Path, "/")[0]
		link := filepath.Join(dir, top)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", top), link); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAPIServerRules checks a few rules the API server enforces that
// decoding does not: a workload's selector matches its pod template, port
// names are IANA service names, ConfigMap and Secret keys are valid, and
// volume item paths stay inside their volume.
func TestAPIServerRules(t *testing.T) {
	m := loadManifests(t)
	for _, d := range find[*appsv1.DaemonSet](m) {
		if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			t.Errorf("DaemonSet %s: selector does not match its template's labels", d.Name)
		}
	}
	for _, d := range find[*appsv1.Deployment](m) {
		if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			t.Errorf("Deployment %s: selector does not match its template's labels", d.Name)
		}
	}
	portName := regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	for _, p := range m.pods() {
		for _, c := range slices.Concat(p.spec.InitContainers, p.spec.Containers) {
			for _, cp := range c.Ports {
				if len(cp.Name) > 15 || !portName.MatchString(cp.Name) || !strings.ContainsAny(cp.Name, "abcdefghijklmnopqrstuvwxyz") {
					t.Errorf("%s: container %s: port name %q is not an IANA service name", p.name, c.Name, cp.Name)
				}
				if p.spec.HostNetwork && cp.HostPort != 0 && cp.HostPort != cp.ContainerPort {
					t.Errorf("%s: container %s: hostNetwork wants hostPort = containerPort", p.name, c.Name)
				}
			}
		}
		for _, v := range p.spec.Volumes {
			var items []corev1.KeyToPath
			switch {
			case v.ConfigMap != nil:
				items = v.ConfigMap.Items
			case v.Projected != nil:
				for _, src := range v.Projected.Sources {
					if src.ConfigMap != nil {
						items = append(items, src.ConfigMap.Items...)
					}
					if src.Secret != nil {
						items = append(items, src.Secret.Items...)
					}
				}
			}
			for _, it := range items {
				if path.IsAbs(it.Path) || slices.Contains(strings.Split(it.Path, "/"), "..") || strings.HasPrefix(it.Path, "..") {
					t.Errorf("%s: volume %s: item path %q", p.name, v.Name, it.Path)
				}
			}
		}
	}
	key := regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	for _, c := range find[*corev1.ConfigMap](m) {
		for k := range c.Data {
			if !key.MatchString(k) || len(k) > 253 {
				t.Errorf("ConfigMap %s: key %q", c.Name, k)
			}
		}
	}
	for _, s := range find[*corev1.Secret](m) {
		for k := range s.StringData {
			if !key.MatchString(k) || len(k) > 253 {
				t.Errorf("Secret %s: key %q", s.Name, k)
			}
		}
	}
}
