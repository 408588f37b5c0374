package inventory

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTopologyLabels(t *testing.T) {
	inv, err := Load("testdata/valid-routed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gpu03, _ := inv.Node("gpu03")
	want := map[string]string{
		"topology.slipway.dev/zone":   "hall-a",
		"topology.kubernetes.io/zone": "hall-a",
		"topology.slipway.dev/block":  "b2",
		"topology.slipway.dev/rack":   "r03",
		"topology.slipway.dev/leaf":   "leaf-b2-03",
	}
	if diff := cmp.Diff(want, gpu03.NodeLabels()); diff != "" {
		t.Errorf("gpu03.NodeLabels() (-want +got):\n%s", diff)
	}
	var levels []string
	for _, l := range gpu03.Topology {
		levels = append(levels, l.Level)
	}
	if diff := cmp.Diff([]string{"zone", "block", "leaf", "rack"}, levels); diff != "" {
		t.Errorf("gpu03 topology levels, broadest first (-want +got):\n%s", diff)
	}
	if gpu03.Rack != "r03" {
		t.Errorf("gpu03.Rack = %q, want r03 (from rack:)", gpu03.Rack)
	}
	cp1, _ := inv.Node("cp1")
	if got := cp1.NodeLabels(); len(got) != 0 {
		t.Errorf("cp1 (no labels, no topology).NodeLabels() = %v, want none", got)
	}
}

// Two nodes listing the same levels in opposite orders is a warning: a
// scheduler's Topology object has one order.
func TestTopologyOrderWarning(t *testing.T) {
	src := minimalWith(`
  - name: a1
    profile: cp
    mac: 52:54:00:00:00:02
    ip: 10.0.0.12
    topology: {block: b1, rack: r1}
    bmc: {url: "redfish://10.1.0.2"}
  - name: a2
    profile: cp
    mac: 52:54:00:00:00:03
    ip: 10.0.0.13
    topology: {rack: r1, block: b1}
    bmc: {url: "redfish://10.1.0.3"}
`)
	inv, err := Resolve(File{Name: "order.yaml", Data: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Warnings) != 1 || !strings.Contains(inv.Warnings[0], "node a2 lists topology level rack before block, node a1 the other way round") {
		t.Errorf("Warnings = %q, want one about a2's level order", inv.Warnings)
	}
}

// minimalWith is a valid one-node inventory with extra node entries.
func minimalWith(nodes string) string {
	return `apiVersion: slipway.dev/v1alpha1
kind: Inventory
cluster: {name: t, kubernetesVersion: v1.37.2}
network:
  provisioner: {interface: eth0, address: 10.0.0.1}
  subnet: 10.0.0.0/24
profiles:
  cp:
    role: control-plane
    boot: {kernel: vmlinuz, initrd: initrd.img}
    bmc: {username: admin, password: "env:BMC_PASSWORD"}
nodes:
  - name: cp1
    profile: cp
    mac: 52:54:00:00:00:01
    ip: 10.0.0.11
    bmc: {url: "redfish://10.1.0.1"}` + nodes
}

func TestCheckPlaceholders(t *testing.T) {
	for _, tt := range []struct{ in, wantErr string }{
		{in: "SN-{index}"},
		{in: "{index}-{index}"},
		{in: "plain"},
		{in: "SN-{idx}", wantErr: `"{idx}"`},
		{in: "SN-{Index}", wantErr: `"{Index}"`},
		{in: "r{index", wantErr: `"{index"`},
		{in: "rindex}", wantErr: `"rindex}"`},
		{in: "{index}}", wantErr: `"{index}}"`},
		{in: "a{{index}", wantErr: `"{{index}"`},
	} {
		err := checkPlaceholders(tt.in)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("checkPlaceholders(%q) = %v, want nil", tt.in, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("checkPlaceholders(%q) = %v, want an error naming %s", tt.in, err, tt.wantErr)
		}
	}
}

func TestSecretLabelKey(t *testing.T) {
	for key, want := range map[string]bool{
		"example.com/bmc-password":    true,
		"example.com/api-token":       true,
		"example.com/API_KEY":         true,
		"secret":                      true,
		"example.com/private.key":     true,
		"example.com/gpu-passthrough": false,
		"example.com/tokenizer-cache": false,
		"node.slipway.dev/fabric":     false,
		"example.com/keystone-zone":   false,
	} {
		if got := secretLabelKey(key); got != want {
			t.Errorf("secretLabelKey(%q) = %v, want %v", key, got, want)
		}
	}
}
