package dhcp

import (
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"

	goldenfile "github.com/slipway-dev/slipway/internal/golden"
)

var (
	macR2 = net.HardwareAddr{0x52, 0x54, 0x00, 0x78, 0x00, 0x10}
	macR3 = net.HardwareAddr{0x52, 0x54, 0x00, 0x79, 0x00, 0x10}
)

// routedConfig is testConfig plus two racks on routed subnets: r2 behind
// one relay (its gateway), r3 behind two leaf switches and reaching the
// provisioner on another of its addresses.
func routedConfig(mode inventory.DHCPMode) Config {
	cfg := testConfig(mode)
	cfg.Nodes = append(cfg.Nodes,
		inventory.Node{Name: "r2-node", Network: "r2", MAC: inventory.HardwareAddr(macR2), IP: netip.MustParseAddr("10.78.0.10")},
		inventory.Node{Name: "r3-node", Network: "r3", MAC: inventory.HardwareAddr(macR3), IP: netip.MustParseAddr("10.79.0.10")},
	)
	cfg.Routed = []inventory.ProvisioningNetwork{
		{Name: "r2", Subnet: netip.MustParsePrefix("10.78.0.0/24"), Gateway: netip.MustParseAddr("10.78.0.1"),
			DNSServers: []netip.Addr{netip.MustParseAddr("10.77.0.53")}, DomainName: "lab.example",
			Relays: []netip.Addr{netip.MustParseAddr("10.78.0.1")}, ProvisionerAddress: netip.MustParseAddr("10.77.0.1")},
		{Name: "r3", Subnet: netip.MustParsePrefix("10.79.0.0/23"), Gateway: netip.MustParseAddr("10.79.0.1"),
			DNSServers: []netip.Addr{netip.MustParseAddr("10.79.0.53")}, DomainName: "r3.lab.example",
			Relays:             []netip.Addr{netip.MustParseAddr("10.79.0.2"), netip.MustParseAddr("10.79.0.3")},
			ProvisionerAddress: netip.MustParseAddr("10.99.0.1")},
	}
	cfg.ScriptURL = func(n inventory.Node) string {
		host := "10.77.0.1"
		if n.Network == "r3" {
			host = "10.99.0.1"
		}
		return "http://" + host + ":8080/boot/" + n.Name + ".ipxe"
	}
	return cfg
}

func via(gi string) dhcpv4.Modifier { return dhcpv4.WithGatewayIP(net.ParseIP(gi)) }

// requestTo is a REQUEST that names serverID, as a client does after an
// offer from that address.
func requestTo(t testing.TB, serverID string, mac net.HardwareAddr, ip string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	d := request(t, mac, ip, mods...)
	d.UpdateOption(dhcpv4.OptServerIdentifier(net.ParseIP(serverID)))
	return d
}

// The routed exchanges, as goldens: what a relayed node is handed.
func TestHandleRoutedGolden(t *testing.T) {
	uefi := []dhcpv4.Modifier{withVendor("PXEClient:Arch:00007:UNDI:003010"), withArch(iana.EFI_X86_64)}
	tests := []struct {
		name string
		mode inventory.DHCPMode
		req  *dhcpv4.DHCPv4
	}{
		{name: "routed-uefi-discover", req: discover(t, macR3, append(uefi, via("10.79.0.3"))...)},
		{name: "routed-ipxe-request", req: requestTo(t, "10.99.0.1", macR3, "10.79.0.10", withIPXE(), via("10.79.0.2"))},
		{name: "routed-proxy-discover", mode: inventory.DHCPProxy, req: discover(t, macR3, append(uefi, via("10.79.0.2"))...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mode := tt.mode
			if mode == "" {
				mode = inventory.DHCPAuthoritative
			}
			s := newTestServer(t, routedConfig(mode))
			reply, to, ok := s.handle(tt.req.ToBytes(), netip.MustParseAddrPort("10.79.0.2:67"), false)
			goldenfile.Check(t, filepath.Join("testdata", tt.name+".golden"), []byte(render(reply, to, ok)))
		})
	}
}

