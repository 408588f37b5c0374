package controlplane

import (
	"context"
	"encoding/base64"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/pkg/dra/drakubelet"
)

// draManifests is the directory of the DRA manifests under test.
var draManifests = filepath.Join("..", "..", "images", "device-plugin", "dra")

// draControlPlane is the shared control plane plus the components DRA
// needs, whose exits the waits below watch.
type draControlPlane struct {
	*controlPlane
	// exited holds each extra component's done channel by name.
	exited map[string]<-chan struct{}
}

// alive fails the test at once when a component has exited: a wait for
// the scheduler must not run into its timeout because the scheduler died.
func (cp *draControlPlane) alive(t testing.TB) {
	t.Helper()
	for name, done := range cp.exited {
		select {
		case <-done:
			t.Fatalf("%s exited (its log is in %s)", name, filepath.Join(cp.dir, name+".log"))
		default:
		}
	}
}

// startDRAControlPlane starts the shared control plane plus what DRA needs
// of the rest of Kubernetes: a kube-controller-manager running the
// resourceclaim controller (claims from templates) and the device taint
// eviction controller, and kube-scheduler, whose DRA plugin allocates
// claims against the published slices. Neither serves HTTPS (port 0).
func startDRAControlPlane(t testing.TB) *draControlPlane {
	t.Helper()
	bins := requireTools(t, "kube-scheduler", "kube-controller-manager")
	cp := &draControlPlane{controlPlane: startControlPlane(t), exited: map[string]<-chan struct{}{}}
	kc := writeFile(t, filepath.Join(cp.dir, "dra-admin.conf"), cp.adminKC)
	cp.exited["kube-controller-manager-dra"] = startProcess(t, cp.dir, "kube-controller-manager-dra", bins["kube-controller-manager"],
		"--kubeconfig="+kc,
		"--controllers=resourceclaim-controller,device-taint-eviction-controller",
		"--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false",
		"--use-service-account-credentials=false")
	schedCfg := writeFile(t, filepath.Join(cp.dir, "scheduler.yaml"), []byte(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: `+kc+`
leaderElection:
  leaderElect: false
`))
	cp.exited["kube-scheduler"] = startProcess(t, cp.dir, "kube-scheduler", bins["kube-scheduler"],
		"--config="+schedCfg, "--secure-port=0", "--bind-address=127.0.0.1")
	return cp
}

// driverName is the Slipway DRA driver's name. The tests run the real
// device-plugin binary and import nothing of it: pkg/devices links go-nvml
// (cgo, symbols resolved when libnvidia-ml loads), and a binary that also
// links Go's plugin package (this one does, through helm and kustomize) is
// bound at load time, which fails where no NVIDIA driver is installed.
const driverName = "slipway.dev"

// draNode is a fake node: a Node object with room for pods, and the
// device-plugin binary with --api dra running on a copy of a fixture tree
// with its own kubelet directories.
type draNode struct {
	name                         string
	root, registry, plugins, cdi string
	exited                       chan error // Wait's result, once
	stop                         func()     // SIGTERM, wait, check exit 0
}

// addNode creates a Ready Node object (allocatable cpu, memory, pods; no
// device plugin resources), labelled like a provisioned node.
func addNode(t testing.TB, c kubernetes.Interface, name string) {
	t.Helper()
	ctx := context.Background()
	n, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   name,
		Labels: map[string]string{"kubernetes.io/hostname": name, "node.slipway.dev/accelerator": "gpu", "node.slipway.dev/dra": "true"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("512Gi"), corev1.ResourcePods: resource.MustParse("110"),
	}
	n.Status = corev1.NodeStatus{
		Capacity: res, Allocatable: res,
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), Reason: "KubeletReady"}},
	}
	n, err = c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("node %s status: %v", name, err)
	}
	// Admission tainted it not-ready at creation; with no node lifecycle
	// controller here, nothing else would lift that for a Ready node.
	n.Spec.Taints = nil
	if _, err := c.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("untaint node %s: %v", name, err)
	}
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// devicePluginBinary builds cmd/device-plugin once per test binary.
func devicePluginBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "slipway-device-plugin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "device-plugin")
		if out, err := exec.Command("go", "build", "-o", builtBin, "../../cmd/device-plugin").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build cmd/device-plugin: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// startDriver runs `device-plugin --api dra` for node on a copy of a
// fixture tree, authenticated by kubeconfig, with extra flags; its log
// goes to the test log.
func startDriver(t testing.TB, node, tree string, kubeconfig []byte, extra ...string) *draNode {
	t.Helper()
	bin := devicePluginBinary(t)
	dir := t.TempDir()
	n := &draNode{name: node, root: filepath.Join(dir, "host"), registry: filepath.Join(dir, "registry"),
		plugins: filepath.Join(dir, "plugins"), cdi: filepath.Join(dir, "cdi"), exited: make(chan error, 1)}
	copyFixture(t, filepath.Join("..", "..", "pkg", "devices", "testdata", tree), n.root)
	for _, d := range []string{n.registry, n.plugins} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	kc := writeFile(t, filepath.Join(dir, "kubeconfig"), kubeconfig)
	args := append([]string{"--api=dra", "--node-name=" + node, "--kubeconfig=" + kc, "--root=" + n.root, "--nvml=off",
		"--dra-plugins-dir=" + n.plugins, "--dra-registry-dir=" + n.registry, "--dra-cdi-dir=" + n.cdi,
		"--metrics-addr=", "--rescan-interval=0"}, extra...)
	cmd := exec.Command(bin, args...)
	logf, err := os.Create(filepath.Join(dir, "device-plugin.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start device-plugin for %s: %v", node, err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); logf.Close(); n.exited <- waitErr; close(done) }()
	stopped := false
	n.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
			if waitErr != nil {
				t.Errorf("device-plugin of %s after SIGTERM: %v, want exit 0", node, waitErr)
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("device-plugin of %s did not stop within 20s of SIGTERM", node)
		}
	}
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "device-plugin.log"))
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("device-plugin of %s log tail:\n%s", node, b)
		}
	})
	return n
}

// tokenKubeconfig is a kubeconfig for cp with a bearer token.
func tokenKubeconfig(cp *controlPlane, token string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: driver
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: driver}
current-context: test
`, cp.server(), base64.StdEncoding.EncodeToString(cp.pki.CACertPEM()), token))
}

