package controlplane

import (
	"bytes"
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/addons"
)

// agentManifests is the device plugin's deployment directory.
var agentManifests = filepath.Join("..", "..", "images", "device-plugin")

// TestNodeLabels runs the real binary, `device-plugin --node-labels`,
// against a real kube-apiserver with the identity and the admission policy
// of images/device-plugin/rbac.yaml: a token bound to a pod on the node,
// as the kubelet mounts it. The agent labels its own Node by server-side
// apply (and a node without GPUs loses their labels), leaves other labels
// alone, may not label another Node or change anything else of its own,
// and a --node-name that names no Node is an error, never a new Node.
func TestNodeLabels(t *testing.T) {
	cp := startControlPlane(t)
	ctx := context.Background()
	a, err := addons.New(addons.Config{REST: cp.adminREST, KindWait: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ApplyFiles(ctx, []string{filepath.Join(agentManifests, "rbac.yaml")}); err != nil {
		t.Fatalf("apply rbac.yaml: %v", err)
	}
	for _, n := range []string{"gpu-1", "gpu-2"} {
		addNode(t, cp.admin, n)
	}
	before := nodeLabels(t, cp, "gpu-1")
	token := podBoundToken(t, cp, "slipway-device-plugin", "gpu-1", "slipway-device-plugin-gpu-1")
	kc := writeFile(t, filepath.Join(t.TempDir(), "agent.conf"), tokenKubeconfig(cp, token))

	// The DGX: 8 GPUs, 8 InfiniBand rails (the RoCE storage ports are not
	// counted), NVML off so no memory or MIG mode is known.
	dgx := startAgent(t, "dgx-h100", "--node-name=gpu-1", "--kubeconfig="+kc)
	want := maps.Clone(before)
	maps.Copy(want, map[string]string{
		"slipway.dev/gpu.count": "8", "slipway.dev/gpu.product": "NVIDIA-H100-80GB-HBM3",
		"slipway.dev/hca.count": "8", "slipway.dev/hca.link-layer": "InfiniBand", "slipway.dev/hca.rate": "400",
	})
	waitNodeLabels(t, cp, dgx, "gpu-1", want)
	dgx.stop(t)

	// The same node now has only FPGAs: the GPU and HCA labels go (the
	// field manager no longer applies them), the others stay.
	fpga := startAgent(t, "fpga-node", "--node-name=gpu-1", "--kubeconfig="+kc)
	want = maps.Clone(before)
	want["slipway.dev/fpga.count"] = "3"
	waitNodeLabels(t, cp, fpga, "gpu-1", want)
	fpga.stop(t)

	t.Run("policy", func(t *testing.T) {
		c := tokenClient(cp, token)
		patch := func(node, p string) error {
			_, err := c.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(p), metav1.PatchOptions{})
			return err
		}
		for _, tc := range []struct {
			what, node, patch, refusal string
		}{
			{"its own slipway.dev/ label", "gpu-1", `{"metadata":{"labels":{"slipway.dev/test":"x"}}}`, ""},
			{"another node's label", "gpu-2", `{"metadata":{"labels":{"slipway.dev/test":"x"}}}`, "on node gpu-1 may not change Node gpu-2"},
			{"another label of its own", "gpu-1", `{"metadata":{"labels":{"node.slipway.dev/accelerator":"fpga"}}}`, "may change only slipway.dev/ labels"},
			{"a label removed", "gpu-1", `{"metadata":{"labels":{"kubernetes.io/hostname":null}}}`, "may change only slipway.dev/ labels"},
			{"a taint", "gpu-1", `{"spec":{"taints":[{"key":"x","effect":"NoSchedule"}]}}`, "not the Node's spec"},
			{"an annotation", "gpu-1", `{"metadata":{"annotations":{"x":"y"}}}`, "not the Node's spec, annotations"},
		} {
			err := patch(tc.node, tc.patch)
			switch {
			case tc.refusal == "" && err != nil:
				t.Errorf("%s: %v, want allowed", tc.what, err)
			case tc.refusal != "" && (err == nil || !strings.Contains(err.Error(), tc.refusal)):
				t.Errorf("%s: %v, want refused with %q", tc.what, err, tc.refusal)
			}
		}
		_, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gpu-3"}}, metav1.CreateOptions{})
		if err == nil {
			t.Error("the agent's identity created a Node")
		}
		if err := c.CoreV1().Nodes().Delete(ctx, "gpu-2", metav1.DeleteOptions{}); err == nil {
			t.Error("the agent's identity deleted a Node")
		}
	})

	t.Run("another node", func(t *testing.T) {
		// An agent told the wrong node name writes nothing there.
		other := startAgent(t, "dgx-h100", "--node-name=gpu-2", "--kubeconfig="+kc)
		other.waitLog(t, "may not change Node gpu-2")
		other.stop(t)
		for k := range nodeLabels(t, cp, "gpu-2") {
			if strings.HasPrefix(k, "slipway.dev/") {
				t.Errorf("gpu-2 has label %s written by gpu-1's agent", k)
			}
		}
	})

	t.Run("no such node", func(t *testing.T) {
		// Even with rights to create Nodes (the admin's kubeconfig, as
		// on a host outside the cluster), a wrong name makes no Node.
		admin := writeFile(t, filepath.Join(t.TempDir(), "admin.conf"), cp.adminKC)
		typo := startAgent(t, "dgx-h100", "--node-name=gpu-9", "--kubeconfig="+admin)
		typo.waitLog(t, "node gpu-9 does not exist")
		typo.stop(t)
		if _, err := cp.admin.CoreV1().Nodes().Get(ctx, "gpu-9", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("get node gpu-9 = %v, want not found: the agent must never create its Node", err)
		}
	})
}

// nodeLabels returns the labels of a Node.
func nodeLabels(t testing.TB, cp *controlPlane, node string) map[string]string {
	t.Helper()
	n, err := cp.admin.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node %s: %v", node, err)
	}
	return n.Labels
}

