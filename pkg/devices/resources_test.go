package devices

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func ids(devs []Device) []string {
	var out []string
	for _, d := range devs {
		out = append(out, d.ID)
	}
	return out
}

func TestAssignDefault(t *testing.T) {
	var devs []Device
	for _, f := range []string{"dgx-h100", "fpga-node"} {
		d, _ := discoverOff(t, fixture(f))
		devs = append(devs, d...)
	}
	got := map[string]int{}
	for name, ds := range DefaultConfig().Assign(devs) {
		got[name] = len(ds)
	}
	want := map[string]int{
		ResourceGPU: 8, ResourceHCA: 8,
		ResourceFPGA + "-15bd0a5d0c6e4ba4b7c0d3e0f4a8c1e2": 2, // the two Alveo U250 with one shell
		ResourceFPGA + "-3f54a1a5b3f0445b8f8cf0b0c7a02d8b": 1, // the N6001
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DefaultConfig().Assign(dgx-h100 + fpga-node) counts (-want +got):\n%s", diff)
	}
}

// TestAssignFPGA is issue 14's defect 4 on the resource side: FPGAs are
// advertised per bitstream-compatible identity (an Alveo and an N6001 never
// share a resource), or pooled under one name when the config says so; a
// card without an interface ID is named by its shell.
func TestAssignFPGA(t *testing.T) {
	devs, _ := discoverOff(t, fixture("fpga-node"))
	old := Device{ID: "0000:3b:00.1", Kind: KindFPGA, Attributes: map[string]string{"shell": "xilinx_u200_xdma_201830_2"}}
	none := Device{ID: "0000:3c:00.1", Kind: KindFPGA, Attributes: map[string]string{}}
	devs = append(devs, old, none)
	byName := func(c ResourceConfig) map[string][]string {
		out := map[string][]string{}
		for name, ds := range c.Assign(devs) {
			out[name] = ids(ds)
		}
		return out
	}
	want := map[string][]string{
		"slipway.dev/fpga-15bd0a5d0c6e4ba4b7c0d3e0f4a8c1e2": {"0000:17:00.1", "0000:65:00.1"},
		"slipway.dev/fpga-3f54a1a5b3f0445b8f8cf0b0c7a02d8b": {"0000:b1:00.0"},
		"slipway.dev/fpga-xilinx_u200_xdma_201830_2":        {"0000:3b:00.1"},
		"slipway.dev/fpga": {"0000:3c:00.1"},
	}
	if diff := cmp.Diff(want, byName(DefaultConfig())); diff != "" {
		t.Errorf("Assign(fpga-node), per identity (-want +got):\n%s", diff)
	}
	pooled := DefaultConfig()
	pooled.FPGA.Pool = true
	want = map[string][]string{"slipway.dev/fpga": {"0000:17:00.1", "0000:65:00.1", "0000:b1:00.0", "0000:3b:00.1", "0000:3c:00.1"}}
	if diff := cmp.Diff(want, byName(pooled)); diff != "" {
		t.Errorf("Assign(fpga-node), pooled (-want +got):\n%s", diff)
	}
	for name := range byName(DefaultConfig()) {
		if _, n, _ := strings.Cut(name, "/"); len(n) > 63 {
			t.Errorf("resource name %s: %d characters after the /, more than 63", name, len(n))
		}
	}
	long := DefaultConfig()
	long.Resources[2].Name = "example.com/a-very-long-name-for-our-fpga-cards"
	if err := long.Validate(); err == nil || !strings.Contains(err.Error(), "fpga.pool") {
		t.Errorf("Validate(a long FPGA resource name, split by identity) = %v, want an error suggesting fpga.pool", err)
	}
	long.FPGA.Pool = true
	if err := long.Validate(); err != nil {
		t.Errorf("Validate(a long FPGA resource name, pooled) = %v, want nil", err)
	}
}

