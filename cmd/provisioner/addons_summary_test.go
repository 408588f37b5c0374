package main

import (
	"errors"
	"testing"

	"github.com/slipway-dev/slipway/pkg/addons"
)

func TestAddonSummary(t *testing.T) {
	tests := []struct {
		res  []addons.Result
		err  error
		want string
	}{
		{
			res:  []addons.Result{{Action: addons.Created}, {Action: addons.Created}, {Action: addons.Unchanged}, {Action: addons.Changed}},
			want: "add-ons: 4 objects applied (2 created, 1 configured, 1 unchanged)",
		},
		{
			err:  errors.New("apply add-on addons/cni.yaml: document 2 (DaemonSet kube-system/cni): forbidden"),
			want: "add-ons: not applied: apply add-on addons/cni.yaml: document 2 (DaemonSet kube-system/cni): forbidden (fix it, then run up again or provisioner config addons)",
		},
	}
	for _, tt := range tests {
		if got := addonSummary(tt.res, tt.err); got != tt.want {
			t.Errorf("addonSummary(%v, %v) = %q, want %q", tt.res, tt.err, got, tt.want)
		}
	}
}
