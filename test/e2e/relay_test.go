//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/pxe"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
	"github.com/slipway-dev/slipway/test/e2e/lab"
)

// relayInventory is a site with the provisioner on 10.77.0.0/24 and a rack
// on the routed subnet 10.78.0.0/24 behind a leaf router that relays DHCP
// (relays default to the gateway, 10.78.0.1, which is the relay's giaddr).
// misplaced-1 sits on the rack's segment but the inventory puts it on the
// provisioner's own network: its request arrives through the wrong relay.
const relayInventory = `apiVersion: slipway.dev/v1alpha1
kind: Inventory
cluster:
  name: e2e-relay
  kubernetesVersion: v1.37.2
network:
  provisioner:
    interface: %s
    address: 10.77.0.1
    httpPort: 8080
  subnet: 10.77.0.0/24
  dhcp: {leaseTime: 10m}
  routerAdvertisements: false
networks:
  - name: rack-b
    subnet: 10.78.0.0/24
    gateway: 10.78.0.1
    dnsServers: [10.77.0.1]
profiles:
  lab:
    role: worker
    boot:
      firmware: bios
      kernel: vmlinuz
      initrd: initrd.gz
      kernelArgs: console=ttyS0 quiet panic=1
    bmc: {username: admin, password: env:SLIPWAY_E2E_BMC_PASSWORD}
nodes:
  - name: relay-bios
    profile: lab
    role: control-plane
    rack: b01
    mac: 52:54:00:78:00:10
    ip: 10.78.0.10
    bmc: {url: "redfish+http://127.0.0.1:18110"}
  - name: relay-uefipxe
    profile: lab
    rack: b01
    boot: {firmware: uefi}
    mac: 52:54:00:78:00:11
    ip: 10.78.0.11
    bmc: {url: "redfish+http://127.0.0.1:18111"}
  - name: misplaced-1
    profile: lab
    mac: 52:54:00:78:00:30
    ip: 10.77.0.30
    bmc: {url: "redfish+http://127.0.0.1:18130"}
`

