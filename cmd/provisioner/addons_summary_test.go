package main

import (
	"errors"
	"testing"

	"github.com/slipway-dev/slipway/pkg/addons"
	"github.com/slipway-dev/slipway/pkg/provision/assemble"
)

func TestAddonSummary(t *testing.T) {
	t.Parallel()
	cni := []addons.Result{{Addon: "/site/cni.yaml", Action: addons.Created}, {Addon: "/site/cni.yaml", Action: addons.Created}}
	kueue := []addons.Result{{Addon: "kueue-system/kueue", Object: "release kueue-system/kueue", Action: addons.Changed, Chart: "kueue 0.13.4"}}
	tests := []struct {
		name string
		res  *assemble.AddonsResult
		want string
	}{
		{
			name: "all applied",
			res: &assemble.AddonsResult{Objects: append(append([]addons.Result{}, cni...), kueue...), Addons: []assemble.AddonOutcome{
				{Name: "/site/cni.yaml", Objects: cni}, {Name: "kueue-system/kueue", Objects: kueue}}},
			want: "add-ons: 2 of 2 applied (3 objects: 2 created, 1 configured, 0 unchanged)",
		},
		{
			name: "one of three failed, one partly applied",
			res: &assemble.AddonsResult{Objects: cni, Err: errors.New("x"), Addons: []assemble.AddonOutcome{
				{Name: "/site/cni.yaml", Objects: cni},
				{Name: "/site/policy.yaml", Err: errors.New("inventory.yaml:12:5: document 2 (ClusterRole x): forbidden\nand a second line")},
				{Name: "kueue-system/kueue", Err: errors.New("inventory.yaml:14:5: apply chart add-on kueue-system/kueue: no such chart")}}},
			want: "add-ons: 1 of 3 applied (2 objects: 2 created, 0 configured, 0 unchanged); 2 not applied (fix them, then run up again or provisioner config addons):\n" +
				"  add-on /site/policy.yaml: inventory.yaml:12:5: document 2 (ClusterRole x): forbidden\n    and a second line\n" +
				"  add-on kueue-system/kueue: inventory.yaml:14:5: apply chart add-on kueue-system/kueue: no such chart",
		},
	}
	for _, tt := range tests {
		if got := addonSummary(tt.res); got != tt.want {
			t.Errorf("addonSummary(%s) =\n%s\nwant\n%s", tt.name, got, tt.want)
		}
	}
}
