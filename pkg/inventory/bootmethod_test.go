package inventory_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// TestBootMethod: boot.method comes from the profile or the node, defaults
// to pxe, survives inventory show, and refuses unknown methods, virtual
// media on an IPMI BMC and virtual media under UEFI.
func TestBootMethod(t *testing.T) {
	write := func(nodes string) string {
		p := filepath.Join(t.TempDir(), "inv.yaml")
		y := `apiVersion: slipway.dev/v1alpha1
kind: Inventory
cluster: {name: t, kubernetesVersion: v1.37.2}
network:
  provisioner: {interface: eth0, address: 10.0.0.1}
  subnet: 10.0.0.0/24
profiles:
  vm:
    boot: {firmware: bios, kernel: vmlinuz, initrd: initrd.gz, method: virtual-media}
    bmc: {username: admin, password: "env:BMC_PW"}
  pxe:
    boot: {kernel: vmlinuz, initrd: initrd.gz}
    bmc: {username: admin, password: "env:BMC_PW"}
nodes:
` + nodes
		if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	inv, err := inventory.Load(write(`  - {name: cp-1, profile: vm, role: control-plane, mac: "52:54:00:00:00:01", ip: 10.0.0.11, bmc: {url: "redfish://10.1.0.11"}}
  - {name: w-1, profile: pxe, role: worker, mac: "52:54:00:00:00:02", ip: 10.0.0.12, bmc: {url: "ipmi://10.1.0.12"}}
  - {name: w-2, profile: pxe, role: worker, mac: "52:54:00:00:00:03", ip: 10.0.0.13, boot: {method: virtual-media, firmware: bios}, bmc: {url: "redfish://10.1.0.13"}}
`))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for name, want := range map[string]inventory.BootMethod{"cp-1": inventory.BootMethodVirtualMedia, "w-1": "", "w-2": inventory.BootMethodVirtualMedia} {
		if n, _ := inv.Node(name); n.Boot.Method != want {
			t.Errorf("node %s boot.method = %q, want %q", name, n.Boot.Method, want)
		}
	}
	_, err = inventory.Load(write(`  - {name: cp-1, profile: vm, role: control-plane, mac: "52:54:00:00:00:01", ip: 10.0.0.11, bmc: {url: "ipmi://10.1.0.11"}}
  - {name: w-1, profile: pxe, role: worker, mac: "52:54:00:00:00:02", ip: 10.0.0.12, boot: {method: usb}, bmc: {url: "redfish://10.1.0.12"}}
  - {name: w-2, profile: pxe, role: worker, mac: "52:54:00:00:00:03", ip: 10.0.0.13, boot: {method: virtual-media}, bmc: {url: "redfish://10.1.0.13"}}
`))
	for _, want := range []string{
		"node cp-1: boot.method virtual-media needs a Redfish BMC (redfish:// or redfish+http://); IPMI has no virtual media",
		`unknown boot method "usb": want pxe or virtual-media`,
		// UEFI (the default firmware): up and iso would refuse the node
		// only once running; validate says so first, with the line.
		"inv.yaml:17:92: nodes[2].boot: node w-2: boot.method virtual-media needs boot.firmware: bios",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load of bad boot methods = %v, want it to say %q", err, want)
		}
	}
}

// TestConfigFormat: boot.configFormat comes from the profile or the node,
// is empty (the provisioner's default) when neither sets it, survives
// inventory show, and refuses unknown formats with the line.
func TestConfigFormat(t *testing.T) {
	load := func(nodes string) (*inventory.Inventory, error) {
		p := filepath.Join(t.TempDir(), "inv.yaml")
		y := `apiVersion: slipway.dev/v1alpha1
kind: Inventory
cluster: {name: t, kubernetesVersion: v1.37.2}
network:
  provisioner: {interface: eth0, address: 10.0.0.1}
  subnet: 10.0.0.0/24
profiles:
  stateless:
    boot: {kernel: vmlinuz, initrd: initrd.gz, configFormat: script}
    bmc: {username: admin, password: "env:BMC_PW"}
  plain:
    boot: {kernel: vmlinuz, initrd: initrd.gz}
    bmc: {username: admin, password: "env:BMC_PW"}
nodes:
` + nodes
		if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		return inventory.Load(p)
	}
	inv, err := load(`  - {name: cp-1, profile: plain, role: control-plane, mac: "52:54:00:00:00:01", ip: 10.0.0.11, bmc: {url: "redfish://10.1.0.11"}}
  - {name: w-1, profile: stateless, role: worker, mac: "52:54:00:00:00:02", ip: 10.0.0.12, bmc: {url: "redfish://10.1.0.12"}}
  - {name: w-2, profile: stateless, role: worker, mac: "52:54:00:00:00:03", ip: 10.0.0.13, bmc: {url: "redfish://10.1.0.13"}, boot: {configFormat: cloud-config}}
`)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := map[string]inventory.ConfigFormat{"cp-1": "", "w-1": inventory.ConfigFormatScript, "w-2": inventory.ConfigFormatCloudConfig}
	for name, f := range want {
		if n, _ := inv.Node(name); n.Boot.ConfigFormat != f {
			t.Errorf("node %s boot.configFormat = %q, want %q", name, n.Boot.ConfigFormat, f)
		}
	}
	out, err := inv.EncodeYAML()
	if err != nil {
		t.Fatalf("EncodeYAML: %v", err)
	}
	p := filepath.Join(t.TempDir(), "shown.yaml")
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := inventory.Load(p)
	if err != nil {
		t.Fatalf("Load of the encoded inventory: %v\n%s", err, out)
	}
	for name, f := range want {
		if n, _ := again.Node(name); n.Boot.ConfigFormat != f {
			t.Errorf("after encode: node %s boot.configFormat = %q, want %q", name, n.Boot.ConfigFormat, f)
		}
	}
	_, err = load(`  - {name: cp-1, profile: plain, role: control-plane, mac: "52:54:00:00:00:01", ip: 10.0.0.11, bmc: {url: "redfish://10.1.0.11"}, boot: {configFormat: ignition}}
`)
	if wantErr := `inv.yaml:15:`; err == nil || !strings.Contains(err.Error(), wantErr) || !strings.Contains(err.Error(), `unknown node configuration format "ignition": want cloud-config or script`) {
		t.Errorf("Load with configFormat ignition = %v, want the line (%s) and the formats", err, wantErr)
	}
}
