//go:build cgo && linux

package nodeagent

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/slipway-dev/slipway/pkg/devices"
	"github.com/slipway-dev/slipway/pkg/devices/nvmlmock"
)

// TestMIGMixedThroughThePlugin runs the agent on go-nvml's mock with two
// GPUs in MIG mode under the mixed strategy: the kubelet sees
// nvidia.com/mig-3g.40gb and the six other GPUs, and a MIG device is
// allocated with its parent's nodes, its /dev/nvidia-caps nodes and its
// MIG UUID in NVIDIA_VISIBLE_DEVICES.
func TestMIGMixedThroughThePlugin(t *testing.T) {
	t.Parallel()
	root := copyFixture(t, "dgx-h100")
	m := nvmlmock.NewDGXH100()
	for _, g := range []int{2, 5} {
		if err := m.EnableMIG(g, nvmlmock.Instance{GI: nvml.GPU_INSTANCE_PROFILE_3_SLICE}); err != nil {
			t.Fatal(err)
		}
		// GPU instance 0 and its compute instance 0 (mig-minors order).
		minor := nvmlmock.GPUs[g].Minor
		for _, cm := range []int{3 + minor*135 + 0, 3 + minor*135 + 1} {
			if err := os.WriteFile(filepath.Join(root, "dev", "nvidia-caps", fmt.Sprintf("nvidia-cap%d", cm)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, cfg, "apiVersion: slipway.dev/v1alpha1\nkind: DevicePluginConfig\ngpu:\n  migStrategy: mixed\n")
	h := startAgent(t, Config{Discovery: devices.Config{Root: root, NVML: devices.NVMLOn, NVMLLib: devices.FromNVML(m.Server)}, ConfigFile: cfg})
	ctx := h.waitCtx(t)
	if _, gpus, err := h.stub.WaitPlugin(ctx, devices.ResourceGPU); err != nil || len(gpus) != 6 {
		t.Fatalf("nvidia.com/gpu lists %d devices, %v; want the 6 GPUs not in MIG mode", len(gpus), err)
	}
	p, migs, err := h.stub.WaitPlugin(ctx, "nvidia.com/mig-3g.40gb")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range migs {
		ids = append(ids, d.GetID())
	}
	want := []string{nvmlmock.MIGUUID(2, 0, 0), nvmlmock.MIGUUID(5, 0, 0)}
	slices.Sort(ids)
	if !slices.Equal(ids, want) {
		t.Fatalf("nvidia.com/mig-3g.40gb lists %v, want %v", ids, want)
	}
	resp, err := p.Client.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: want[:1]}}})
	if err != nil {
		t.Fatal(err)
	}
	cr := resp.GetContainerResponses()[0]
	var nodes []string
	for _, d := range cr.GetDevices() {
		nodes = append(nodes, d.GetHostPath())
	}
	wantNodes := []string{"/dev/nvidia3", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
		fmt.Sprintf("/dev/nvidia-caps/nvidia-cap%d", 3+3*135), fmt.Sprintf("/dev/nvidia-caps/nvidia-cap%d", 3+3*135+1)}
	if !slices.Equal(nodes, wantNodes) {
		t.Errorf("Allocate(%s) device nodes = %v, want %v", want[0], nodes, wantNodes)
	}
	if got := cr.GetEnvs()["NVIDIA_VISIBLE_DEVICES"]; got != want[0] {
		t.Errorf("NVIDIA_VISIBLE_DEVICES = %q, want the MIG UUID %s", got, want[0])
	}
}
