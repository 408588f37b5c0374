package assemble

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/addons"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

// TestAddonsResult: what up reports per add-on, from what ApplyWhenServing
// returned: each add-on's objects, and the add-ons that failed by name (a
// manifest can fail half applied), or, when the API never answered, every
// add-on that applied nothing.
func TestAddonsResult(t *testing.T) {
	t.Parallel()
	cni := inventory.Addon{Manifest: "/site/cni.yaml"}
	policy := inventory.Addon{Manifest: "/site/policy.yaml"}
	kueue := inventory.Addon{Chart: &inventory.Chart{Namespace: "kueue-system", Release: "kueue"}}
	list := []inventory.Addon{cni, policy, kueue}
	objs := []addons.Result{{Addon: "/site/cni.yaml", Object: "DaemonSet kube-system/cni", Action: addons.Created},
		{Addon: "/site/policy.yaml", Object: "ClusterRole a", Action: addons.Created}}
	forbidden := errors.New("inventory.yaml:12:5: document 2 (ClusterRole b): forbidden")
	noChart := errors.New("inventory.yaml:14:5: apply chart add-on kueue-system/kueue: no such chart")
	type outcome struct {
		Name    string
		Objects int
		Err     string
	}
	summarize := func(r *AddonsResult) []outcome {
		var out []outcome
		for _, a := range r.Addons {
			o := outcome{Name: a.Name, Objects: len(a.Objects)}
			if a.Err != nil {
				o.Err = a.Err.Error()
			}
			out = append(out, o)
		}
		return out
	}
	tests := []struct {
		name string
		objs []addons.Result
		err  error
		want []outcome
	}{
		{"all applied", objs, nil, []outcome{{"/site/cni.yaml", 1, ""}, {"/site/policy.yaml", 1, ""}, {"kueue-system/kueue", 0, ""}}},
		{"two failed, one of them half applied", objs,
			errors.Join(&addons.AddonError{Addon: policy, Err: forbidden}, &addons.AddonError{Addon: kueue, Err: noChart}),
			[]outcome{{"/site/cni.yaml", 1, ""}, {"/site/policy.yaml", 1, forbidden.Error()}, {"kueue-system/kueue", 0, noChart.Error()}}},
		{"the API never answered", nil, errors.New("apply add-ons: the API server never answered: context canceled"),
			[]outcome{{"/site/cni.yaml", 0, "apply add-ons: the API server never answered: context canceled"},
				{"/site/policy.yaml", 0, "apply add-ons: the API server never answered: context canceled"},
				{"kueue-system/kueue", 0, "apply add-ons: the API server never answered: context canceled"}}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, summarize(addonsResult(list, tt.objs, tt.err))); diff != "" {
			t.Errorf("addonsResult(%s) (-want +got):\n%s", tt.name, diff)
		}
	}
}