// copyFixture copies a fixture tree, symlinks as symlinks.
func copyFixture(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case de.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, to)
		case de.IsDir():
			return os.MkdirAll(to, 0o755)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, 0o644)
		}
	})
	if err != nil {
		t.Fatalf("copy fixture %s: %v", src, err)
	}
}

// kubelet registers with the node's driver as the kubelet would.
func (n *draNode) kubelet(t testing.TB) *drakubelet.Kubelet {
	t.Helper()
	sock := filepath.Join(n.registry, driverName+"-reg.sock")
	n.waitFor(t, "registration socket", 30*time.Second, func() (bool, error) { _, err := os.Stat(sock); return err == nil, nil })
	k, err := drakubelet.Register(context.Background(), sock, driverName)
	if err != nil {
		t.Fatalf("register driver of %s: %v", n.name, err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// waitFor polls cond, failing if the driver exits.
func (n *draNode) waitFor(t testing.TB, what string, limit time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.After(limit)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		select {
		case err := <-n.exited:
			n.exited <- err
			t.Fatalf("device-plugin of %s exited (%v) while waiting for %s", n.name, err, what)
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", limit, what, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// nodeSlices lists the ResourceSlices of a node.
func nodeSlices(ctx context.Context, c kubernetes.Interface, node string) ([]resourceapi.ResourceSlice, error) {
	l, err := c.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// sliceDevices maps device name to device over a node's slices.
func sliceDevices(ss []resourceapi.ResourceSlice) map[string]resourceapi.Device {
	out := map[string]resourceapi.Device{}
	for _, s := range ss {
		for _, d := range s.Spec.Devices {
			out[d.Name] = d
		}
	}
	return out
}

// waitPublished waits until the node's slices hold n devices.
func (n *draNode) waitPublished(t testing.TB, c kubernetes.Interface, count int) map[string]resourceapi.Device {
	t.Helper()
	var devs map[string]resourceapi.Device
	n.waitFor(t, fmt.Sprintf("%d devices published for %s", count, n.name), 60*time.Second, func() (bool, error) {
		ss, err := nodeSlices(context.Background(), c, n.name)
		if err != nil {
			return false, err
		}
		devs = sliceDevices(ss)
		return len(devs) == count, fmt.Errorf("%d devices", len(devs))
	})
	return devs
}

// driverToken returns a token of the driver's service account bound to a
// pod podName on node (see podBoundToken).
func driverToken(t testing.TB, cp *controlPlane, node, podName string) string {
	t.Helper()
	return podBoundToken(t, cp, "slipway-dra", node, podName)
}

// podBoundToken returns a token of service account sa (kube-system) bound
// to a pod podName on node, as the kubelet mounts it into a DaemonSet's
// pod: the node name travels in the token.
func podBoundToken(t testing.TB, cp *controlPlane, sa, node, podName string) string {
	t.Helper()
	ctx := context.Background()
	pod, err := cp.admin.CoreV1().Pods("kube-system").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName},
		Spec: corev1.PodSpec{
			NodeName: node, ServiceAccountName: sa,
			Containers: []corev1.Container{{Name: "agent", Image: "ghcr.io/slipway-dev/slipway-device-plugin:latest"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod of %s on %s: %v", sa, node, err)
	}
	tok, err := cp.admin.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, sa, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{
			ExpirationSeconds: ptrTo(int64(3600)),
			BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of %s on %s: %v", sa, node, err)
	}
	return tok.Status.Token
}

func ptrTo[T any](v T) *T { return &v }

// claimTemplates reads the example templates.
func claimTemplates(t testing.TB) map[string]resourceapi.ResourceClaimTemplate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(draManifests, "claim-templates.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]resourceapi.ResourceClaimTemplate{}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var tmpl resourceapi.ResourceClaimTemplate
		if err := yaml.UnmarshalStrict([]byte(doc), &tmpl); err != nil {
			t.Fatalf("claim-templates.yaml: %v", err)
		}
		out[tmpl.Name] = tmpl
	}
	return out
}

// TestNoNVMLInThisBinary keeps go-nvml out of this package's test binary:
// helm links Go's plugin package, which makes the linker bind every symbol
// at load, and go-nvml leaves the NVML symbols unresolved until
// libnvidia-ml is loaded, so the binary would die at start on machines
// without it. Drive the node agent as a process (startDriver) instead.
func TestNoNVMLInThisBinary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps -test .: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/NVIDIA/go-nvml") {
			t.Fatalf("this test binary links %s; with helm's plugin import it cannot start without libnvidia-ml", p)
		}
	}
}
