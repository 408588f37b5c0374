package devices

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var damageAll = flag.Bool("damage-all", false, "TestDiscoverEveryFileDamaged: damage every file of the tree, not one of each kind")

// TestDiscoverEveryFileDamaged breaks files of the dgx-h100 tree in turn
// (garbage, then removed) and checks that discovery never fails or panics,
// never reports a device twice, and never invents a NUMA node or address.
//
// One file of each kind is damaged: a kind is what discovery reads it as,
// the file's path below the PCI function that owns it (digits ignored)
// together with that function's class, driver and depth under its PCIe
// root, or for files outside /sys/devices its path with numbers and PCI
// addresses ignored. The tree's 814 files are 134 kinds; damaging the same
// attribute of the 40 switch ports or the 8 GPUs in turn runs the same code
// 40 or 8 times over, and 1,600 discoveries took 66 to 180 s on the loaded
// CI machine. -damage-all damages every file.
func TestDiscoverEveryFileDamaged(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs discovery about 250 times")
	}
	root := copyTree(t, "dgx-h100")
	want := goldenCount(t, "dgx-h100")
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	must(t, err)
	if !*damageAll {
		files = oneOfEachKind(t, root, files)
	}
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
			if len(devs) > want {
				t.Errorf("Discover with %s %s = %d devices, more than the %d the tree has", rel, dmg.name, len(devs), want)
			}
			must(t, os.WriteFile(f, orig, 0o644))
		}
	}
}

var (
	bdfPart = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)
	digits  = regexp.MustCompile(`[0-9]+`)
	bdfs    = regexp.MustCompile(`[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]`)
)

// oneOfEachKind returns the first file (in walk order) of each kind, as
// TestDiscoverEveryFileDamaged defines kinds, read from the undamaged tree.
func oneOfEachKind(t *testing.T, root string, files []string) []string {
	t.Helper()
	kinds := map[string]bool{}
	var out []string
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		parts := strings.Split(rel, string(filepath.Separator))
		kind := "other " + digits.ReplaceAllString(bdfs.ReplaceAllString(rel, "BDF"), "N")
		if len(parts) > 2 && parts[0] == "sys" && parts[1] == "devices" {
			last := -1
			for i, p := range parts {
				if bdfPart.MatchString(p) {
					last = i
				}
			}
			if last >= 0 {
				fn := filepath.Join(root, filepath.Join(parts[:last+1]...))
				class, _ := os.ReadFile(filepath.Join(fn, "class"))
				driver, _ := os.Readlink(filepath.Join(fn, "driver"))
				depth := slices.IndexFunc(parts, bdfPart.MatchString)
				kind = fmt.Sprintf("pci %s %s depth %d: %s", strings.TrimSpace(string(class)), filepath.Base(driver),
					last-depth, digits.ReplaceAllString(filepath.Join(parts[last+1:]...), "N"))
			}
		}
		if !kinds[kind] {
			kinds[kind] = true
			out = append(out, f)
		}
	}
	return out
}