// TestHandleRouted checks who is answered through which relay, and with
// which network's parameters.
func TestHandleRouted(t *testing.T) {
	uefi := []dhcpv4.Modifier{withVendor("PXEClient:Arch:00007:UNDI:003010"), withArch(iana.EFI_X86_64)}
	type result struct {
		To, YourIP, Mask, Router, ServerID, NextServer, DNS, Domain, File string
	}
	tests := []struct {
		name       string
		req        *dhcpv4.DHCPv4
		proxyPort  bool
		want       *result
		wantRefuse string // Detail of the dhcp_ignored event
	}{
		{name: "r2 node through its gateway relay", req: discover(t, macR2, append(uefi, via("10.78.0.1"))...),
			want: &result{To: "10.78.0.1:67", YourIP: "10.78.0.10", Mask: "ffffff00", Router: "10.78.0.1", ServerID: "10.77.0.1", NextServer: "10.77.0.1", DNS: "10.77.0.53", Domain: "lab.example", File: "snponly.efi"}},
		{name: "r3 node through its second leaf", req: discover(t, macR3, append(uefi, via("10.79.0.3"))...),
			want: &result{To: "10.79.0.3:67", YourIP: "10.79.0.10", Mask: "fffffe00", Router: "10.79.0.1", ServerID: "10.99.0.1", NextServer: "10.99.0.1", DNS: "10.79.0.53", Domain: "r3.lab.example", File: "snponly.efi"}},
		{name: "r3 ipxe gets its script on r3's provisioner address", req: requestTo(t, "10.99.0.1", macR3, "10.79.0.10", withIPXE(), via("10.79.0.2")),
			want: &result{To: "10.79.0.2:67", YourIP: "10.79.0.10", Mask: "fffffe00", Router: "10.79.0.1", ServerID: "10.99.0.1", NextServer: "10.99.0.1", DNS: "10.79.0.53", Domain: "r3.lab.example", File: "http://10.99.0.1:8080/boot/r3-node.ipxe"}},
		{name: "r3 request naming the local server id is another server's", req: request(t, macR3, "10.79.0.10", withIPXE(), via("10.79.0.2")), want: nil},
		{name: "local node directly still answered", req: discover(t, macUEFI, uefi...),
			want: &result{To: "255.255.255.255:68", YourIP: "10.77.0.11", Mask: "ffffff00", Router: "10.77.0.1", ServerID: "10.77.0.1", NextServer: "10.77.0.1", DNS: "10.77.0.53", Domain: "lab.example", File: "snponly.efi"}},
		{name: "unlisted relay", req: discover(t, macR2, append(uefi, via("10.78.0.7"))...), wantRefuse: "relay 10.78.0.7 is not listed in any network's relays"},
		{name: "relay of another network", req: discover(t, macR2, append(uefi, via("10.79.0.2"))...), wantRefuse: "node r2-node is on network r2, but its request came through relay 10.79.0.2 of network r3"},
		{name: "local node through a routed relay", req: discover(t, macUEFI, append(uefi, via("10.79.0.2"))...), wantRefuse: "node node-uefi is on network (the provisioner's own), but its request came through relay 10.79.0.2 of network r3"},
		{name: "routed node directly", req: discover(t, macR2, uefi...), wantRefuse: "node r2-node is on routed network r2: its requests must come through one of its relays, this one came directly"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := bootevent.NewBus()
			events, cancel := bus.Subscribe(0)
			defer cancel()
			cfg := routedConfig(inventory.DHCPAuthoritative)
			cfg.Events = bus
			s := newTestServer(t, cfg)
			b, to, ok := s.handle(tt.req.ToBytes(), netip.MustParseAddrPort("10.77.0.200:67"), tt.proxyPort)
			var got *result
			if ok {
				d, err := dhcpv4.FromBytes(b)
				if err != nil {
					t.Fatalf("reply does not parse: %v", err)
				}
				file := d.BootFileName
				if o := d.Options.Get(dhcpv4.OptionBootfileName); o != nil {
					file = string(o)
				}
				var dns []string
				for _, a := range d.DNS() {
					dns = append(dns, a.String())
				}
				got = &result{To: to.String(), YourIP: d.YourIPAddr.String(), Mask: d.SubnetMask().String(), Router: joinIPs(d.Router()),
					ServerID: d.ServerIdentifier().String(), NextServer: d.ServerIPAddr.String(), DNS: strings.Join(dns, ","), Domain: d.DomainName(), File: file}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("handle(%s) (-want +got):\n%s", tt.name, diff)
			}
			if tt.wantRefuse == "" {
				return
			}
			select {
			case e := <-events:
				if e.Kind != bootevent.DHCPIgnored || e.Detail != tt.wantRefuse {
					t.Errorf("handle(%s): event %s %q, want dhcp_ignored %q", tt.name, e.Kind, e.Detail, tt.wantRefuse)
				}
			case <-time.After(time.Second):
				t.Errorf("handle(%s): no event, want dhcp_ignored %q", tt.name, tt.wantRefuse)
			}
		})
	}
}

func joinIPs(ips []net.IP) string {
	var s []string
	for _, ip := range ips {
		s = append(s, ip.String())
	}
	return strings.Join(s, ",")
}

func TestNewRejectsBadRoutedConfig(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"node outside its routed subnet", func(c *Config) { c.Nodes[3].IP = netip.MustParseAddr("10.77.0.99") }, "r2-node: ip 10.77.0.99 is outside subnet 10.78.0.0/24"},
		{"relay shared by two networks", func(c *Config) { c.Routed[1].Relays = append(c.Routed[1].Relays, c.Routed[0].Relays[0]) }, "relay 10.78.0.1 is also a relay of network r2"},
		{"no relays", func(c *Config) { c.Routed[0].Relays = nil }, "r2: no relays"},
		{"defined twice", func(c *Config) { c.Routed[1].Name = "r2" }, "r2: defined twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := routedConfig(inventory.DHCPAuthoritative)
			tt.change(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%s) error = %v, want it to contain %q", tt.name, err, tt.want)
			}
		})
	}
}
