//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/bmc/redfishsim"
	"github.com/slipway-dev/slipway/pkg/bootiso"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
	"github.com/slipway-dev/slipway/test/e2e/lab"
)

// TestBMCBoot drives a lab VM the way the provisioner drives a server: set
// the next boot device to PXE and power on through its BMC (OpenIPMI's
// ipmi_sim through bmclib's ipmitool provider, and Slipway's Redfish
// simulator through gofish's typed objects), then the VM boots from
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
			// Both BMCs read the host's power (the Redfish simulator
			// follows the VM's exit, as a real BMC does).
			if st, err := c.PowerState(ctx); err != nil || st != bmc.PowerOff {
				t.Errorf("PowerState via %s after the node powered off = %v, %v; want off", tc.name, st, err)
			}
		})
	}
}

// TestVirtualMediaBoot boots a lab VM from its BMC's virtual CD, the way a
// site without PXE on the node's segment does: Slipway builds the node's
// iPXE CD (pkg/bootiso), the Redfish simulator's InsertMedia fetches it
// from its URL as a real BMC does, a one-time Cd override and power on
// start QEMU from that CD, and iPXE on the CD configures the node's address
// statically and chains to the node's script on Slipway's boot server:
// no DHCP happens before the script is served.
func TestVirtualMediaBoot(t *testing.T) {
	const password = "lab-password"
	t.Setenv("SLIPWAY_E2E_BMC_PASSWORD", password)
	l := requireLab(t)
	img := requireImage(t)
	s := startSlipway(t, l, img, true)
	vm := newVM(t, l, "bios-1", lab.FirmwareBIOS, "52:54:00:77:00:10")
	vm.SetBootDevice(lab.BootDisk) // without the CD it would not boot at all
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("boot events (seconds after power-on):\n%s", s.formatEvents("", vm.PoweredOnAt()))
			t.Logf("console:\n%s", vm.Console())
		}
	})
	node, ok := s.inv.Node("bios-1")
	if !ok {
		t.Fatal("no node bios-1 in the lab inventory")
	}
	var iso bytes.Buffer
	err := bootiso.Build(&iso, bootiso.Config{}, bootiso.Node{
		Name: node.Name, MAC: net.HardwareAddr(node.MAC),
		Address:   netip.PrefixFrom(node.IP, s.inv.Network.Subnet.Bits()),
		ScriptURL: fmt.Sprintf("http://%s:%d/boot/%s.ipxe", s.inv.Network.Address, s.inv.Network.HTTPPort, node.Name),
	})
	if err != nil {
		t.Fatalf("bootiso.Build: %v", err)
	}
	// The image server: loopback of the lab's namespace, bound before use.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	isoSrv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "bios-1.iso", time.Time{}, bytes.NewReader(iso.Bytes()))
	})}
	go isoSrv.Serve(ln)
	t.Cleanup(func() { isoSrv.Close() })
	isoURL := "http://" + ln.Addr().String() + "/iso/bios-1.iso"

	sb, b := startVirtualMediaBMC(t, vm, password)
	b = withCredentials(b, "SLIPWAY_E2E_BMC_PASSWORD")

	ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
	defer cancel()
	c, err := bmc.Dial(ctx, "bios-1", b, bmc.Config{Backoff: []time.Duration{200 * time.Millisecond}})
	if err != nil {
		t.Fatalf("bmc.Dial: %v", err)
	}
	defer c.Close(context.Background())
	start := time.Now()
	m, err := c.InsertMedia(ctx, isoURL)
	if err != nil || !m.Inserted || m.Image != isoURL {
		t.Fatalf("InsertMedia(%s) = %v, %v; want it inserted", isoURL, m, err)
	}
	got, err := c.SetBoot(ctx, bmc.BootCD, bmc.BootOptions{Legacy: true})
	if err != nil || got.String() != "cd once legacy" {
		t.Fatalf("SetBoot(cd, legacy) = %v, %v; want cd once legacy read back", got, err)
	}
	if err := c.SetPower(ctx, bmc.ActionOn); err != nil {
		t.Fatalf("SetPower(on): %v", err)
	}
	ev, err := s.waitBooted(ctx, "bios-1")
	if err != nil {
		t.Fatalf("after power on from the virtual cd: %v", err)
	}
	t.Logf("virtual media: BMC calls + boot from cd to phone-home %.2f s", ev.Time.Sub(start).Seconds())
	events := s.nodeEvents("bios-1")
	want := []bootevent.Kind{bootevent.ScriptServed, bootevent.KernelServed, bootevent.InitrdServed, bootevent.PhoneHome}
	if len(events) == 0 || events[0] != bootevent.ScriptServed || !subsequence(events, want) {
		t.Errorf("events of bios-1 = %v\nwant the script served first (no DHCP before it: iPXE on the cd set the address), then %v", events, want)
	}
	if diff := cmp.Diff([]redfishsim.Booted{{Device: "Cd", Mode: "Legacy", Media: isoURL}}, sb.Booted()); diff != "" {
		t.Errorf("what the host booted (-want +got):\n%s", diff)
	}
	if !strings.Contains(vm.Console(), "Slipway virtual-media boot: node bios-1") {
		t.Errorf("the console does not show the cd's iPXE script:\n%s", vm.Console())
	}
	if m, err := c.EjectMedia(ctx); err != nil || m.Inserted {
		t.Errorf("EjectMedia = %v, %v; want empty", m, err)
	}
}

