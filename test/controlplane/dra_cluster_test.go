package controlplane

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/pkg/devices"
	"github.com/slipway-dev/slipway/pkg/dra"
	"github.com/slipway-dev/slipway/pkg/dra/drakubelet"
	"github.com/slipway-dev/slipway/pkg/nodeagent"
)

// draManifests is the directory of the DRA manifests under test.
var draManifests = filepath.Join("..", "..", "images", "device-plugin", "dra")

// startDRAControlPlane starts the shared control plane plus what DRA needs
// of the rest of Kubernetes: a kube-controller-manager running the
// resourceclaim controller (claims from templates) and the device taint
// eviction controller, and kube-scheduler, whose DRA plugin allocates
// claims against the published slices. Neither serves HTTPS (port 0).
func startDRAControlPlane(t testing.TB) *controlPlane {
	t.Helper()
	bins := requireTools(t, "kube-scheduler", "kube-controller-manager")
	cp := startControlPlane(t)
	kc := writeFile(t, filepath.Join(cp.dir, "dra-admin.conf"), cp.adminKC)
	startProcess(t, cp.dir, "kube-controller-manager-dra", bins["kube-controller-manager"],
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
	startProcess(t, cp.dir, "kube-scheduler", bins["kube-scheduler"],
		"--config="+schedCfg, "--secure-port=0", "--bind-address=127.0.0.1")
	return cp
}

// draNode is a fake node: a Node object with room for pods, and the Slipway
// DRA driver running on a copy of a fixture tree with its own kubelet
// directories.
type draNode struct {
	name                         string
	root, registry, plugins, cdi string
	driver                       *dra.Driver
	agent                        *nodeagent.Agent
	errc                         chan error
	cancel                       context.CancelFunc
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

// startDriver runs the node agent with the DRA driver as its front end for
// node on a copy of a fixture tree, with client as the driver's API identity.
func startDriver(t testing.TB, node, tree string, client kubernetes.Interface, log *slog.Logger) *draNode {
	t.Helper()
	dir := t.TempDir()
	n := &draNode{name: node, root: filepath.Join(dir, "host"), registry: filepath.Join(dir, "registry"),
		plugins: filepath.Join(dir, "plugins"), cdi: filepath.Join(dir, "cdi"), errc: make(chan error, 1)}
	copyFixture(t, filepath.Join("..", "..", "pkg", "devices", "testdata", tree), n.root)
	if err := os.MkdirAll(n.registry, 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := dra.New(dra.Config{
		NodeName: node, KubeClient: client, Root: n.root,
		RegistryDir: n.registry, PluginDir: n.plugins, CDIDir: n.cdi, Log: log,
	})
	if err != nil {
		t.Fatalf("dra.New(%s): %v", node, err)
	}
	// The node agent discovers (no rescans: the trees do not change) and
	// runs the health monitor; the driver is its one front end.
	a, err := nodeagent.New(nodeagent.Config{
		Discovery: devices.Config{Root: n.root, NVML: devices.NVMLOff},
		Frontends: []nodeagent.Frontend{d}, Log: log,
	})
	if err != nil {
		t.Fatalf("nodeagent.New(%s): %v", node, err)
	}
	n.driver, n.agent = d, a
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.errc <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-n.errc:
			if err != nil {
				t.Errorf("driver of %s: Run() = %v", node, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("driver of %s did not stop within 15s", node)
		}
	})
	return n
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
	sock := filepath.Join(n.registry, dra.DefaultDriverName+"-reg.sock")
	n.waitFor(t, "registration socket", 30*time.Second, func() (bool, error) { _, err := os.Stat(sock); return err == nil, nil })
	k, err := drakubelet.Register(context.Background(), sock, dra.DefaultDriverName)
	if err != nil {
		t.Fatalf("register driver of %s: %v", n.name, err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// waitFor polls cond, failing if the driver stops or cond errs.
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
		case err := <-n.errc:
			n.errc <- err
			t.Fatalf("driver of %s stopped (%v) while waiting for %s", n.name, err, what)
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

// driverClient returns a client with the token of the driver's service
// account bound to a pod podName on node, as the kubelet would mount it into the
// DaemonSet's pod: the node name travels in the token.
func driverClient(t testing.TB, cp *controlPlane, node, podName string) kubernetes.Interface {
	t.Helper()
	ctx := context.Background()
	pod, err := cp.admin.CoreV1().Pods("kube-system").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName},
		Spec: corev1.PodSpec{
			NodeName: node, ServiceAccountName: "slipway-dra",
			Containers: []corev1.Container{{Name: "dra", Image: "ghcr.io/slipway-dev/slipway-device-plugin:latest"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create driver pod on %s: %v", node, err)
	}
	tok, err := cp.admin.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, "slipway-dra", &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{
			ExpirationSeconds: ptrTo(int64(3600)),
			BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for the driver on %s: %v", node, err)
	}
	cfg := &rest.Config{Host: cp.server(), BearerToken: tok.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: cp.pki.CACertPEM()}}
	return kubernetes.NewForConfigOrDie(cfg)
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

// testLogger logs through t.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
