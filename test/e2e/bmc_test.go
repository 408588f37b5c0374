//go:build e2e

package e2e

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/test/e2e/lab"
)

// TestBMCBoot drives a lab VM the way the provisioner drives a server: set
// the next boot device to PXE and power on through its BMC (OpenIPMI's
// ipmi_sim through bmclib's ipmitool provider, and Slipway's Redfish
// simulator through bmclib's Redfish provider), then the VM boots from
// Slipway's boot services to the phone-home and powers itself off, which
// the BMC reports.
func TestBMCBoot(t *testing.T) {
	const password = "lab-password"
	t.Setenv("SLIPWAY_E2E_BMC_PASSWORD", password)
	ref := inventory.SecretRef{Source: "env", Name: "SLIPWAY_E2E_BMC_PASSWORD"}
	// The lab's BMC helpers (up_test.go) leave the credentials to the caller.
	withCreds := func(b inventory.BMC) inventory.BMC {
		b.Username, b.Password = "admin", ref
		return b
	}
	startIPMI := func(t *testing.T, l *lab.Lab, vm *lab.VM) inventory.BMC {
		testenv.RequireCommands(t, "ipmi_sim", "ipmitool")
		return withCreds(startIPMIBMC(t, l, vm, password))
	}
	startRedfish := func(t *testing.T, _ *lab.Lab, vm *lab.VM) inventory.BMC {
		b, _ := startRedfishBMC(t, vm, password)
		return withCreds(b)
	}
	for _, tc := range []struct {
		name  string
		start func(t *testing.T, l *lab.Lab, vm *lab.VM) inventory.BMC
		dev   bmc.BootDevice
	}{
		{"ipmi", startIPMI, bmc.BootPXE},
		{"redfish", startRedfish, bmc.BootPXE},
		// The negative: boot from disk, and the (diskless) VM must not netboot.
		{"ipmi-disk", startIPMI, bmc.BootDisk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := requireLab(t)
			img := requireImage(t)
			s := startSlipway(t, l, img, true)
			vm := newVM(t, l, "bios-1", lab.FirmwareBIOS, "52:54:00:77:00:10")
			// A server's default boot is its disk: only the BMC's override
			// makes it network-boot.
			vm.SetBootDevice(lab.BootDisk)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("boot events (seconds after power-on):\n%s", s.formatEvents("", vm.PoweredOnAt()))
				}
			})
			b := tc.start(t, l, vm)
			ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
			defer cancel()
			c, err := bmc.Dial(ctx, "bios-1", b, bmc.Config{Backoff: []time.Duration{200 * time.Millisecond}})
			if err != nil {
				t.Fatalf("bmc.Dial(%s): %v", b.URL, err)
			}
			defer c.Close(context.Background())
			start := time.Now()
			if err := c.SetBootDevice(ctx, tc.dev, bmc.BootOptions{Legacy: true}); err != nil {
				t.Fatalf("SetBootDevice(%s) via %s: %v", tc.dev, tc.name, err)
			}
			if err := c.SetPower(ctx, bmc.ActionOn); err != nil {
				t.Fatalf("SetPower(on) via %s: %v", tc.name, err)
			}
			if tc.dev == bmc.BootDisk {
				if err := vm.WaitConsole(ctx, "No bootable device"); err != nil {
					t.Fatal(err)
				}
				if got := s.nodeEvents("bios-1"); len(got) != 0 {
					t.Errorf("events of bios-1 after boot from disk = %v, want none", got)
				}
				return
			}
			ev, err := s.waitBooted(ctx, "bios-1")
			if err != nil {
				t.Fatalf("after power on via %s: %v", tc.name, err)
			}
			t.Logf("%s: BMC calls + boot to phone-home %.2f s", tc.name, ev.Time.Sub(start).Seconds())
			if want := netip.MustParseAddr("10.77.0.10"); ev.IP != want {
				t.Errorf("phone-home from %s, want %s", ev.IP, want)
			}
			if got := s.nodeEvents("bios-1"); !subsequence(got, ipxeBoot) {
				t.Errorf("events of bios-1 = %v\nwant, in this order: %v", got, ipxeBoot)
			}
			// The node powers itself off after its phone-home; the BMC sees it.
			select {
			case <-vm.Exited():
			case <-ctx.Done():
				t.Fatal("the VM did not power off after its phone-home")
			}
			if tc.name == "ipmi" { // the Redfish simulator keeps its own power state
				if st, err := c.PowerState(ctx); err != nil || st != bmc.PowerOff {
					t.Errorf("PowerState via %s after the node powered off = %v, %v; want off", tc.name, st, err)
				}
			}
		})
	}
}
