package dra

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"github.com/slipway-dev/slipway/internal/golden"
	"github.com/slipway-dev/slipway/pkg/devices"
)

// fixture returns the root of one of pkg/devices' fixture trees.
func fixture(name string) string { return filepath.Join("..", "devices", "testdata", name) }

func discoverFixture(t testing.TB, root string) []devices.Device {
	t.Helper()
	devs, err := devices.Discover(context.Background(), devices.Config{Root: root, NVML: devices.NVMLOff})
	if err != nil {
		t.Fatalf("Discover(%s) = %v", root, err)
	}
	return devs
}

func healthOf(devs []devices.Device) map[string]healthState {
	h := map[string]healthState{}
	for _, d := range devs {
		h[d.ID] = healthState{healthy: d.Healthy, reason: d.HealthReason}
	}
	return h
}

// TestSliceGolden publishes each fixture tree's devices as the driver
// would and compares the slices' devices with testdata/golden/<tree>.json.
func TestSliceGolden(t *testing.T) {
	for _, tree := range []string{"dgx-h100", "fpga-node", "broken-node", "empty-node"} {
		t.Run(tree, func(t *testing.T) {
			t.Parallel()
			root := fixture(tree)
			devs := discoverFixture(t, root)
			inv := newInventory(devices.DefaultConfig(), devs, nil)
			b := sliceBuilder{sysRoot: sysRoot(root), effect: resourceapi.DeviceTaintEffectNoSchedule, log: testLog(t)}
			pool := b.pool(inv, healthOf(devs))
			if len(pool.Slices) != 1 {
				t.Fatalf("pool of %s has %d slices, want 1", tree, len(pool.Slices))
			}
			got, err := json.MarshalIndent(pool.Slices[0].Devices, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "golden", tree+".json"), append(got, '\n'))
		})
	}
}

// TestSliceFacts checks, on the DGX tree, the facts the scheduler relies on
// without reading a golden file: every GPU shares its pcieRoot and
// pcieSwitch with exactly one HCA, NUMA nodes are 0 and 1, the storage
// NICs are not published.
func TestSliceFacts(t *testing.T) {
	root := fixture("dgx-h100")
	devs := discoverFixture(t, root)
	b := sliceBuilder{sysRoot: sysRoot(root), effect: resourceapi.DeviceTaintEffectNoSchedule, log: testLog(t)}
	pool := b.pool(newInventory(devices.DefaultConfig(), devs, nil), healthOf(devs))
	byRoot := map[string][]string{}
	numa := map[int64]int{}
	for _, d := range pool.Slices[0].Devices {
		r := d.Attributes["resource.kubernetes.io/pcieRoot"].StringValue
		if r == nil {
			t.Fatalf("device %s has no pcieRoot", d.Name)
		}
		byRoot[*r] = append(byRoot[*r], *d.Attributes[AttrKind].StringValue)
		if n := d.Attributes["resource.kubernetes.io/numaNode"].IntValue; n != nil {
			numa[*n]++
		}
		if d.Attributes[AttrPCIeSwitch].StringValue == nil {
			t.Errorf("device %s has no pcieSwitch", d.Name)
		}
		if len(d.Taints) != 0 {
			t.Errorf("device %s is tainted: %v", d.Name, d.Taints)
		}
	}
	if len(byRoot) != 8 {
		t.Errorf("pcieRoots = %d, want 8 (one per GPU-HCA pair)", len(byRoot))
	}
	for r, kinds := range byRoot {
		if diff := cmp.Diff([]string{"gpu", "hca"}, kinds); diff != "" {
			t.Errorf("kinds under %s (-want +got):\n%s", r, diff)
		}
	}
	if diff := cmp.Diff(map[int64]int{0: 8, 1: 8}, numa); diff != "" {
		t.Errorf("devices per NUMA node (-want +got):\n%s", diff)
	}
}

