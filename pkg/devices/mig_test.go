//go:build cgo && linux

package devices

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/devices/nvmlmock"
)

// capMinor is the minor the driver gives a MIG capability in the
// fixture's mig-minors: 135 per GPU (15 GPU instances of an access and 8
// compute instances each), after config 1 and monitor 2; ci -1 is the GPU
// instance's own access.
func capMinor(gpuMinor, gi, ci int) int {
	return 3 + gpuMinor*135 + gi*9 + ci + 1
}

// makeCapNodes creates the /dev/nvidia-caps nodes of the given MIG
// devices in root, as nvidia-modprobe does when the instances are made.
func makeCapNodes(t *testing.T, root string, gpuMinor int, gici ...[2]int) {
	t.Helper()
	for _, x := range gici {
		for _, m := range []int{capMinor(gpuMinor, x[0], -1), capMinor(gpuMinor, x[0], x[1])} {
			must(t, os.WriteFile(filepath.Join(root, "dev", "nvidia-caps", fmt.Sprintf("nvidia-cap%d", m)), nil, 0o644))
		}
	}
}

// TestDiscoverMIG: a GPU in MIG mode on go-nvml's mock, with GPU and
// compute instances made through the mock's MIG API, gives one device per
// compute instance: MIG UUID, profile named as nvidia-smi does, the
// parent's place and device nodes plus its two /dev/nvidia-caps nodes
// (minors from /proc/driver/nvidia-caps/mig-minors). One whose capability
// node was never created is unhealthy.
func TestDiscoverMIG(t *testing.T) {
	t.Parallel()
	root := copyTree(t, "dgx-h100", "dev")
	m := newMockNVML(t)
	// GPU index 2: bus 0x52, minor 3.
	must(t, m.EnableMIG(2,
		nvmlmock.Instance{GI: nvml.GPU_INSTANCE_PROFILE_1_SLICE},
		nvmlmock.Instance{GI: nvml.GPU_INSTANCE_PROFILE_1_SLICE_REV1},
		nvmlmock.Instance{GI: nvml.GPU_INSTANCE_PROFILE_3_SLICE, CISlices: 1, CIs: 2},
	))
	makeCapNodes(t, root, 3, [2]int{0, 0}, [2]int{1, 0}, [2]int{2, 0})
	devs, err := Discover(context.Background(), Config{Root: root, NVML: NVMLOn, NVMLLib: FromNVML(m.srv), Log: discardLog()})
	must(t, err)
	type mig struct {
		ID, Profile, Parent, PCI, Health string
		Nodes                            []string
	}
	var got []mig
	for _, d := range devs {
		if d.Kind != KindMIG {
			continue
		}
		var nodes []string
		for _, n := range d.DeviceNodes {
			nodes = append(nodes, n.Path)
		}
		h := "healthy"
		if !d.Healthy {
			h = d.HealthReason
		}
		got = append(got, mig{d.ID, d.Attributes["profile"], d.Attributes["parent_uuid"], d.PCIAddress, h, nodes})
	}
	parent := dgxUUID(0x52, 3)
	gpuNodes := []string{"/dev/nvidia3", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"}
	caps := func(gi, ci int) []string {
		return append(append([]string(nil), gpuNodes...),
			fmt.Sprintf("/dev/nvidia-caps/nvidia-cap%d", capMinor(3, gi, -1)), fmt.Sprintf("/dev/nvidia-caps/nvidia-cap%d", capMinor(3, gi, ci)))
	}
	missing := fmt.Sprintf("/dev/nvidia-caps/nvidia-cap%d missing", capMinor(3, 2, 1))
	want := []mig{
		{nvmlmock.MIGUUID(2, 0, 0), "1g.10gb", parent, "0000:52:00.0", "healthy", caps(0, 0)},
		{nvmlmock.MIGUUID(2, 1, 0), "1g.10gb+me", parent, "0000:52:00.0", "healthy", caps(1, 0)},
		{nvmlmock.MIGUUID(2, 2, 0), "1c.3g.40gb", parent, "0000:52:00.0", "healthy", caps(2, 0)},
		{nvmlmock.MIGUUID(2, 2, 1), "1c.3g.40gb", parent, "0000:52:00.0", missing,
			append(append([]string(nil), gpuNodes...), fmt.Sprintf("/dev/nvidia-caps/nvidia-cap%d", capMinor(3, 2, -1)))},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Discover(dgx-h100, GPU 2 in MIG mode) MIG devices (-want +got):\n%s", diff)
	}
}

func TestMIGProfileName(t *testing.T) {
	const h100 = 81559 << 20 // what a real H100 80GB reports
	tests := []struct {
		ci, gi       int
		mem, total   uint64
		suffix, want string
	}{
		{1, 1, 9856, h100, "", "1g.10gb"},
		{2, 2, 19968, h100, "", "2g.20gb"},
		{3, 3, 40192, h100, "", "3g.40gb"},
		{7, 7, 80384, h100, "", "7g.80gb"},
		{1, 3, 40192, h100, "", "1c.3g.40gb"},
		{1, 1, 9856, h100, "+me", "1g.10gb+me"},
		{1, 1, 4864, 40960 << 20, "", "1g.5gb"}, // A100 40GB
	}
	for _, tc := range tests {
		if got := migProfile(tc.ci, tc.gi, tc.mem, tc.total, tc.suffix); got != tc.want {
			t.Errorf("migProfile(%d, %d, %d MiB of %d MiB, %q) = %q, want %q", tc.ci, tc.gi, tc.mem, tc.total>>20, tc.suffix, got, tc.want)
		}
	}
}

// migNode discovers the dgx-h100 fixture on the mock with MIG on GPU
// indexes gpus (each with the instances given), capability nodes made.
func migNode(t *testing.T, gpus []int, instances ...nvmlmock.Instance) (*mockNVML, string, []Device) {
	t.Helper()
	root := copyTree(t, "dgx-h100", "dev")
	m := newMockNVML(t)
	for _, g := range gpus {
		must(t, m.EnableMIG(g, instances...))
		var gici [][2]int
		n := 0
		for _, in := range instances {
			for c := range max(in.CIs, 1) {
				gici = append(gici, [2]int{n, c})
			}
			n++
		}
		makeCapNodes(t, root, nvmlmock.GPUs[g].Minor, gici...)
	}
	devs, err := Discover(context.Background(), Config{Root: root, NVML: NVMLOn, NVMLLib: FromNVML(m.srv), Log: discardLog()})
	must(t, err)
	return m, root, devs
}

// TestMIGStrategies: none advertises GPUs whole; single replaces the GPUs
// of nvidia.com/gpu by their MIG devices when every one is in MIG mode
// with one profile, and advertises nothing (with CheckMIG's reason)
// otherwise; mixed gives nvidia.com/mig-<profile> per profile beside whole
// GPUs not in MIG mode.
func TestMIGStrategies(t *testing.T) {
	t.Parallel()
	all := []int{0, 1, 2, 3, 4, 5, 6, 7}
	one := nvmlmock.Instance{GI: nvml.GPU_INSTANCE_PROFILE_1_SLICE}
	three := nvmlmock.Instance{GI: nvml.GPU_INSTANCE_PROFILE_3_SLICE}
	counts := func(c ResourceConfig, devs []Device) map[string]string {
		out := map[string]string{}
		for _, a := range c.Plan(devs) {
			kinds := map[Kind]int{}
			for _, d := range a.Devices {
				kinds[d.Kind]++
			}
			out[a.Name] = fmt.Sprint(kinds)
		}
		return out
	}
	with := func(strategy string) ResourceConfig {
		c := DefaultConfig()
		c.GPU.MIGStrategy = strategy
		return c
	}
	tests := []struct {
		name     string
		gpus     []int
		strategy string
		want     map[string]string
		problem  string
	}{
		{"none", all, MIGNone, map[string]string{ResourceGPU: "map[gpu:8]", ResourceHCA: "map[hca:8]"}, ""},
		{"single, all in MIG mode", all, MIGSingle, map[string]string{ResourceGPU: "map[mig:16]", ResourceHCA: "map[hca:8]"}, ""},
		{"single, one in MIG mode", []int{2}, MIGSingle, map[string]string{ResourceHCA: "map[hca:8]"}, "not in MIG mode"},
		{"mixed", []int{2, 5}, MIGMixed, map[string]string{
			ResourceGPU: "map[gpu:6]", ResourceHCA: "map[hca:8]",
			"nvidia.com/mig-1g.10gb": "map[mig:2]", "nvidia.com/mig-3g.40gb": "map[mig:2]",
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, devs := migNode(t, tc.gpus, one, three)
			c := with(tc.strategy)
			if tc.strategy == MIGSingle && len(tc.gpus) == 8 {
				// single needs one profile: two 1g.10gb per GPU instead.
				_, _, devs = migNode(t, tc.gpus, one, one)
			}
			if diff := cmp.Diff(tc.want, counts(c, devs)); diff != "" {
				t.Errorf("Plan, strategy %s (-want +got):\n%s", tc.strategy, diff)
			}
			err := c.CheckMIG(devs)
			switch {
			case tc.problem == "" && err != nil:
				t.Errorf("CheckMIG = %v, want nil", err)
			case tc.problem != "" && (err == nil || !strings.Contains(err.Error(), tc.problem) || !strings.Contains(err.Error(), "mixed")):
				t.Errorf("CheckMIG = %v, want an error with %q that suggests mixed", err, tc.problem)
			}
		})
	}
	// Two profiles under single: refused too.
	_, _, devs := migNode(t, all, one, three)
	if err := with(MIGSingle).CheckMIG(devs); err == nil || !strings.Contains(err.Error(), "several profiles") {
		t.Errorf("CheckMIG(single, two profiles) = %v, want an error naming several profiles", err)
	}
}

// TestMonitorMIGFollowsParent: an XID on a GPU in MIG mode takes out its
// MIG devices with it, and only those.
func TestMonitorMIGFollowsParent(t *testing.T) {
	t.Parallel()
	m, root, devs := migNode(t, []int{2, 5}, nvmlmock.Instance{GI: nvml.GPU_INSTANCE_PROFILE_3_SLICE})
	ev := runMonitor(t, MonitorConfig{Root: root, NVML: NVMLOn, NVMLLib: FromNVML(m.srv), RecoveryPeriod: time.Hour}, devs)
	m.xid(2, 79)
	mig := nvmlmock.MIGUUID(2, 0, 0)
	evs := ev.waitFor(t, "GPU 2 and its MIG device unhealthy", func(evs []HealthEvent) bool {
		return has(evs, dgxUUID(0x52, 3), false, "xid 79") && has(evs, mig, false, "xid 79")
	})
	for _, e := range evs {
		if e.DeviceID != mig && e.DeviceID != dgxUUID(0x52, 3) {
			t.Errorf("event for %s after an XID on GPU 2: %+v", e.DeviceID, e)
		}
	}
}
