package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/bootiso"
	"github.com/slipway-dev/slipway/pkg/inventory"
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
	// serve/up --http-port 9090: the CD must chain to that port.
	code, stdout, stderr = runCLI(t, "iso", "cp-1", "--dir", out, "--http-port", "9090", "-f", inv)
	if code != exitOK || !strings.Contains(stdout, "chains to http://10.0.0.1:9090/boot/cp-1.ipxe") {
		t.Errorf("iso cp-1 --http-port 9090 = %d\n%s%s", code, stdout, stderr)
	}
	if iso, err := os.ReadFile(filepath.Join(out, "cp-1.iso")); err != nil || !bytes.Contains(iso, []byte("chain http://10.0.0.1:9090/boot/cp-1.ipxe")) {
		t.Errorf("cp-1.iso built with --http-port 9090 does not chain to port 9090 (err %v)", err)
	}
	code, _, stderr = runCLI(t, "iso", "gpu-1", "--dir", out, "-f", inv)
	if code != exitFailure || !strings.Contains(stderr, "cannot run the node's script under UEFI") {
		t.Errorf("iso gpu-1 (UEFI) = %d, stderr %q; want 1 and the UEFI refusal", code, stderr)
	}
	// One bad node among several: nothing is written.
	empty := t.TempDir()
	code, _, stderr = runCLI(t, "iso", "cp-1", "gpu-1", "--dir", empty, "-f", inv)
	if files, _ := os.ReadDir(empty); code != exitFailure || len(files) != 0 {
		t.Errorf("iso cp-1 gpu-1 (gpu-1 UEFI) = %d, stderr %q, wrote %d file(s); want 1 and nothing written", code, stderr, len(files))
	}
	code, _, stderr = runCLI(t, "iso", "cp-1", "-f", inv)
	if code != exitUsage || !strings.Contains(stderr, "--dir is required") {
		t.Errorf("iso without --dir = %d, stderr %q", code, stderr)
	}
}

// TestBMCHelpExamples: the examples of bootdev and iso run as written from
// the repository's root: the inventory they name exists and loads, every
// node they name is in it, and iso (which needs no BMC) builds its CDs.
func TestBMCHelpExamples(t *testing.T) {
	root := newRootCmd(&globals{stdout: io.Discard, stderr: io.Discard})
	for _, use := range [][]string{{"bootdev"}, {"iso"}} {
		cmd, _, err := root.Find(use)
		if err != nil {
			t.Fatal(err)
		}
		if cmd.Example == "" {
			t.Errorf("%s has no example", use[0])
		}
		for _, line := range strings.Split(cmd.Example, "\n") {
			args := strings.Fields(line)
			if len(args) < 2 || args[0] != "provisioner" {
				t.Errorf("%s example %q does not start with provisioner", use[0], line)
				continue
			}
			args = args[1:]
			ex, rest, err := newRootCmd(&globals{stdout: io.Discard, stderr: io.Discard}).Find(args)
			if err != nil {
				t.Errorf("%s example %q: %v", use[0], line, err)
				continue
			}
			if err := ex.ParseFlags(rest); err != nil {
				t.Errorf("%s example %q: %v", use[0], line, err)
				continue
			}
			files, _ := ex.Flags().GetStringArray("file")
			if len(files) != 1 {
				t.Errorf("%s example %q names %d inventories, want one (-f)", use[0], line, len(files))
				continue
			}
			inv, err := inventory.Load(filepath.Join("..", "..", files[0]))
			if err != nil {
				t.Errorf("%s example %q: load %s: %v", use[0], line, files[0], err)
				continue
			}
			nodes := ex.Flags().Args()
			if ex.Name() == "bootdev" {
				nodes = nodes[1:] // the device
			}
			for _, name := range nodes {
				if n, ok := inv.Node(name); !ok || n.Disabled {
					t.Errorf("%s example %q: no enabled node %s in %s", use[0], line, name, files[0])
				}
			}
			if ex.Name() == "iso" {
				t.Run("run "+line, func(t *testing.T) {
					testenv.RequireFiles(t, bootiso.DefaultSource)
					args := append([]string{}, args...)
					for i := range args[:len(args)-1] {
						switch args[i] {
						case "-f":
							args[i+1] = filepath.Join("..", "..", args[i+1])
						case "--dir":
							args[i+1] = t.TempDir()
						}
					}
					if code, out, errOut := runCLI(t, args...); code != exitOK {
						t.Errorf("iso example %q = %d\n%s%s", line, code, out, errOut)
					}
				})
			}
		}
	}
}