// TestDeviceAttributes covers what the fixture trees cannot show (NVML's
// facts) and the health taint.
func TestDeviceAttributes(t *testing.T) {
	gpu := devices.Device{
		ID: "GPU-1", Kind: devices.KindGPU, PCIAddress: "0000:1b:00.0", Bridges: []string{"0000:15:01.0", "0000:16:00.0", "0000:17:03.0"},
		Attributes: map[string]string{"uuid": "GPU-1", "minor": "2", "memory_mib": "81559", "mig_mode": "disabled", "nvlink_peers": "0000:43:00.0"},
	}
	peer := gpu
	peer.ID, peer.PCIAddress, peer.Attributes = "GPU-2", "0000:43:00.0", map[string]string{"uuid": "GPU-2", "nvlink_peers": "0000:1b:00.0"}
	hca := devices.Device{
		ID: "mlx5_0", Kind: devices.KindHCA, PCIAddress: "0000:18:00.0",
		Attributes: map[string]string{"ibdev": "mlx5_0", "netdevs": "ibp24s0"},
		Ports: []devices.Port{
			{Number: 1, State: "DOWN", PhysState: "Disabled", LinkLayer: "InfiniBand"},
			{Number: 2, State: "ACTIVE", PhysState: "LinkUp", LinkLayer: "InfiniBand", Rate: "400 Gb/sec (4X NDR)"},
		},
	}
	cfg := devices.DefaultConfig()
	inv := newInventory(cfg, []devices.Device{gpu, peer, hca}, nil)
	b := sliceBuilder{sysRoot: t.TempDir(), effect: resourceapi.DeviceTaintEffectNoExecute, log: testLog(t)}
	pool := b.pool(inv, map[string]healthState{"GPU-1": {healthy: false, reason: "xid 79; /dev/nvidia2 missing"}, "GPU-2": {healthy: true}, "mlx5_0": {healthy: true}})
	got := map[string]resourceapi.Device{}
	for _, d := range pool.Slices[0].Devices {
		got[d.Name] = d
	}
	g := got["gpu-0000-1b-00-0"]
	if diff := cmp.Diff(map[resourceapi.QualifiedName]resourceapi.DeviceCapacity{CapMemory: {Value: resource.MustParse("81559Mi")}}, g.Capacity); diff != "" {
		t.Errorf("gpu capacity (-want +got):\n%s", diff)
	}
	for name, want := range map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
		AttrMIGCapable:   {BoolValue: ptr.To(true)},
		AttrMIGEnabled:   {BoolValue: ptr.To(false)},
		AttrNVLinkDomain: {StringValue: ptr.To("0000:1b:00.0")},
		AttrMinor:        {IntValue: ptr.To[int64](2)},
		AttrPCIeSwitch:   {StringValue: ptr.To("0000:16:00.0")},
	} {
		if diff := cmp.Diff(want, g.Attributes[name]); diff != "" {
			t.Errorf("gpu attribute %s (-want +got):\n%s", name, diff)
		}
	}
	if diff := cmp.Diff(ptr.To("0000:1b:00.0"), got["gpu-0000-43-00-0"].Attributes[AttrNVLinkDomain].StringValue); diff != "" {
		t.Errorf("peer's nvlinkDomain (-want +got):\n%s", diff)
	}
	wantTaint := []resourceapi.DeviceTaint{{Key: TaintKey, Value: "xid-79-dev-nvidia2-missing", Effect: resourceapi.DeviceTaintEffectNoExecute}}
	if diff := cmp.Diff(wantTaint, g.Taints); diff != "" {
		t.Errorf("gpu taints (-want +got):\n%s", diff)
	}
	h := got["hca-0000-18-00-0"]
	if diff := cmp.Diff(map[resourceapi.QualifiedName]resourceapi.DeviceCapacity{CapLinkSpeed: {Value: resource.MustParse("400G")}}, h.Capacity); diff != "" {
		t.Errorf("hca capacity (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ptr.To("ACTIVE"), h.Attributes[AttrPortState].StringValue); diff != "" {
		t.Errorf("hca portState is the usable port's (-want +got):\n%s", diff)
	}
	if len(h.Taints) != 0 {
		t.Errorf("healthy hca tainted: %v", h.Taints)
	}
	if _, ok := g.Attributes["resource.kubernetes.io/pcieRoot"]; ok {
		t.Errorf("pcieRoot published for a device whose sysfs entry does not exist")
	}
}

