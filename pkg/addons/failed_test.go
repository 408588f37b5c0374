package addons

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

func TestFailedAddons(t *testing.T) {
	t.Parallel()
	cni := &AddonError{Addon: inventory.Addon{Manifest: "/site/cni.yaml"}, Err: errors.New("inventory.yaml:3:5: forbidden")}
	kueue := &AddonError{Addon: inventory.Addon{Chart: &inventory.Chart{Namespace: "kueue-system", Release: "kueue"}}, Err: errors.New("inventory.yaml:9:5: no such chart")}
	names := func(es []*AddonError) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Addon.Name())
		}
		return out
	}
	for _, tt := range []struct {
		name string
		err  error
		want []string
	}{
		{"none", nil, nil},
		{"not about an add-on", errors.New("apply add-ons: the API server never answered"), nil},
		{"one", cni, []string{"/site/cni.yaml"}},
		{"joined, in order", errors.Join(cni, kueue), []string{"/site/cni.yaml", "kueue-system/kueue"}},
	} {
		if diff := cmp.Diff(tt.want, names(FailedAddons(tt.err))); diff != "" {
			t.Errorf("FailedAddons(%s) (-want +got):\n%s", tt.name, diff)
		}
	}
	if got, want := errors.Join(cni, kueue).Error(), "inventory.yaml:3:5: forbidden\ninventory.yaml:9:5: no such chart"; got != want {
		t.Errorf("joined text = %q, want the add-ons' own texts %q", got, want)
	}
}
