//go:build cgo && linux

package main

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/slipway-dev/slipway/pkg/deviceplugin/kubeletstub"
)

// TestPluginRealNVML runs the command with --nvml on on this host's root
// against the kubelet stub, where libnvidia-ml and a GPU are present: every
// GPU NVML sees is registered as nvidia.com/gpu, healthy, and Allocate
// hands out device nodes that exist on the host with the GPU's UUID in
// NVIDIA_VISIBLE_DEVICES. It skips elsewhere.
func TestPluginRealNVML(t *testing.T) {
	lib := nvml.New()
	if ret := lib.Init(); ret != nvml.SUCCESS {
		t.Skipf("no usable libnvidia-ml here: %v", ret)
	}
	n, ret := lib.DeviceGetCount()
	var uuids []string
	for i := range n {
		if d, ret := lib.DeviceGetHandleByIndex(i); ret == nvml.SUCCESS {
			if u, ret := d.GetUUID(); ret == nvml.SUCCESS {
				uuids = append(uuids, u)
			}
		}
	}
	lib.Shutdown()
	if ret != nvml.SUCCESS || n == 0 {
		t.Skipf("NVML sees no GPU here (%d, %v)", n, ret)
	}
	dir := pluginSocketDir(t)
	stub, err := kubeletstub.Start(kubeletstub.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer stub.Stop()
	var stdout, stderr lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--root", "/", "--nvml", "on", "--kubelet-dir", dir, "--metrics-addr", "127.0.0.1:0",
			"--cdi-dir", t.TempDir(), "--log-level", "debug"}, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		select {
		case c := <-code:
			if c != 0 {
				t.Errorf("run() = %d after cancel", c)
			}
		case <-time.After(20 * time.Second):
			t.Error("run did not return after cancel")
		}
		t.Logf("plugin log:\n%s", stderr.String())
	}()
	wctx := runCtx(t, code, 60*time.Second)
	p, devs, err := stub.WaitPlugin(wctx, "nvidia.com/gpu")
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != len(uuids) {
		t.Errorf("nvidia.com/gpu lists %d devices, NVML sees %d", len(devs), len(uuids))
	}
	for _, d := range devs {
		t.Logf("ListAndWatch: %s %s topology %v", d.GetID(), d.GetHealth(), d.GetTopology())
		if d.GetHealth() != pluginapi.Healthy {
			t.Errorf("GPU %s is %s", d.GetID(), d.GetHealth())
		}
	}
	resp, err := p.Client.Allocate(wctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{devs[0].GetID()}}}})
	if err != nil {
		t.Fatal(err)
	}
	cr := resp.GetContainerResponses()[0]
	for _, d := range cr.GetDevices() {
		if _, err := os.Stat(d.GetHostPath()); err != nil {
			t.Errorf("Allocate device node %s: %v", d.GetHostPath(), err)
		}
	}
	if got := cr.GetEnvs()["NVIDIA_VISIBLE_DEVICES"]; got != devs[0].GetID() || !strings.HasPrefix(got, "GPU-") {
		t.Errorf("NVIDIA_VISIBLE_DEVICES = %q, want %s", got, devs[0].GetID())
	}
	t.Logf("Allocate(%s): %v", devs[0].GetID(), cr)
	addr := servedAddr(t, &stderr, code)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /healthz not 200 within 10s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Past the first rescan (10s by default): a healthy host logs no
	// warning in steady state.
	time.Sleep(12 * time.Second)
	for line := range strings.Lines(stderr.String()) {
		if strings.Contains(line, "level=WARN") {
			t.Errorf("warning on a healthy GPU host: %s", strings.TrimSpace(line))
		}
	}
}
