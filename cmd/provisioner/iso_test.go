package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/bootiso"
)

func TestISOCommand(t *testing.T) {
	testenv.RequireFiles(t, bootiso.DefaultSource)
	dir := t.TempDir()
	inv := filepath.Join(dir, "inv.yaml")
	y := `apiVersion: slipway.dev/v1alpha1
kind: Inventory
cluster: {name: t, kubernetesVersion: v1.37.2}
network:
  provisioner: {interface: eth0, address: 10.0.0.1}
  subnet: 10.0.0.0/24
profiles:
  bios:
    boot: {firmware: bios, kernel: vmlinuz, initrd: initrd.gz}
    bmc: {username: admin, password: "env:BMC_PW"}
  uefi:
    boot: {firmware: uefi, kernel: vmlinuz, initrd: initrd.gz}
    bmc: {username: admin, password: "env:BMC_PW"}
nodes:
  - {name: cp-1, profile: bios, role: control-plane, mac: "52:54:00:00:00:01", ip: 10.0.0.11, bmc: {url: "redfish://10.1.0.11"}}
  - {name: gpu-1, profile: uefi, role: worker, mac: "52:54:00:00:00:02", ip: 10.0.0.12, bmc: {url: "redfish://10.1.0.12"}}
`
	if err := os.WriteFile(inv, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "srv", "iso") // created by iso, as the example's /srv/slipway/iso
	code, stdout, stderr := runCLI(t, "iso", "cp-1", "--dir", out, "-f", inv)
	if code != exitOK || !strings.Contains(stdout, "chains to http://10.0.0.1:8080/boot/cp-1.ipxe") {
		t.Fatalf("iso cp-1 = %d\n%s%s", code, stdout, stderr)
	}
	iso, err := os.ReadFile(filepath.Join(out, "cp-1.iso"))
	if err != nil || !bytes.Contains(iso, []byte("set net${i}/ip 10.0.0.11\n")) || string(iso[16*2048+1:16*2048+6]) != "CD001" {
		t.Errorf("cp-1.iso is not the node's CD (err %v)", err)
	}
	code, _, stderr = runCLI(t, "iso", "gpu-1", "--dir", out, "-f", inv)
	if code != exitFailure || !strings.Contains(stderr, "cannot run the node's script under UEFI") {
		t.Errorf("iso gpu-1 (UEFI) = %d, stderr %q; want 1 and the UEFI refusal", code, stderr)
	}
	code, _, stderr = runCLI(t, "iso", "cp-1", "-f", inv)
	if code != exitUsage || !strings.Contains(stderr, "--dir is required") {
		t.Errorf("iso without --dir = %d, stderr %q", code, stderr)
	}
}