// TestPCIeSwitchNeedsASwitch: Bridges start at the root port; a switch is
// an upstream and a downstream port below it. A device under a root port
// and a plain bridge has no switch, and its root port is not one.
func TestPCIeSwitchNeedsASwitch(t *testing.T) {
	b := sliceBuilder{sysRoot: t.TempDir(), log: testLog(t)}
	for _, tc := range []struct {
		bridges []string
		want    *string
	}{
		{[]string{"0000:15:01.0"}, nil},
		{[]string{"0000:15:01.0", "0000:16:00.0"}, nil},
		{[]string{"0000:15:01.0", "0000:16:00.0", "0000:17:03.0"}, ptr.To("0000:16:00.0")},
		{[]string{"0000:15:01.0", "0000:16:00.0", "0000:17:03.0", "0000:18:00.0", "0000:19:01.0"}, ptr.To("0000:18:00.0")},
	} {
		d := devices.Device{ID: "GPU-1", Kind: devices.KindGPU, PCIAddress: "0000:1b:00.0", Bridges: tc.bridges, Healthy: true}
		got := b.device(entry{name: "gpu", dev: d}, healthState{healthy: true}, "").Attributes[AttrPCIeSwitch].StringValue
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("pcieSwitch with bridges %v (-want +got):\n%s", tc.bridges, diff)
		}
	}
}

func TestSliceSplitsAtLimit(t *testing.T) {
	var devs []devices.Device
	for i := range 130 {
		devs = append(devs, devices.Device{ID: "dev" + string(rune('a'+i/26)) + string(rune('a'+i%26)), Kind: devices.KindFPGA, Healthy: true})
	}
	b := sliceBuilder{sysRoot: t.TempDir(), log: testLog(t)}
	pool := b.pool(newInventory(devices.DefaultConfig(), devs, nil), healthOf(devs))
	var sizes []int
	for _, s := range pool.Slices {
		sizes = append(sizes, len(s.Devices))
	}
	if diff := cmp.Diff([]int{64, 64, 2}, sizes); diff != "" {
		t.Errorf("slice sizes (-want +got):\n%s", diff)
	}
}

func TestLabelValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"xid 79", "xid-79"},
		{"nvml: init failed: ERROR_LIBRARY_NOT_FOUND", "nvml-init-failed-ERROR_LIBRARY_NOT_FOUND"},
		{"port 1 DOWN/Polling.", "port-1-DOWN-Polling"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := labelValue(tt.in); got != tt.want {
			t.Errorf("labelValue(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestResourcesByConfigName: --dra-resources names the config's resources.
// FPGAs are planned as one resource per identity (slipway.dev/fpga-<id>),
// so naming the config's slipway.dev/fpga must take all of them, not none.
func TestResourcesByConfigName(t *testing.T) {
	devs := discoverFixture(t, fixture("fpga-node"))
	cfg := devices.DefaultConfig()
	for _, tc := range []struct {
		only []string
		want int
	}{
		{[]string{"slipway.dev/fpga"}, 3},
		{[]string{"slipway.dev/fpga-15bd0a5d0c6e4ba4b7c0d3e0f4a8c1e2"}, 2},
		{[]string{"slipway.dev/fpg"}, 0},
		{[]string{"nvidia.com/gpu"}, 0},
	} {
		if got := len(newInventory(cfg, devs, tc.only).entries); got != tc.want {
			t.Errorf("newInventory(fpga-node, only %v) has %d devices, want %d", tc.only, got, tc.want)
		}
	}
	gpuNamedLikeFPGA := devices.Assignment{Name: "nvidia.com/gpu-big", Devices: []devices.Device{{Kind: devices.KindGPU}}}
	if Serves([]string{"nvidia.com/gpu"}, gpuNamedLikeFPGA) {
		t.Errorf("Serves(nvidia.com/gpu, %s) = true; only FPGA resources are named per identity", gpuNamedLikeFPGA.Name)
	}
}
