package devices

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestDiscoverEveryFileDamaged breaks each file of the dgx-h100 tree in turn
// (garbage, then removed) and checks that discovery never fails or panics,
// never reports a device twice, and never invents a NUMA node or address.
func TestDiscoverEveryFileDamaged(t *testing.T) {
	if testing.Short() {
		t.Skip("runs discovery about 1,500 times")
	}
	root := copyTree(t, "dgx-h100")
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	must(t, err)
	damages := []struct {
		name string
		do   func(p string) error
	}{
		{"garbage", func(p string) error { return os.WriteFile(p, []byte("\xff\x00garbage: -7 0x\n"), 0o644) }},
		{"removed", os.Remove},
	}
	for _, f := range files {
		orig, err := os.ReadFile(f)
		must(t, err)
		rel, _ := filepath.Rel(root, f)
		for _, dmg := range damages {
			must(t, dmg.do(f))
			devs, err := Discover(context.Background(), Config{Root: root, NVML: NVMLOff, Log: discardLog()})
			if err != nil {
				t.Errorf("Discover with %s %s: %v", rel, dmg.name, err)
			}
			seen := map[string]bool{}
			for _, d := range devs {
				if seen[d.ID] {
					t.Errorf("Discover with %s %s reports %s twice", rel, dmg.name, d.ID)
				}
				seen[d.ID] = true
				if d.NUMANode < NoNUMA || d.NUMANode > 1 {
					t.Errorf("Discover with %s %s: %s NUMA node %d, the tree has 0 and 1", rel, dmg.name, d.ID, d.NUMANode)
				}
				if !isBDF(d.PCIAddress) {
					t.Errorf("Discover with %s %s: %s PCI address %q", rel, dmg.name, d.ID, d.PCIAddress)
				}
			}
			if len(devs) > 20 {
				t.Errorf("Discover with %s %s = %d devices, more than the tree has", rel, dmg.name, len(devs))
			}
			must(t, os.WriteFile(f, orig, 0o644))
		}
	}
}