// TestBootThroughRelay boots VMs on a routed rack segment: between them
// and Slipway's boot services is a router running Debian's ISC DHCP relay
// (dhcrelay) in a namespace of its own, on another subnet. Slipway must
// answer the relayed requests with the rack network's address, mask and
// gateway, unicast to the relay; the VM then fetches its script, kernel,
// initrd and config through the router and phones home from its own
// address. A node the inventory places on another network gets nothing.
func TestBootThroughRelay(t *testing.T) {
	testenv.RequireCommands(t, "dhcrelay")
	l := requireLab(t)
	img := requireImage(t)
	relay, err := l.StartRelay(t.Context(), lab.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	seg := relay.Segment()
	// The leaf router's IPv6 router advertisements, without which iPXE
	// waits ~16 s for autoconfiguration (Slipway's own reach only its
	// segment).
	if _, err := seg.StartRouterAdvertisements(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dhcrelay log:\n%s", relay.Log())
		}
	})
	s := startRelaySlipway(t, l, img)
	if got := s.inv.NetworkOf(mustNode(t, s.inv, "relay-bios")); got.Name != "rack-b" || !slices.Equal(got.Relays, []netip.Addr{relay.Addr()}) {
		t.Fatalf("relay-bios is on network %s with relays %v, want rack-b behind %s", got.Name, got.Relays, relay.Addr())
	}

	for _, tc := range []struct {
		fw        lab.Firmware
		node, mac string
		ip        string
		want      []bootevent.Kind
		tftp      string
	}{
		{fw: lab.FirmwareBIOS, node: "relay-bios", mac: "52:54:00:78:00:10", ip: "10.78.0.10", want: ipxeBoot},
		// Firmware PXE fetches the iPXE binary over TFTP from the next-server
		// through the router (the PXE-E18 of tinkerbell/tinkerbell#728).
		{fw: lab.FirmwareUEFIPXE, node: "relay-uefipxe", mac: "52:54:00:78:00:11", ip: "10.78.0.11", want: firmwarePXEBoot, tftp: "snponly.efi"},
	} {
		t.Run(string(tc.fw), func(t *testing.T) {
			vm := newVM(t, seg, tc.node, tc.fw, tc.mac)
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
				t.Fatalf("%s (%s) through the relay: %v", tc.node, tc.fw, err)
			}
			t.Logf("%s through the relay: power-on to phone-home %.2f s (%s)", tc.fw, ev.Time.Sub(vm.PoweredOnAt()).Seconds(), s.phases(tc.node, vm.PoweredOnAt()))
			if ev.IP.String() != tc.ip {
				t.Errorf("phone-home of %s came from %s, want its inventory address %s on the routed subnet", tc.node, ev.IP, tc.ip)
			}
			if got := s.nodeEvents(tc.node); !subsequence(got, tc.want) {
				t.Errorf("events of %s = %v\nwant, in this order (others may come between): %v", tc.node, got, tc.want)
			}
			for _, e := range s.Events() {
				if e.Node == tc.node && e.Kind == bootevent.DHCPOffer && e.IP.String() != tc.ip {
					t.Errorf("%s was offered %s, want %s", tc.node, e.IP, tc.ip)
				}
			}
			if tc.tftp != "" && !slices.ContainsFunc(s.Events(), func(e bootevent.Event) bool {
				return e.Kind == bootevent.TFTPServed && e.Node == tc.node && strings.HasSuffix(e.Path, tc.tftp)
			}) {
				t.Errorf("no TFTP transfer of %s to %s", tc.tftp, tc.node)
			}
			// The lease came through the relay: dhcrelay logged forwarding
			// this MAC's requests and Slipway's replies.
			if log := relay.Log(); !strings.Contains(log, "BOOTREQUEST for "+tc.mac) || !strings.Contains(log, "BOOTREPLY for "+tc.mac) {
				t.Errorf("dhcrelay's log shows no BOOTREQUEST and BOOTREPLY for %s:\n%s", tc.mac, tail(log, 20))
			}
			// The console shows the lease Linux took: the rack's gateway.
			if c := vm.Console(); !strings.Contains(c, "10.78.0.1") {
				t.Logf("console of %s does not show the gateway 10.78.0.1 (informational):\n%s", tc.node, tail(c, 30))
			}
			select {
			case <-vm.Exited():
			case <-ctx.Done():
				t.Errorf("%s did not power off after its phone-home answer", tc.node)
			}
		})
	}

	t.Run("wrong network", func(t *testing.T) {
		vm := newVM(t, seg, "misplaced-1", lab.FirmwareBIOS, "52:54:00:78:00:30")
		ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
		defer cancel()
		if err := vm.PowerOn(ctx); err != nil {
			t.Fatal(err)
		}
		ev, err := s.wait(ctx, "dhcp_ignored for misplaced-1", func(e bootevent.Event) bool {
			return e.Kind == bootevent.DHCPIgnored && e.Node == "misplaced-1"
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := "came through relay 10.78.0.1 of network rack-b"; !strings.Contains(ev.Detail, want) {
			t.Errorf("dhcp_ignored for misplaced-1 says %q, want it to contain %q", ev.Detail, want)
		}
		// iPXE retries for several seconds; nothing may be offered meanwhile.
		select {
		case <-time.After(8 * time.Second):
		case <-ctx.Done():
		}
		for _, k := range s.nodeEvents("misplaced-1") {
			if k != bootevent.DHCPIgnored {
				t.Errorf("misplaced-1 (inventory network local, booting on rack-b): got event %s, want only dhcp_ignored", k)
			}
		}
	})
}

func mustNode(t *testing.T, inv *inventory.Inventory, name string) inventory.Node {
	t.Helper()
	n, ok := inv.Node(name)
	if !ok {
		t.Fatalf("no node %s in the inventory", name)
	}
	return n
}

// startRelaySlipway loads relayInventory from a file, as serve -f does, and
// runs the boot services on the lab bridge until the test ends.
func startRelaySlipway(t *testing.T, l *lab.Lab, img lab.NodeImage) *slipway {
	t.Helper()
	path := filepath.Join(l.Dir(), "relay-inventory.yaml")
	if err := os.WriteFile(path, fmt.Appendf(nil, relayInventory, l.Bridge()), 0o600); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Load(path)
	if err != nil {
		t.Fatalf("inventory.Load(%s):\n%v", path, err)
	}
	bus := bootevent.NewBus()
	s := &slipway{inv: inv, notify: make(chan struct{})}
	events, unsubscribe := bus.Subscribe(4096)
	go func() {
		for e := range events {
			s.mu.Lock()
			s.events = append(s.events, e)
			close(s.notify)
			s.notify = make(chan struct{})
			s.mu.Unlock()
		}
	}()
	s.svc, err = pxe.New(pxe.Config{
		Inventory:  inv,
		TFTPRoot:   ipxeDir,
		AssetDir:   img.Dir,
		Bus:        bus,
		NextAction: func(inventory.Node) string { return "poweroff" },
		Log:        testLogger(t),
	})
	if err != nil {
		t.Fatalf("pxe.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.svc.Run(ctx) }()
	s.stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("boot services Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("boot services did not stop within 15 s of cancel")
		}
		unsubscribe()
	})
	t.Cleanup(s.stop)
	select {
	case <-s.svc.Ready():
	case err := <-done:
		t.Fatalf("boot services stopped at start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("boot services not ready within 10 s")
	}
	return s
}
