package deviceplugin

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/devices"
)

func TestPairDevices(t *testing.T) {
	t.Parallel()
	dev := func(id string, kind devices.Kind, root string, bridges ...string) devices.Device {
		return devices.Device{ID: id, Kind: kind, NUMANode: 0, PCIeRoot: root, Bridges: bridges}
	}
	gpus := []devices.Device{
		dev("g0", devices.KindGPU, "pci0000:10", "0000:10:01.0", "0000:11:00.0", "0000:12:00.0"),
		dev("g1", devices.KindGPU, "pci0000:20", "0000:20:01.0", "0000:21:00.0", "0000:22:00.0"),
		dev("g2", devices.KindGPU, "pci0000:30", "0000:30:01.0"), // no switch, no HCA near
	}
	hcas := []devices.Device{
		// Under g1's root port through a second switch (PXB).
		dev("h1far", devices.KindHCA, "pci0000:20", "0000:20:01.0", "0000:21:00.0", "0000:22:08.0", "0000:23:00.0", "0000:24:00.0"),
		// Under g1's switch (PIX): preferred over h1far.
		dev("h1", devices.KindHCA, "pci0000:20", "0000:20:01.0", "0000:21:00.0", "0000:22:04.0"),
		dev("h0", devices.KindHCA, "pci0000:10", "0000:10:01.0", "0000:11:00.0", "0000:12:04.0"),
		// Same NUMA node, other root: never paired.
		dev("h3", devices.KindHCA, "pci0000:40", "0000:40:01.0"),
	}
	pairs, restG, restH := PairDevices(gpus, hcas)
	var got []string
	for _, p := range pairs {
		got = append(got, p.ID)
	}
	if diff := cmp.Diff([]string{"g0+h0", "g1+h1"}, got); diff != "" {
		t.Errorf("PairDevices pairs mismatch (-want +got):\n%s", diff)
	}
	ids := func(ds []devices.Device) (out []string) {
		for _, d := range ds {
			out = append(out, d.ID)
		}
		return out
	}
	if diff := cmp.Diff([]string{"g2"}, ids(restG)); diff != "" {
		t.Errorf("PairDevices unpaired GPUs mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"h1far", "h3"}, ids(restH)); diff != "" {
		t.Errorf("PairDevices unpaired HCAs mismatch (-want +got):\n%s", diff)
	}
}

func TestBuildResourcesWithdrawsPairedDevices(t *testing.T) {
	t.Parallel()
	pair := PairConfig{Name: "slipway.dev/gpu-hca-pair", GPUResource: devices.ResourceGPU, HCAResource: devices.ResourceHCA}
	rs := BuildResources(byKind(loadFixture(t, "dgx-h100")), BuildOptions{Pairs: pair, ExcludeTopology: []string{devices.ResourceHCA}})
	got := map[string]int{}
	for _, r := range rs {
		got[r.Name] = len(r.Devices)
		if want := r.Name == devices.ResourceHCA; r.ExcludeTopology != want {
			t.Errorf("resource %s ExcludeTopology = %v, want %v", r.Name, r.ExcludeTopology, want)
		}
	}
	// Every GPU pairs with the HCA under its switch; the two storage ports
	// stay plain HCAs and no GPU is left for nvidia.com/gpu.
	want := map[string]int{pair.Name: 8, devices.ResourceHCA: 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("BuildResources with pairs: devices per resource mismatch (-want +got):\n%s", diff)
	}
}