// waitNodeLabels waits until node has exactly the labels want, failing if
// the agent exits first.
func waitNodeLabels(t testing.TB, cp *controlPlane, ag *agentProc, node string, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := nodeLabels(t, cp, node)
		if cmp.Equal(want, got) {
			return
		}
		select {
		case <-ag.done:
			t.Fatalf("device-plugin exited (%v) before %s had its labels (-want +got):\n%s\nlog:\n%s", ag.err, node, cmp.Diff(want, got), ag.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("labels of %s after 60s (-want +got):\n%s\nlog:\n%s", node, cmp.Diff(want, got), ag.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// agentProc is a running device-plugin binary.
type agentProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's, once done is closed

	mu  sync.Mutex
	buf bytes.Buffer
}

func (a *agentProc) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.buf.Write(p)
}

func (a *agentProc) log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.buf.String()
}

// startAgent runs the device-plugin binary with --node-labels on a copy
// of a fixture tree, with its own kubelet directory and no kubelet (the
// labels do not wait for one), and extra flags.
func startAgent(t testing.TB, tree string, extra ...string) *agentProc {
	t.Helper()
	bin := devicePluginBinary(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "host")
	copyFixture(t, filepath.Join("..", "..", "pkg", "devices", "testdata", tree), root)
	kubelet := filepath.Join(dir, "kubelet")
	if err := os.MkdirAll(kubelet, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--node-labels", "--root=" + root, "--nvml=off", "--kubelet-dir=" + kubelet,
		"--metrics-addr=", "--rescan-interval=0"}, extra...)
	a := &agentProc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	a.cmd.Stdout, a.cmd.Stderr = a, a
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start device-plugin: %v", err)
	}
	go func() { a.err = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			a.cmd.Process.Kill()
			<-a.done
		}
		if t.Failed() {
			t.Logf("device-plugin %s log:\n%s", strings.Join(args, " "), a.log())
		}
	})
	return a
}

// waitLog waits for a log line containing s.
func (a *agentProc) waitLog(t testing.TB, s string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(a.log(), s) {
		select {
		case <-a.done:
			t.Fatalf("device-plugin exited (%v) before logging %q:\n%s", a.err, s, a.log())
		case <-deadline:
			t.Fatalf("no %q logged in 60s:\n%s", s, a.log())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and wants a clean exit within 20s.
func (a *agentProc) stop(t testing.TB) {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
		if a.err != nil {
			t.Errorf("device-plugin after SIGTERM: %v, want exit 0\n%s", a.err, a.log())
		}
	case <-time.After(20 * time.Second):
		t.Errorf("device-plugin did not stop within 20s of SIGTERM")
	}
}