func TestLoadConfigCustom(t *testing.T) {
	c, err := LoadConfig(filepath.Join("testdata", "config", "custom.yaml"))
	if err != nil {
		t.Fatalf("LoadConfig(custom.yaml): %v", err)
	}
	wantHealth := HealthConfig{
		IgnoredXIDs:    []uint64{13, 31, 43, 45, 68, 109, 94},
		PollInterval:   Duration{2 * time.Second},
		RecoveryPeriod: Duration{10 * time.Minute},
	}
	if diff := cmp.Diff(wantHealth, c.Health); diff != "" {
		t.Errorf("LoadConfig(custom.yaml).Health (-want +got):\n%s", diff)
	}
	var devs []Device
	for _, f := range []string{"dgx-h100", "broken-node", "fpga-node"} {
		d, _ := discoverOff(t, fixture(f))
		devs = append(devs, d...)
	}
	got := map[string][]string{}
	for name, ds := range c.Assign(devs) {
		got[name] = ids(ds)
	}
	want := map[string][]string{
		"nvidia.com/h100": {
			"GPU-0000001b-1111-2222-3333-444400000000", "GPU-00000043-1111-2222-3333-444400000001",
			"GPU-00000052-1111-2222-3333-444400000003", "GPU-00000061-1111-2222-3333-444400000002",
			"GPU-0000009d-1111-2222-3333-444400000004", "GPU-000000c3-1111-2222-3333-444400000005",
			"GPU-000000d1-1111-2222-3333-444400000006", "GPU-000000df-1111-2222-3333-444400000007",
		},
		// The broken node's A100s.
		"nvidia.com/gpu":    {"GPU-0badc0de-0000-0000-0000-000000000001", "0000:02:00.0"},
		"slipway.dev/ib":    {"mlx5_0", "mlx5_3", "mlx5_4", "mlx5_5", "mlx5_6", "mlx5_9", "mlx5_10", "mlx5_11", "mlx5_0", "mlx5_1"},
		"slipway.dev/u250":  {"0000:17:00.1"}, // 0000:65:00.1 excluded
		"slipway.dev/n6001": {"0000:b1:00.0"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadConfig(custom.yaml).Assign (-want +got):\n%s", diff)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		file string
		want []string // each must appear in the error
	}{
		{"typo.yaml", []string{"typo.yaml", "line 7", "field vendor not found"}},
		{"invalid.yaml", []string{
			`apiVersion "slipway.dev/v1"`,
			`name "gpu"`,
			`kind "tpu"`,
			`pci id "nvidia"`,
			`resources[1] (slipway.dev/any): selector: empty`,
			`pci address "zz:00.0"`,
			`link layer "Infiniband"`,
			`model pattern "[H100"`,
			`resources[2] (slipway.dev/x): replicas -2`,
			`health.pollInterval -1s`,
			`exclude[0]: empty`,
		}},
		{"missing.yaml", []string{"missing.yaml", "no such file"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			_, err := LoadConfig(filepath.Join("testdata", "config", tc.file))
			if err == nil {
				t.Fatalf("LoadConfig(%s) = nil error, want one", tc.file)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("LoadConfig(%s) error lacks %q:\n%v", tc.file, w, err)
				}
			}
		})
	}
}

