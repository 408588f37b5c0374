package devices

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLocalityOf(t *testing.T) {
	dev := func(id, root string, numa int, bridges ...string) Device {
		return Device{ID: id, PCIeRoot: root, NUMANode: numa, Bridges: bridges}
	}
	tests := []struct {
		name string
		a, b Device
		want Locality
	}{
		{"self", dev("a", "pci0000:15", 0, "r", "u", "d1"), dev("a", "pci0000:15", 0, "r", "u", "d1"), LocalitySame},
		{"siblings under one switch", dev("a", "pci0000:15", 0, "r", "u", "d1"), dev("b", "pci0000:15", 0, "r", "u", "d2"), LocalitySwitch},
		{"functions of one card", dev("a", "pci0000:28", 0, "r"), dev("b", "pci0000:28", 0, "r"), LocalitySwitch},
		{"two switch levels", dev("a", "pci0000:15", 0, "r", "u", "d1", "u2", "d3"), dev("b", "pci0000:15", 0, "r", "u", "d2"), LocalityMultiSwitch},
		{"two root ports of one root", dev("a", "pci0000:00", 0, "r1"), dev("b", "pci0000:00", 0, "r2"), LocalityRoot},
		{"two roots, one numa node", dev("a", "pci0000:15", 0, "r"), dev("b", "pci0000:3d", 0, "r"), LocalityNUMA},
		{"two numa nodes", dev("a", "pci0000:15", 0, "r"), dev("b", "pci0000:97", 1, "r"), LocalitySystem},
		{"numa unknown", dev("a", "pci0000:15", NoNUMA, "r"), dev("b", "pci0000:3d", NoNUMA, "r"), LocalitySystem},
	}
	for _, tc := range tests {
		if got := LocalityOf(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: LocalityOf = %s, want %s", tc.name, got, tc.want)
		}
		if got := LocalityOf(tc.b, tc.a); got != tc.want {
			t.Errorf("%s: LocalityOf (swapped) = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestTopologyClosest(t *testing.T) {
	devs, _ := discoverOff(t, fixture("dgx-h100"))
	topo := NewTopology(devs)
	hcas := []string{"mlx5_11", "mlx5_0", "mlx5_6", "mlx5_3"}
	got := topo.Closest("GPU-00000043-1111-2222-3333-444400000001", hcas)
	// mlx5_3 shares the GPU's switch; mlx5_0 is on its NUMA node; the rest
	// are across, in the order given.
	want := []string{"mlx5_3", "mlx5_0", "mlx5_11", "mlx5_6"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Closest(GPU 0000:43:00.0, %v) (-want +got):\n%s", hcas, diff)
	}
	if got := topo.Locality("nope", "mlx5_0"); got != LocalitySystem {
		t.Errorf("Locality(unknown id) = %s, want SYS", got)
	}
}