// withCredentials sets the lab BMC user and a password reference to env.
func withCredentials(b inventory.BMC, env string) inventory.BMC {
	b.Username, b.Password = "admin", inventory.SecretRef{Source: "env", Name: env}
	return b
}

// download copies url to path.
func download(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetch virtual media %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch virtual media %s: HTTP %d", url, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startVirtualMediaBMC runs a Redfish simulator (BIOS in legacy mode) whose
// power drives vm: a boot with a one-time Cd override and an image in the
// virtual CD starts QEMU from the image the BMC fetched; any other boot
// starts it as PowerOn does. It returns the simulator and its address as
// an inventory BMC (without credentials).
func startVirtualMediaBMC(t *testing.T, vm *lab.VM, password string) (*redfishsim.BMC, inventory.BMC) {
	t.Helper()
	cdPath := filepath.Join(t.TempDir(), "virtual-cd.iso")
	sim, err := redfishsim.New(redfishsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	var self atomic.Pointer[redfishsim.BMC]
	sb, err := sim.Start(redfishsim.BMCConfig{
		Name: vm.Name(), Username: "admin", Password: password, FirmwareMode: "Legacy",
		OnPower: func(ctx context.Context, ev redfishsim.PowerEvent) error {
			if ev.Action == lab.PowerOff {
				vm.PowerOff()
				return nil
			}
			if ev.Action == lab.PowerReset {
				vm.PowerOff()
			}
			var err error
			if ev.Boot.Target == "Cd" && ev.Boot.Enabled != "Disabled" && ev.Media != "" {
				// The virtual CD's content is what the BMC fetched.
				if err := download(ctx, ev.Media, cdPath); err != nil {
					return err
				}
				err = vm.PowerOnFromCD(ctx, cdPath)
			} else {
				err = vm.PowerOn(ctx)
			}
			if err == nil {
				followPowerOff(&self, vm)
			}
			return err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	self.Store(sb)
	return sb, inventory.BMC{URL: sb.URL(), Protocol: inventory.ProtocolRedfish, Scheme: "http", Host: "127.0.0.1", Port: sb.Addr().Port()}
}

// TestUpVirtualMedia runs up on a node whose boot.method is virtual-media:
// up serves the node's CD, the BMC inserts it, a one-time CD boot and a
// power on start the VM from it, iPXE on the CD reaches the node's script
// with no DHCP, and the node goes through the same phases to Ready.
func TestUpVirtualMedia(t *testing.T) {
	const password = "lab-password"
	t.Setenv("SLIPWAY_E2E_BMC_PASSWORD", password)
	l := requireLab(t)
	img := requireImage(t)
	invPath := writeInventory(t, l, labInventory{Interface: l.Bridge(), RouterAdvertisements: true})
	inv, err := inventory.Load(invPath)
	if err != nil {
		t.Fatalf("inventory.Load(%s): %v", invPath, err)
	}
	vm := newVM(t, l, "bios-1", lab.FirmwareBIOS, "52:54:00:77:00:10")
	vm.SetBootDevice(lab.BootDisk)
	sb, b := startVirtualMediaBMC(t, vm, password)
	onlySimulated(inv, map[string]inventory.BMC{vm.Name(): b})
	for i := range inv.Nodes {
		if inv.Nodes[i].Name == vm.Name() {
			inv.Nodes[i].Boot.Method = inventory.BootMethodVirtualMedia
		}
	}
	rec := newUpRecorder()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("up's progress:\n%s", rec.progressText())
			t.Logf("boot events:\n%s", rec.formatEvents(rec.start))
			t.Logf("console:\n%s", vm.Console())
		}
	})
	rep, err := runUpInLab(t, inv, img, filepath.Join(t.TempDir(), "state"), rec, nil)
	t.Logf("up with virtual media:\n%s", summary(rep))
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	if diff := cmp.Diff(map[string]provision.Phase{vm.Name(): provision.PhaseReady}, endPhases(rep)); diff != "" {
		t.Errorf("end phases (-want +got):\n%s", diff)
	}
	booted := sb.Booted()
	if len(booted) != 1 || booted[0].Device != "Cd" || booted[0].Mode != "Legacy" || !strings.HasSuffix(booted[0].Media, "/iso/bios-1.iso") {
		t.Errorf("what the host booted = %+v, want one legacy boot from bios-1.iso", booted)
	}
	events := rec.nodeEvents(vm.Name())
	if len(events) == 0 || events[0] != bootevent.ScriptServed {
		t.Errorf("events of %s = %v, want the script served first (no DHCP before it)", vm.Name(), events)
	}
	if st := sb.Stats(); sb.Sessions() != 0 || st.Logins != st.Logouts {
		t.Errorf("sessions after up: %d open, %d logins, %d logouts", sb.Sessions(), st.Logins, st.Logouts)
	}
}
