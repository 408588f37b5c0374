//go:build cgo && linux

package dra

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/google/go-cmp/cmp"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/slipway-dev/slipway/pkg/devices"
	"github.com/slipway-dev/slipway/pkg/devices/nvmlmock"
)

// TestMIG runs the driver on the DGX tree with go-nvml's mock DGX, GPU
// index 2 (bus 0x52, minor 3) in MIG mode with two 1g.10gb instances,
// strategy mixed: the pool has the two MIG devices instead of their GPU,
// named by GPU and compute instance and described by their MIG facts, and
// a claim on one gets its device nodes (the GPU's and its two capability
// nodes) and NVIDIA_VISIBLE_DEVICES with the MIG UUID, as the device
// plugin's Allocate gives.
func TestMIG(t *testing.T) {
	e := newEnv(t, "dgx-h100")
	m := nvmlmock.NewDGXH100()
	if err := m.EnableMIG(2, nvmlmock.Instance{GI: nvml.GPU_INSTANCE_PROFILE_1_SLICE}, nvmlmock.Instance{GI: nvml.GPU_INSTANCE_PROFILE_1_SLICE}); err != nil {
		t.Fatal(err)
	}
	// The capability nodes nvidia-modprobe makes (minors from the tree's
	// mig-minors: 3 + 135 per GPU minor + 9 per GPU instance + ci + 1, the
	// GPU instance's own access at ci -1).
	capMinor := func(gi, ci int) int { return 3 + 3*135 + gi*9 + ci + 1 }
	for gi := range 2 {
		for _, ci := range []int{-1, 0} {
			p := filepath.Join(e.root, "dev", "nvidia-caps", fmt.Sprintf("nvidia-cap%d", capMinor(gi, ci)))
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	devs, err := devices.Discover(context.Background(), devices.Config{Root: e.root, NVML: devices.NVMLOn, NVMLLib: devices.FromNVML(m.Server)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := devices.DefaultConfig()
	cfg.GPU.MIGStrategy = devices.MIGMixed
	d, err := New(e.config().driver)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(devices.State{Devices: devs, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	pool, _ := d.Pool()
	byName := map[string]resourceapi.Device{}
	for _, s := range pool.Slices {
		for _, dev := range s.Devices {
			byName[dev.Name] = dev
		}
	}
	if _, ok := byName[gpu2]; ok {
		t.Errorf("%s is in MIG mode but published whole beside its MIG devices", gpu2)
	}
	mig0 := "mig-0000-52-00-0-gi0-ci0"
	var migs []string
	for name := range byName {
		if *byName[name].Attributes[AttrKind].StringValue == "mig" {
			migs = append(migs, name)
		}
	}
	slices.Sort(migs)
	if diff := cmp.Diff([]string{mig0, "mig-0000-52-00-0-gi1-ci0"}, migs); diff != "" {
		t.Fatalf("MIG devices in the pool (-want +got):\n%s", diff)
	}
	str := func(name resourceapi.QualifiedName) string {
		if v := byName[mig0].Attributes[name].StringValue; v != nil {
			return *v
		}
		return ""
	}
	for name, want := range map[resourceapi.QualifiedName]string{
		AttrUUID: nvmlmock.MIGUUID(2, 0, 0), AttrParentUUID: nvmlmock.UUID(0x52, 3), AttrMIGProfile: "1g.10gb",
		AttrResourceName: "nvidia.com/mig-1g.10gb", "resource.kubernetes.io/pciBusID": "0000:52:00.0",
	} {
		if got := str(name); got != want {
			t.Errorf("%s attribute %s = %q, want %q", mig0, name, got, want)
		}
	}
	if _, ok := byName[mig0].Capacity[CapMemory]; !ok {
		t.Errorf("%s has no memory capacity: %v", mig0, byName[mig0].Capacity)
	}

	c := e.claim("mig", mig0)
	claim, err := e.client.ResourceV1().ResourceClaims("ns").Get(context.Background(), c.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.PrepareResourceClaims(context.Background(), []*resourceapi.ResourceClaim{claim})
	if err != nil || res[claim.UID].Err != nil {
		t.Fatalf("PrepareResourceClaims(mig claim) = %v, %v", res, err)
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(e.cdi), cdi.WithAutoRefresh(false))
	if err != nil {
		t.Fatal(err)
	}
	var nodes, env []string
	for _, id := range res[claim.UID].Devices[0].CDIDeviceIDs {
		cd := cache.GetDevice(id)
		if cd == nil {
			t.Fatalf("cdi device %s not in the spec directory (has %v)", id, cache.ListDevices())
		}
		for _, n := range cd.ContainerEdits.DeviceNodes {
			nodes = append(nodes, n.Path)
		}
		env = append(env, cd.ContainerEdits.Env...)
	}
	wantNodes := []string{"/dev/nvidia3", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
		fmt.Sprintf("/dev/nvidia-caps/nvidia-cap%d", capMinor(0, -1)), fmt.Sprintf("/dev/nvidia-caps/nvidia-cap%d", capMinor(0, 0))}
	if diff := cmp.Diff(wantNodes, nodes); diff != "" {
		t.Errorf("device nodes of the MIG claim (-want +got):\n%s", diff)
	}
	if !slices.Contains(env, EnvNVIDIAVisibleDevices+"="+nvmlmock.MIGUUID(2, 0, 0)) {
		t.Errorf("environment of the MIG claim %v lacks %s=%s (the device plugin sets it)", env, EnvNVIDIAVisibleDevices, nvmlmock.MIGUUID(2, 0, 0))
	}
}
