package assemble

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/bmc/redfishsim"
	"github.com/slipway-dev/slipway/pkg/bootiso"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

// TestUpBMCSteps runs the orchestrator's BMC steps (power off, one-time
// boot, power on) as up runs them, on a PXE node behind an iLO-like BMC
// (late boot override) and on a virtual-media node: the CD server hands the
// BMC the node's CD, which the host then boots. A power on of a node that
// is already on is no boot, and a UEFI virtual-media node is refused.
func TestUpBMCSteps(t *testing.T) {
	testenv.RequireFiles(t, bootiso.DefaultSource)
	t.Setenv("SLIPWAY_TEST_BMC_PW", "pw")
	sim, err := redfishsim.New(redfishsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	start := func(name, profile string) *redfishsim.BMC {
		p, _ := redfishsim.LookupProfile(profile)
		cfg := p.Config
		cfg.Name, cfg.Password, cfg.PoweredOn = name, "pw", true
		if cfg.BootApplyDelay > 0 {
			cfg.BootApplyDelay, cfg.TransitionDelay = 300*time.Millisecond, 100*time.Millisecond
		}
		b, err := sim.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pxeBMC, vmBMC := start("pxe-1", "ilo5"), start("vm-1", "generic")
	y := fmt.Sprintf(`apiVersion: slipway.dev/v1alpha1
kind: Inventory
cluster: {name: t, kubernetesVersion: v1.37.2}
network:
  provisioner: {interface: lo, address: 127.0.0.1}
  subnet: 127.0.0.0/8
profiles:
  p:
    boot: {firmware: bios, kernel: vmlinuz, initrd: initrd.gz}
    bmc: {username: admin, password: "env:SLIPWAY_TEST_BMC_PW"}
nodes:
  - {name: pxe-1, profile: p, role: control-plane, mac: "52:54:00:00:00:01", ip: 127.0.0.11, bmc: {url: "%s"}}
  - {name: vm-1, profile: p, role: worker, mac: "52:54:00:00:00:02", ip: 127.0.0.12, boot: {method: virtual-media}, bmc: {url: "%s"}}
`, pxeBMC.URL(), vmBMC.URL())
	path := filepath.Join(t.TempDir(), "inv.yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	media, err := newMediaServer(inv, Media{Listener: ln}, nil)
	if err != nil || media == nil {
		t.Fatalf("newMediaServer = %v, %v", media, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- media.run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("cd server: %v", err)
		}
	}()
	opener := NewBMCOpener(bmc.Config{VerifyTimeout: 5 * time.Second, Backoff: []time.Duration{50 * time.Millisecond}})
	opener.media = media
	defer opener.CloseAll()

	steps := func(name string) error {
		n, _ := inv.Node(name)
		b, err := opener.OpenBMC(ctx, n)
		if err != nil {
			return err
		}
		if err := b.PowerOff(ctx); err != nil {
			return err
		}
		if err := b.SetNetboot(ctx); err != nil {
			return err
		}
		return b.PowerOn(ctx)
	}
	for _, name := range []string{"pxe-1", "vm-1"} {
		if err := steps(name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if diff := cmp.Diff([]redfishsim.Booted{{Device: "Pxe", Mode: "Legacy"}}, pxeBMC.Booted()); diff != "" {
		t.Errorf("pxe-1 booted (-want +got):\n%s", diff)
	}
	url := media.url("vm-1")
	if diff := cmp.Diff([]redfishsim.Booted{{Device: "Cd", Mode: "Legacy", Media: url}}, vmBMC.Booted()); diff != "" {
		t.Errorf("vm-1 booted (-want +got):\n%s", diff)
	}
	iso, err := media.h.Image("vm-1")
	if err != nil {
		t.Fatal(err)
	}
	if got := vmBMC.Media().Size; got != int64(len(iso)) {
		t.Errorf("the BMC fetched %d bytes from %s, want the node's cd (%d bytes)", got, url, len(iso))
	}

	// Someone powers the node on between off and on: not a boot.
	n, _ := inv.Node("pxe-1")
	b, err := opener.OpenBMC(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	pxeBMC.SetPowerState(true)
	if err := b.PowerOn(ctx); err == nil || !strings.Contains(err.Error(), "the node was already on, so it did not boot") {
		t.Errorf("PowerOn of a node already on = %v, want an error", err)
	}

	// The inventory refuses a UEFI virtual-media node; one built by hand
	// is still refused here, before its BMC is touched.
	n, _ = inv.Node("vm-1")
	n.Name, n.Boot.Firmware = "vm-2", inventory.FirmwareUEFI
	if _, err := opener.OpenBMC(ctx, n); !errors.Is(err, bootiso.ErrUEFI) {
		t.Errorf("OpenBMC(UEFI virtual-media node) = %v, want ErrUEFI", err)
	}
}
