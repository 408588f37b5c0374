package nodeagent

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/slipway-dev/slipway/pkg/devices"
)

// TestTimeSlicing: a resource with replicas advertises that many per GPU,
// each replica ID maps back to its GPU (Allocate hands out the GPU once
// however many of its replicas a container gets), the preferred allocation
// spreads a request over distinct GPUs, a GPU's fault takes all of its
// replicas out, and the agent warns once that replicas are not isolated.
func TestTimeSlicing(t *testing.T) {
	t.Parallel()
	root := copyFixture(t, "dgx-h100")
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, cfg, `apiVersion: slipway.dev/v1alpha1
kind: DevicePluginConfig
resources:
  - name: nvidia.com/gpu
    selector: {kinds: [gpu]}
    replicas: 4
health:
  pollInterval: 20ms
  recoveryPeriod: 1h
`)
	h := startAgent(t, Config{Discovery: devices.Config{Root: root, NVML: devices.NVMLOff}, ConfigFile: cfg})
	ctx := h.waitCtx(t)
	p, list, err := h.stub.WaitPlugin(ctx, devices.ResourceGPU)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 32 {
		t.Fatalf("ListAndWatch lists %d devices, want 8 GPUs x 4 replicas", len(list))
	}
	gpu0 := "GPU-0000001b-1111-2222-3333-444400000000"
	var ids []string
	for _, d := range list {
		ids = append(ids, d.GetID())
		if len(d.GetTopology().GetNodes()) != 1 {
			t.Errorf("replica %s topology %v, want its GPU's NUMA node", d.GetID(), d.GetTopology())
		}
	}
	for i := range 4 {
		if !slices.Contains(ids, gpu0+"::"+string(rune('0'+i))) {
			t.Errorf("no replica %s::%d in %v", gpu0, i, ids)
		}
	}
	// Two replicas of one GPU: the container gets that GPU once.
	resp, err := p.Client.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{
		{DevicesIds: []string{gpu0 + "::1", gpu0 + "::3"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cr := resp.GetContainerResponses()[0]
	var nodes []string
	for _, d := range cr.GetDevices() {
		nodes = append(nodes, d.GetContainerPath())
	}
	if diff := cmp.Diff([]string{"/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"}, nodes); diff != "" {
		t.Errorf("Allocate(two replicas of GPU 0) device nodes (-want +got):\n%s", diff)
	}
	if got := cr.GetEnvs()["NVIDIA_VISIBLE_DEVICES"]; got != "none" && got != gpu0 {
		t.Errorf("NVIDIA_VISIBLE_DEVICES = %q, want the GPU once", got)
	}
	if got := cr.GetEnvs()["SLIPWAY_GPU_DEVICES"]; got != gpu0 {
		t.Errorf("SLIPWAY_GPU_DEVICES = %q, want %s once", got, gpu0)
	}
	// Four replicas, as the kubelet allocates them: without a Topology
	// Manager hint it asks over all 32, on NUMA node 0 over that node's
	// 16; either way four different GPUs.
	for _, numa := range [][]int64{nil, {0}} {
		a, err := h.stub.Admit(ctx, devices.ResourceGPU, 4, numa)
		if err != nil {
			t.Fatal(err)
		}
		gpus := map[string]bool{}
		for _, id := range a.Devices {
			g, _, _ := strings.Cut(id, "::")
			gpus[g] = true
		}
		if a.Preferred == nil || len(gpus) != 4 || len(strings.Split(a.Response.GetEnvs()["SLIPWAY_GPU_DEVICES"], ",")) != 4 {
			t.Errorf("4 replicas, NUMA %v: asked %v, got %v (SLIPWAY_GPU_DEVICES %q); want replicas of 4 different GPUs",
				numa, a.Preferred, a.Devices, a.Response.GetEnvs()["SLIPWAY_GPU_DEVICES"])
		}
		h.stub.Release(devices.ResourceGPU, a.Devices)
	}
	// GPU 0's device node disappears: all four replicas go.
	if err := removeFile(filepath.Join(root, "dev", "nvidia0")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.stub.WaitDevices(ctx, devices.ResourceGPU, func(ds []*pluginapi.Device) bool {
		n := 0
		for _, d := range ds {
			if strings.HasPrefix(d.GetID(), gpu0+"::") && d.GetHealth() == pluginapi.Unhealthy {
				n++
			}
		}
		return n == 4
	}); err != nil {
		t.Fatalf("GPU 0's replicas not all withdrawn after its device node vanished: %v", err)
	}
	if w := h.log.lines("no memory or fault isolation"); len(w) != 1 || !strings.Contains(w[0], "level=WARN") || !strings.Contains(w[0], "replicas=4") {
		t.Errorf("sharing warning lines = %q, want one WARN naming 4 replicas", w)
	}
}
