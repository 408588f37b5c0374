package inventory

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// What inventory show prints must load again, to the same inventory.
func TestEncodeRoundTrip(t *testing.T) {
	paths, err := filepath.Glob("testdata/valid-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	paths = append(paths, "testdata/split", "../../inventory/rack-gpu.yaml", "../../inventory/lab-qemu.yaml")
	examples, _ := filepath.Glob("../../inventory/examples/*")
	paths = append(paths, examples...)
	ignore := cmp.Options{
		cmpopts.IgnoreFields(Inventory{}, "Sources", "Warnings"),
		cmpopts.IgnoreFields(Node{}, "Source"),
		cmpopts.IgnoreFields(Addon{}, "Source"),
		cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}),
		cmpopts.EquateEmpty(),
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			t.Parallel()
			want, err := Load(p)
			if err != nil {
				t.Fatalf("Load(%q):\n%v", p, err)
			}
			for _, enc := range []struct {
				name string
				fn   func() ([]byte, error)
			}{{"yaml", want.EncodeYAML}, {"json", want.EncodeJSON}} {
				b, err := enc.fn()
				if err != nil {
					t.Fatalf("Encode%s(%s): %v", strings.ToUpper(enc.name), p, err)
				}
				got, err := Resolve(File{Name: "show." + enc.name, Data: b})
				if err != nil {
					t.Fatalf("the %s that inventory show prints for %s does not load:\n%v\n%s", enc.name, p, err, b)
				}
				if diff := cmp.Diff(want, got, ignore); diff != "" {
					t.Errorf("%s round trip of %s changed the inventory (-loaded +reloaded):\n%s", enc.name, p, diff)
				}
			}
		})
	}
}
