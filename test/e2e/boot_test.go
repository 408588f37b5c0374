//go:build e2e

package e2e

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
	"github.com/slipway-dev/slipway/test/e2e/lab"
)

// bootTimeout bounds one boot from power-on to phone-home under TCG on a
// loaded 2-core machine (measured: 8-11 s BIOS, 12-16 s UEFI, 15-23 s UEFI
// through TFTP; two VMs at once on 2 cores about 12 s).
const bootTimeout = 150 * time.Second

// What the provisioner must observe, in this order, for one node's boot.
var (
	ipxeBoot = []bootevent.Kind{
		bootevent.DHCPDiscover, bootevent.DHCPOffer, bootevent.DHCPRequest, bootevent.DHCPAck,
		bootevent.ScriptServed, bootevent.KernelServed, bootevent.InitrdServed,
		bootevent.ConfigFetched, bootevent.PhoneHome,
	}
	// Firmware PXE first gets an address and the iPXE binary over TFTP;
	// iPXE then asks DHCP again and continues as above.
	firmwarePXEBoot = append([]bootevent.Kind{
		bootevent.DHCPDiscover, bootevent.DHCPOffer, bootevent.DHCPRequest, bootevent.DHCPAck,
		bootevent.TFTPServed,
	}, ipxeBoot...)
)

// TestBoot boots one VM per firmware path from Slipway's boot services
// (DHCP, TFTP, HTTP and router advertisements, configured from an inventory)
// and checks that it reaches the phone-home with the expected event
// sequence, from its inventory address.
func TestBoot(t *testing.T) {
	for _, tc := range []struct {
		fw   lab.Firmware
		node string
		mac  string
		ip   string
		want []bootevent.Kind
		tftp string // the file firmware PXE must fetch
	}{
		{fw: lab.FirmwareBIOS, node: "bios-1", mac: "52:54:00:77:00:10", ip: "10.77.0.10", want: ipxeBoot},
		{fw: lab.FirmwareUEFI, node: "uefi-1", mac: "52:54:00:77:00:11", ip: "10.77.0.11", want: ipxeBoot},
		{fw: lab.FirmwareUEFIPXE, node: "uefipxe-1", mac: "52:54:00:77:00:12", ip: "10.77.0.12", want: firmwarePXEBoot, tftp: "snponly.efi"},
	} {
		t.Run(string(tc.fw), func(t *testing.T) {
			l := requireLab(t)
			img := requireImage(t)
			s := startSlipway(t, l, img, true)
			vm := newVM(t, l, tc.node, tc.fw, tc.mac)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("boot events (seconds after power-on):\n%s", s.formatEvents("", vm.PoweredOnAt()))
				}
			})
			ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
			defer cancel()
			if err := vm.PowerOn(ctx); err != nil {
				t.Fatal(err)
			}
			ev, err := s.waitBooted(ctx, tc.node)
			if err != nil {
				t.Fatalf("%s (%s): %v", tc.node, tc.fw, err)
			}
			t.Logf("%s: power-on to phone-home %.2f s (%s)", tc.fw, ev.Time.Sub(vm.PoweredOnAt()).Seconds(), s.phases(tc.node, vm.PoweredOnAt()))
			if ev.IP.String() != tc.ip {
				t.Errorf("phone-home of %s came from %s, want its inventory address %s", tc.node, ev.IP, tc.ip)
			}
			if got := s.nodeEvents(tc.node); !subsequence(got, tc.want) {
				t.Errorf("events of %s = %v\nwant, in this order (others may come between): %v", tc.node, got, tc.want)
			}
			if tc.tftp != "" {
				i := slices.IndexFunc(s.Events(), func(e bootevent.Event) bool {
					return e.Kind == bootevent.TFTPServed && e.Node == tc.node && strings.HasSuffix(e.Path, tc.tftp)
				})
				if i < 0 {
					t.Errorf("no TFTP transfer of %s to %s", tc.tftp, tc.node)
				}
			}
			// The phone-home answer is "poweroff": the node image obeys it,
			// which proves the answer reached it.
			select {
			case <-vm.Exited():
			case <-ctx.Done():
				t.Errorf("%s did not power off after its phone-home answer", tc.node)
			}
		})
	}
}

