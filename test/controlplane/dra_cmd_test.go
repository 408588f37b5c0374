package controlplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/pkg/dra/drakubelet"
)

// TestDRACommand runs the real binary, `device-plugin --api dra`, on the
// DGX fixture against a real kube-apiserver: it publishes the node's 16
// devices, registers with a stand-in kubelet, reports ready on /healthz,
// publishes again after a kubelet restart wiped its slices, and stops
// cleanly on SIGTERM.
func TestDRACommand(t *testing.T) {
	cp := startControlPlane(t)
	dir := t.TempDir()
	bin := devicePluginBinary(t)
	const node = "cmd-1"
	addNode(t, cp.admin, node)
	root := filepath.Join(dir, "host")
	copyFixture(t, filepath.Join("..", "..", "pkg", "devices", "testdata", "dgx-h100"), root)
	registry, plugins, cdi := filepath.Join(dir, "registry"), filepath.Join(dir, "plugins"), filepath.Join(dir, "cdi")
	for _, d := range []string{registry, plugins} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	kc := writeFile(t, filepath.Join(dir, "admin.conf"), cp.adminKC)
	cmd := exec.Command(bin, "--api=dra", "--node-name="+node, "--kubeconfig="+kc, "--root="+root, "--nvml=off",
		"--dra-plugins-dir="+plugins, "--dra-registry-dir="+registry, "--dra-cdi-dir="+cdi,
		"--metrics-addr=127.0.0.1:0", "--rescan-interval=0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`serving metrics and health.* addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Log(sc.Text())
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		io.Copy(io.Discard, stderr)
		exited <- cmd.Wait()
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
	})

	n := &draNode{name: node, registry: registry, exited: exited}
	n.waitPublished(t, cp.admin, 16)
	k := n.kubelet(t)
	defer k.Close()
	var metrics string
	select {
	case metrics = <-addr:
	case err := <-exited:
		t.Fatalf("device-plugin exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no metrics address logged")
	}
	n.waitFor(t, "/healthz ok", 30*time.Second, func() (bool, error) {
		resp, err := http.Get("http://" + metrics + "/healthz")
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK, fmt.Errorf("%d %s", resp.StatusCode, b)
	})
	if _, err := os.Stat(filepath.Join(plugins, driverName, "dra.sock")); err != nil {
		t.Errorf("dra.sock not under --dra-plugins-dir: %v", err)
	}
	c := drakubelet.Claim{Namespace: "default", Name: "none", UID: "uid-none"}
	if resp, err := k.Unprepare(context.Background(), c); err != nil || resp.Claims[c.UID].GetError() != "" {
		t.Errorf("Unprepare(unknown) = %v, %v", resp, err)
	}

	// The kubelet restarts: it deletes the node's slices before any plugin
	// has registered again, then registers the running driver anew. The
	// driver must publish its devices again (new slice objects).
	ctx := context.Background()
	before, err := nodeSlices(ctx, cp.admin, node)
	if err != nil || len(before) == 0 {
		t.Fatalf("slices of %s before the kubelet restart: %d, %v", node, len(before), err)
	}
	k.Close()
	if err := drakubelet.WipeSlices(ctx, cp.admin, node); err != nil {
		t.Fatal(err)
	}
	k = n.kubelet(t)
	n.waitFor(t, "slices published again after the kubelet wiped them", 60*time.Second, func() (bool, error) {
		ss, err := nodeSlices(ctx, cp.admin, node)
		if err != nil {
			return false, err
		}
		devs := sliceDevices(ss)
		return len(devs) == 16 && ss[0].UID != before[0].UID, fmt.Errorf("%d devices", len(devs))
	})
	if resp, err := k.Unprepare(ctx, c); err != nil || resp.Claims[c.UID].GetError() != "" {
		t.Errorf("Unprepare(unknown) through the new registration = %v, %v", resp, err)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("device-plugin after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("device-plugin did not stop within 20s of SIGTERM")
	}
	if _, err := os.Stat(filepath.Join(registry, driverName+"-reg.sock")); !os.IsNotExist(err) {
		t.Errorf("registration socket left behind after stop: %v", err)
	}
}