func TestLoadConfigDuration(t *testing.T) {
	_, err := ParseConfig([]byte("apiVersion: slipway.dev/v1alpha1\nkind: DevicePluginConfig\nhealth:\n  recoveryPeriod: soon\n"))
	if err == nil || !strings.Contains(err.Error(), `line 4: duration "soon"`) {
		t.Errorf("ParseConfig(recoveryPeriod: soon) = %v, want a duration error on line 4", err)
	}
	c, err := ParseConfig([]byte("apiVersion: slipway.dev/v1alpha1\nkind: DevicePluginConfig\n"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(DefaultConfig(), c); diff != "" {
		t.Errorf("ParseConfig(no resources, no health) differs from DefaultConfig() (-want +got):\n%s", diff)
	}
}

func TestSelectorMatches(t *testing.T) {
	gpu := Device{Kind: KindGPU, VendorID: "0x10de", DeviceID: "0x2330", Driver: "nvidia", PCIAddress: "0000:1b:00.0", Model: "NVIDIA H100 80GB HBM3"}
	roce := Device{Kind: KindHCA, VendorID: "0x15b3", DeviceID: "0x1021", Driver: "mlx5_core", PCIAddress: "0000:29:00.0",
		Ports: []Port{{Number: 1, LinkLayer: "Ethernet"}}}
	tests := []struct {
		name string
		sel  Selector
		dev  Device
		want bool
	}{
		{"empty matches nothing", Selector{}, gpu, false},
		{"kind", Selector{Kinds: []Kind{KindGPU}}, gpu, true},
		{"kind other", Selector{Kinds: []Kind{KindHCA}}, gpu, false},
		{"vendor without 0x, upper case", Selector{Vendors: []string{"10DE"}}, gpu, true},
		{"device id", Selector{DeviceIDs: []string{"0x2331", "0x2330"}}, gpu, true},
		{"driver", Selector{Drivers: []string{"nouveau"}}, gpu, false},
		{"pci address short form", Selector{PCIAddresses: []string{"1b:00.0"}}, gpu, true},
		{"pci address prefix", Selector{PCIAddresses: []string{"0000:1*"}}, gpu, true},
		{"pci address other", Selector{PCIAddresses: []string{"0000:1c:00.0"}}, gpu, false},
		{"model pattern", Selector{Model: "*H100*"}, gpu, true},
		{"model pattern other", Selector{Model: "*A100*"}, gpu, false},
		{"link layer", Selector{LinkLayers: []string{"Ethernet"}}, roce, true},
		{"link layer other", Selector{LinkLayers: []string{"InfiniBand"}}, roce, false},
		{"link layer on a gpu", Selector{LinkLayers: []string{"InfiniBand"}}, gpu, false},
		{"all fields must match", Selector{Kinds: []Kind{KindGPU}, Drivers: []string{"vfio-pci"}}, gpu, false},
	}
	for _, tc := range tests {
		if got := tc.sel.Matches(tc.dev); got != tc.want {
			t.Errorf("%s: %+v.Matches(%s) = %v, want %v", tc.name, tc.sel, tc.dev.PCIAddress, got, tc.want)
		}
	}
}

func TestResourceConfigMonitorConfig(t *testing.T) {
	c, err := LoadConfig(filepath.Join("testdata", "config", "custom.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := c.MonitorConfig(Config{Root: "/host", NVML: NVMLOff})
	want := MonitorConfig{
		Root: "/host", NVML: NVMLOff,
		IgnoredXIDs:  []uint64{13, 31, 43, 45, 68, 109, 94},
		PollInterval: 2 * time.Second, RecoveryPeriod: 10 * time.Minute,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("MonitorConfig(custom.yaml) (-want +got):\n%s", diff)
	}
}

// TestAssignRoCE: RoCE ports are advertised only when a config asks, under
// a resource of their own, never mixed with the InfiniBand HCAs; a port
// whose link layer differs keeps an HCA out of a link-layer resource.
func TestAssignRoCE(t *testing.T) {
	devs, _ := discoverOff(t, fixture("dgx-h100"))
	c := DefaultConfig()
	c.Resources = append(c.Resources, Resource{Name: ResourceRoCE, Selector: Selector{Kinds: []Kind{KindHCA}, LinkLayers: []string{LinkLayerEthernet}}})
	got := map[string][]string{}
	for name, ds := range c.Assign(devs) {
		got[name] = ids(ds)
	}
	want := []string{"mlx5_0", "mlx5_3", "mlx5_4", "mlx5_5", "mlx5_6", "mlx5_9", "mlx5_10", "mlx5_11"}
	if diff := cmp.Diff(want, got[ResourceHCA]); diff != "" {
		t.Errorf("Assign: %s (-want +got):\n%s", ResourceHCA, diff)
	}
	if diff := cmp.Diff([]string{"mlx5_1", "mlx5_2", "mlx5_7", "mlx5_8"}, got[ResourceRoCE]); diff != "" {
		t.Errorf("Assign: %s (-want +got):\n%s", ResourceRoCE, diff)
	}
	vpi := Device{ID: "mlx5_12", Kind: KindHCA, Ports: []Port{{Number: 1, LinkLayer: LinkLayerInfiniBand}, {Number: 2, LinkLayer: LinkLayerEthernet}}}
	for _, r := range c.Resources {
		if r.Name != ResourceGPU && r.Name != ResourceFPGA && r.Selector.Matches(vpi) {
			t.Errorf("%s matches an HCA with an InfiniBand and an Ethernet port; a link-layer selector needs every port", r.Name)
		}
	}
}

// TestConfigResourceNameLength: a name the kubelet would refuse at every
// registration (more than 63 characters after the /) is a config error,
// not a plugin that never registers.
func TestConfigResourceNameLength(t *testing.T) {
	long := "example.com/" + strings.Repeat("g", 64)
	_, err := ParseConfig([]byte("apiVersion: slipway.dev/v1alpha1\nkind: DevicePluginConfig\nresources:\n  - name: " + long + "\n    selector:\n      kinds: [gpu]\n"))
	if err == nil || !strings.Contains(err.Error(), "64 characters after the /, the kubelet takes at most 63") {
		t.Errorf("ParseConfig(resource %s) = %v, want an error about its length", long, err)
	}
	for _, ok := range []string{"example.com/" + strings.Repeat("g", 63), "nvidia.com/gpu", "slipway.dev/hca"} {
		if err := CheckResourceName(ok); err != nil {
			t.Errorf("CheckResourceName(%s) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"gpu", "kubernetes.io/gpu", "requests.example.com/gpu", "example.com/-gpu"} {
		if err := CheckResourceName(bad); err == nil {
			t.Errorf("CheckResourceName(%s) = nil, want an error", bad)
		}
	}
}