// TestBootUnknownMAC boots a VM whose MAC is not in the inventory: Slipway
// must not answer it, so it never fetches anything.
func TestBootUnknownMAC(t *testing.T) {
	const mac = "52:54:00:77:00:99"
	l := requireLab(t)
	img := requireImage(t)
	s := startSlipway(t, l, img, true)
	vm := newVM(t, l, "unknown", lab.FirmwareBIOS, mac)
	hw, _ := net.ParseMAC(mac)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("boot events (seconds after power-on):\n%s", s.formatEvents("", vm.PoweredOnAt()))
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
	defer cancel()
	if err := vm.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	// The firmware does ask: the server sees it and records that it ignored it.
	if _, err := s.wait(ctx, "dhcp_ignored for "+mac, func(e bootevent.Event) bool {
		return e.Kind == bootevent.DHCPIgnored && e.MAC.String() == hw.String()
	}); err != nil {
		t.Fatal(err)
	}
	// iPXE retries DHCP for several seconds; give it that long to receive
	// anything it should not.
	select {
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	for _, e := range s.Events() {
		if e.Kind != bootevent.DHCPIgnored {
			t.Errorf("unknown MAC %s: got event %s (node %q, mac %s, ip %s), want none but dhcp_ignored", mac, e.Kind, e.Node, e.MAC, e.IP)
		}
	}
	if c := vm.Console(); strings.Contains(c, "slipway: booting") || strings.Contains(c, "INIT:") {
		t.Errorf("unknown MAC %s booted something; console:\n%s", mac, c)
	}
}

// TestBootParallel boots two VMs at once; each must reach its phone-home
// from its own inventory address.
func TestBootParallel(t *testing.T) {
	l := requireLab(t)
	img := requireImage(t)
	s := startSlipway(t, l, img, true)
	nodes := []struct{ node, mac, ip string }{
		{"par-1", "52:54:00:77:00:20", "10.77.0.20"},
		{"par-2", "52:54:00:77:00:21", "10.77.0.21"},
	}
	var vms []*lab.VM
	for _, n := range nodes {
		vms = append(vms, newVM(t, l, n.node, lab.FirmwareBIOS, n.mac))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("boot events (seconds after power-on):\n%s", s.formatEvents("", vms[0].PoweredOnAt()))
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
	defer cancel()
	for _, vm := range vms {
		if err := vm.PowerOn(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			ev, err := s.waitBooted(ctx, n.node)
			if err != nil {
				t.Errorf("%s: %v", n.node, err)
				return
			}
			t.Logf("%s: power-on to phone-home %.2f s (%s)", n.node, ev.Time.Sub(vms[i].PoweredOnAt()).Seconds(), s.phases(n.node, vms[i].PoweredOnAt()))
			if ev.IP.String() != n.ip {
				t.Errorf("phone-home of %s came from %s, want %s", n.node, ev.IP, n.ip)
			}
			if got := s.nodeEvents(n.node); !subsequence(got, ipxeBoot) {
				t.Errorf("events of %s = %v\nwant, in this order: %v", n.node, got, ipxeBoot)
			}
		})
	}
	wg.Wait()
}

// TestBootProxyDHCP runs Slipway in proxy mode next to the site's DHCP
// server (dnsmasq on another host of the lab network, handing out the
// addresses only): a BIOS VM takes its address from the site server and its
// boot information from Slipway, and reaches the phone-home.
func TestBootProxyDHCP(t *testing.T) {
	l := requireLab(t)
	img := requireImage(t)
	site, err := l.AddHost(t.Context(), "site-dhcp", netip.MustParsePrefix("10.77.0.2/24"))
	if err != nil {
		t.Fatal(err)
	}
	hw, _ := net.ParseMAC("52:54:00:77:00:10")
	if _, err := l.StartDnsmasq(t.Context(), lab.DnsmasqConfig{
		Hosts:         []lab.Reservation{{MAC: hw, IP: mustAddr("10.77.0.10")}},
		AddressesOnly: true,
		On:            site,
	}); err != nil {
		t.Fatal(err)
	}
	s := startSlipwayWith(t, l, img, labInventory{Interface: l.Bridge(), RouterAdvertisements: true, DHCPMode: "proxy"})
	vm := newVM(t, l, "bios-1", lab.FirmwareBIOS, hw.String())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("boot events (seconds after power-on):\n%s", s.formatEvents("", vm.PoweredOnAt()))
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
	defer cancel()
	if err := vm.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	ev, err := s.waitBooted(ctx, "bios-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("proxy mode: power-on to phone-home %.2f s (%s)", ev.Time.Sub(vm.PoweredOnAt()).Seconds(), s.phases("bios-1", vm.PoweredOnAt()))
	if ev.IP != mustAddr("10.77.0.10") {
		t.Errorf("phone-home from %s, want the address the site server reserved, 10.77.0.10", ev.IP)
	}
	// Slipway offers boot information (no address) and serves the chain.
	want := []bootevent.Kind{bootevent.DHCPDiscover, bootevent.DHCPOffer,
		bootevent.ScriptServed, bootevent.KernelServed, bootevent.InitrdServed, bootevent.ConfigFetched, bootevent.PhoneHome}
	if got := s.nodeEvents("bios-1"); !subsequence(got, want) {
		t.Errorf("events of bios-1 = %v\nwant, in this order: %v", got, want)
	}
}
