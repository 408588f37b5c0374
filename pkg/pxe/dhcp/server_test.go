package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"

	goldenfile "github.com/slipway-dev/slipway/internal/golden"

	"github.com/slipway-dev/slipway/internal/servetest"
)

var (
	macBIOS    = net.HardwareAddr{0x52, 0x54, 0x00, 0x77, 0x00, 0x10}
	macUEFI    = net.HardwareAddr{0x52, 0x54, 0x00, 0x77, 0x00, 0x11}
	macOff     = net.HardwareAddr{0x52, 0x54, 0x00, 0x77, 0x00, 0x12}
	macUnknown = net.HardwareAddr{0x52, 0x54, 0x00, 0x77, 0x00, 0x99}
)

func testNodes() []inventory.Node {
	return []inventory.Node{
		{Name: "node-bios", MAC: inventory.HardwareAddr(macBIOS), IP: netip.MustParseAddr("10.77.0.10"), Boot: inventory.Boot{Firmware: inventory.FirmwareBIOS}},
		{Name: "node-uefi", MAC: inventory.HardwareAddr(macUEFI), IP: netip.MustParseAddr("10.77.0.11")},
		{Name: "node-off", MAC: inventory.HardwareAddr(macOff), IP: netip.MustParseAddr("10.77.0.12"), Disabled: true},
	}
}

func testConfig(mode inventory.DHCPMode) Config {
	return Config{
		ServerIP:    netip.MustParseAddr("10.77.0.1"),
		Mode:        mode,
		Nodes:       testNodes(),
		Subnet:      netip.MustParsePrefix("10.77.0.0/24"),
		Router:      netip.MustParseAddr("10.77.0.1"),
		DNS:         []netip.Addr{netip.MustParseAddr("10.77.0.53")},
		DomainName:  "lab.example",
		LeaseTime:   time.Hour,
		ScriptURL:   func(n inventory.Node) string { return "http://10.77.0.1:8080/boot/" + n.Name + ".ipxe" },
		FirmwareURL: func(_ inventory.Node, f string) string { return "http://10.77.0.1:8080/ipxe/" + f },
	}
}

func newTestServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// Request builders for the clients seen in the lab (e2e-lab.md).
func withVendor(vc string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vc))
}
func withArch(a iana.Arch) dhcpv4.Modifier { return dhcpv4.WithOption(dhcpv4.OptClientArch(a)) }
func withIPXE() dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), []byte{0xb1, 0x05, 0x01, 0x80, 0x86, 0x10, 0x0e}))
		d.UpdateOption(dhcpv4.OptUserClass("iPXE"))
	}
}

func discover(t testing.TB, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	mods = append([]dhcpv4.Modifier{dhcpv4.WithTransactionID(dhcpv4.TransactionID{1, 2, 3, 4})}, mods...)
	d, err := dhcpv4.NewDiscovery(mac, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func request(t testing.TB, mac net.HardwareAddr, ip string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	d := discover(t, mac, mods...)
	d.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRequest))
	d.UpdateOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.77.0.1")))
	if ip != "" {
		d.UpdateOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip)))
	}
	return d
}

// render is the golden form of one exchange: where the reply goes and what
// it says.
func render(reply []byte, to netip.AddrPort, ok bool) string {
	if !ok {
		return "no reply\n"
	}
	return "to " + to.String() + "\n" + Describe(reply) + "\n"
}

func TestHandleGolden(t *testing.T) {
	peer := netip.MustParseAddrPort("0.0.0.0:68")
	bios := []dhcpv4.Modifier{withVendor("PXEClient:Arch:00000:UNDI:002001"), withArch(iana.INTEL_X86PC)}
	uefi := []dhcpv4.Modifier{withVendor("PXEClient:Arch:00007:UNDI:003010"), withArch(iana.EFI_X86_64)}
	tests := []struct {
		name      string
		mode      inventory.DHCPMode
		req       *dhcpv4.DHCPv4
		peer      netip.AddrPort
		proxyPort bool
	}{
		{name: "auth-bios-discover", req: discover(t, macBIOS, bios...)},
		{name: "auth-bios-request", req: request(t, macBIOS, "10.77.0.10", bios...)},
		{name: "auth-uefi-discover", req: discover(t, macUEFI, uefi...)},
		{name: "auth-uefi-arm64-discover", req: discover(t, macUEFI, withVendor("PXEClient:Arch:00011:UNDI:003000"), withArch(iana.EFI_ARM64))},
		{name: "auth-uefi-http-discover", req: discover(t, macUEFI, withVendor("HTTPClient:Arch:00016:UNDI:003001"), withArch(iana.EFI_X86_64_HTTP))},
		{name: "auth-ipxe-discover", req: discover(t, macBIOS, append(bios, withIPXE())...)},
		{name: "auth-ipxe-request", req: request(t, macBIOS, "10.77.0.10", append(bios, withIPXE())...)},
		{name: "auth-linux-request", req: request(t, macBIOS, "10.77.0.10")},
		{name: "auth-wrong-ip-nak", req: request(t, macBIOS, "10.77.0.99", bios...)},
		{name: "auth-other-server", req: request(t, macBIOS, "10.77.0.10", dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.77.0.254"))))},
		{name: "auth-relay-discover", req: discover(t, macUEFI, append(uefi, dhcpv4.WithGatewayIP(net.ParseIP("10.77.0.254")))...)},
		{name: "auth-relay-unlisted", req: discover(t, macUEFI, append(uefi, dhcpv4.WithGatewayIP(net.ParseIP("10.77.5.1")))...)},
		{name: "auth-renew-unicast", req: request(t, macBIOS, "", dhcpv4.WithClientIP(net.ParseIP("10.77.0.10")), dhcpv4.WithBroadcast(false)), peer: netip.MustParseAddrPort("10.77.0.10:68")},
		{name: "auth-unknown-mac", req: discover(t, macUnknown, bios...)},
		{name: "auth-disabled-node", req: discover(t, macOff, bios...)},
		{name: "auth-release", req: discover(t, macBIOS, dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease))},
		{name: "proxy-bios-discover", mode: inventory.DHCPProxy, req: discover(t, macBIOS, bios...)},
		{name: "proxy-uefi-request-4011", mode: inventory.DHCPProxy, req: request(t, macUEFI, "", append(uefi, dhcpv4.WithClientIP(net.ParseIP("10.9.9.9")))...), peer: netip.MustParseAddrPort("10.9.9.9:68"), proxyPort: true},
		{name: "proxy-request-67-ignored", mode: inventory.DHCPProxy, req: request(t, macBIOS, "10.9.9.9", bios...)},
		{name: "proxy-linux-discover-ignored", mode: inventory.DHCPProxy, req: discover(t, macBIOS)},
		{name: "proxy-ipxe-discover", mode: inventory.DHCPProxy, req: discover(t, macBIOS, append(bios, withIPXE())...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mode := tt.mode
			if mode == "" {
				mode = inventory.DHCPAuthoritative
			}
			s := newTestServer(t, testConfig(mode))
			p := tt.peer
			if !p.IsValid() {
				p = peer
			}
			reply, to, ok := s.handle(tt.req.ToBytes(), p, tt.proxyPort)
			got := render(reply, to, ok)
			goldenfile.Check(t, filepath.Join("testdata", tt.name+".golden"), []byte(got))
		})
	}
}

// TestHandleDecisions checks the few facts each golden file must show, so a
// careless -update cannot bless a wrong answer.
func TestHandleDecisions(t *testing.T) {
	bios := []dhcpv4.Modifier{withVendor("PXEClient:Arch:00000:UNDI:002001"), withArch(iana.INTEL_X86PC)}
	uefi := []dhcpv4.Modifier{withVendor("PXEClient:Arch:00007:UNDI:003010"), withArch(iana.EFI_X86_64)}
	type result struct {
		Type   string
		To     string
		YourIP string
		File   string
		NoPXE  bool // option 175.176 = 1
	}
	bcast := "255.255.255.255:68"
	tests := []struct {
		name string
		mode inventory.DHCPMode
		req  *dhcpv4.DHCPv4
		want *result
	}{
		{"bios gets undionly", "", discover(t, macBIOS, bios...), &result{Type: "OFFER", To: bcast, YourIP: "10.77.0.10", File: "undionly.kpxe"}},
		{"uefi gets snponly", "", discover(t, macUEFI, uefi...), &result{Type: "OFFER", To: bcast, YourIP: "10.77.0.11", File: "snponly.efi"}},
		{"ipxe gets its script", "", request(t, macBIOS, "10.77.0.10", append(bios, withIPXE())...), &result{Type: "ACK", To: bcast, YourIP: "10.77.0.10", File: "http://10.77.0.1:8080/boot/node-bios.ipxe", NoPXE: true}},
		{"http boot gets an url", "", discover(t, macUEFI, withVendor("HTTPClient:Arch:00016:UNDI:003001"), withArch(iana.EFI_X86_64_HTTP)), &result{Type: "OFFER", To: bcast, YourIP: "10.77.0.11", File: "http://10.77.0.1:8080/ipxe/snponly.efi"}},
		{"relay on own subnet gets unicast", "", discover(t, macUEFI, append(uefi, dhcpv4.WithGatewayIP(net.ParseIP("10.77.0.254")))...), &result{Type: "OFFER", To: "10.77.0.254:67", YourIP: "10.77.0.11", File: "snponly.efi"}},
		{"unlisted relay gets nothing", "", discover(t, macUEFI, append(uefi, dhcpv4.WithGatewayIP(net.ParseIP("10.77.5.1")))...), nil},
		{"wrong address is refused", "", request(t, macBIOS, "10.77.0.99", bios...), &result{Type: "NAK", To: bcast, YourIP: "0.0.0.0"}},
		{"unknown mac gets nothing", "", discover(t, macUnknown, bios...), nil},
		{"disabled node gets nothing", "", discover(t, macOff, bios...), nil},
		{"proxy offer has no address", inventory.DHCPProxy, discover(t, macBIOS, bios...), &result{Type: "OFFER", To: bcast, YourIP: "0.0.0.0", File: "undionly.kpxe"}},
		{"proxy ignores plain dhcp", inventory.DHCPProxy, discover(t, macBIOS), nil},
		{"proxy ipxe waits for proxydhcp", inventory.DHCPProxy, discover(t, macBIOS, append(bios, withIPXE())...), &result{Type: "OFFER", To: bcast, YourIP: "0.0.0.0", File: "http://10.77.0.1:8080/boot/node-bios.ipxe"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mode := tt.mode
			if mode == "" {
				mode = inventory.DHCPAuthoritative
			}
			s := newTestServer(t, testConfig(mode))
			b, to, ok := s.handle(tt.req.ToBytes(), netip.MustParseAddrPort("0.0.0.0:68"), false)
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
				got = &result{Type: strings.ToUpper(strings.TrimPrefix(d.MessageType().String(), "DHCP")), To: to.String(), YourIP: d.YourIPAddr.String(), File: file,
					NoPXE: string(d.Options.Get(dhcpv4.GenericOptionCode(175))) == string([]byte{176, 1, 1})}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("handle(%s) (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		mods []dhcpv4.Modifier
		want Client
	}{
		{"plain dhcp", nil, ClientNone},
		{"seabios ipxe rom", []dhcpv4.Modifier{withVendor("PXEClient:Arch:00000:UNDI:002001"), withIPXE()}, ClientIPXE},
		{"ipxe by user class only", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE"))}, ClientIPXE},
		{"bios", []dhcpv4.Modifier{withVendor("PXEClient:Arch:00000:UNDI:002001"), withArch(iana.INTEL_X86PC)}, ClientBIOS},
		{"ovmf", []dhcpv4.Modifier{withVendor("PXEClient:Arch:00007:UNDI:003010"), withArch(iana.EFI_X86_64)}, ClientUEFIx64},
		{"efi bc", []dhcpv4.Modifier{withVendor("PXEClient:Arch:00009:UNDI:003010"), withArch(iana.EFI_BC)}, ClientUEFIx64},
		{"arch only in vendor class", []dhcpv4.Modifier{withVendor("PXEClient:Arch:00007:UNDI:003010")}, ClientUEFIx64},
		{"arm64", []dhcpv4.Modifier{withVendor("PXEClient:Arch:00011:UNDI:003000"), withArch(iana.EFI_ARM64)}, ClientUEFIArm64},
		{"http x64", []dhcpv4.Modifier{withVendor("HTTPClient:Arch:00016:UNDI:003001"), withArch(iana.EFI_X86_64_HTTP)}, ClientHTTPx64},
		{"http arm64", []dhcpv4.Modifier{withVendor("HTTPClient:Arch:00019:UNDI:003001"), withArch(iana.EFI_ARM64_HTTP)}, ClientHTTPArm64},
		{"ia32 unsupported", []dhcpv4.Modifier{withVendor("PXEClient:Arch:00006:UNDI:003000"), withArch(iana.EFI_IA32)}, ClientUnsupported},
		{"garbled vendor class", []dhcpv4.Modifier{withVendor("PXEClient:Arch:0x7")}, ClientBIOS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(discover(t, macBIOS, tt.mods...))
			if got != tt.want {
				t.Errorf("classify(%s) = %q, want %q", tt.name, got, tt.want)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no server ip", func(c *Config) { c.ServerIP = netip.Addr{} }, "dhcp server ip"},
		{"bad mode", func(c *Config) { c.Mode = "relay" }, `dhcp mode "relay"`},
		{"no subnet", func(c *Config) { c.Subnet = netip.Prefix{} }, "authoritative mode needs the IPv4 provisioning subnet"},
		{"no script url", func(c *Config) { c.ScriptURL = nil }, "ScriptURL is required"},
		{"node outside subnet", func(c *Config) { c.Nodes[0].IP = netip.MustParseAddr("10.1.1.1") }, "node-bios: ip 10.1.1.1 is outside subnet"},
		{"duplicate mac", func(c *Config) { c.Nodes[1].MAC = c.Nodes[0].MAC }, "is also node node-bios"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(inventory.DHCPAuthoritative)
			tt.change(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%s) error = %v, want it to contain %q", tt.name, err, tt.want)
			}
		})
	}
}

func TestDeterministicAcrossRestarts(t *testing.T) {
	req := request(t, macUEFI, "10.77.0.11", withVendor("PXEClient:Arch:00007:UNDI:003010"), withArch(iana.EFI_X86_64)).ToBytes()
	a, _, _ := newTestServer(t, testConfig(inventory.DHCPAuthoritative)).handle(req, netip.MustParseAddrPort("0.0.0.0:68"), false)
	b, _, _ := newTestServer(t, testConfig(inventory.DHCPAuthoritative)).handle(req, netip.MustParseAddrPort("0.0.0.0:68"), false)
	if diff := cmp.Diff(a, b); diff != "" || len(a) == 0 {
		t.Errorf("ACK after a restart differs (-first +second):\n%s", diff)
	}
}

func TestMalformedPackets(t *testing.T) {
	s := newTestServer(t, testConfig(inventory.DHCPAuthoritative))
	good := discover(t, macBIOS).ToBytes()
	cases := map[string][]byte{
		"empty":          {},
		"one byte":       {1},
		"truncated":      good[:100],
		"no cookie":      good[:236],
		"bad cookie":     append(append([]byte{}, good[:236]...), 1, 2, 3, 4),
		"option overrun": append(append([]byte{}, good[:240]...), 53, 200, 1),
		"reply opcode":   func() []byte { b := append([]byte{}, good...); b[0] = 2; return b }(),
		"hlen 16":        func() []byte { b := append([]byte{}, good...); b[2] = 16; return b }(),
	}
	for name, pkt := range cases {
		if _, _, ok := s.handle(pkt, netip.MustParseAddrPort("0.0.0.0:68"), false); ok {
			t.Errorf("handle(%s) answered a malformed packet", name)
		}
	}
}

func FuzzHandle(f *testing.F) {
	f.Add(discover(f, macBIOS, withVendor("PXEClient:Arch:00000:UNDI:002001"), withArch(iana.INTEL_X86PC)).ToBytes(), false)
	f.Add(request(f, macBIOS, "10.77.0.10", withIPXE()).ToBytes(), false)
	f.Add(request(f, macUEFI, "", withVendor("PXEClient:Arch:00007:UNDI:003010")).ToBytes(), true)
	f.Add([]byte{1, 1, 6, 0}, false)
	auth := newTestServer(f, testConfig(inventory.DHCPAuthoritative))
	proxy := newTestServer(f, testConfig(inventory.DHCPProxy))
	f.Fuzz(func(t *testing.T, pkt []byte, proxyPort bool) {
		for _, s := range []*Server{auth, proxy} {
			reply, _, ok := s.handle(pkt, netip.MustParseAddrPort("10.0.0.5:68"), proxyPort)
			if ok {
				if _, err := dhcpv4.FromBytes(reply); err != nil {
					t.Fatalf("reply to %x does not parse: %v", pkt, err)
				}
			}
		}
	})
}

// relayClient is a DHCP relay agent on loopback: it sends requests with
// giaddr set to its own address, so the server answers by unicast.
type relayClient struct {
	conn *net.UDPConn
	gi   netip.Addr
	srv  *net.UDPAddr
}

// newRelayClient is a relay agent on c (bound by the caller on the server's
// port, where the server sends relayed replies) in front of srv.
func newRelayClient(c *net.UDPConn, srv net.Addr) *relayClient {
	gi := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr()
	return &relayClient{conn: c, gi: gi, srv: srv.(*net.UDPAddr)}
}

// exchange sends req through the relay and returns the reply, or nil when
// none comes within wait.
func (r *relayClient) exchange(t *testing.T, req *dhcpv4.DHCPv4, wait time.Duration) *dhcpv4.DHCPv4 {
	t.Helper()
	req.GatewayIPAddr = net.IP(r.gi.AsSlice())
	req.HopCount = 1
	if _, err := r.conn.WriteToUDP(req.ToBytes(), r.srv); err != nil {
		t.Fatalf("relay send: %v", err)
	}
	buf := make([]byte, 1500)
	r.conn.SetReadDeadline(time.Now().Add(wait))
	for {
		n, _, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			t.Fatalf("relay read: %v", err)
		}
		d, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			t.Fatalf("relay got a malformed reply: %v", err)
		}
		if d.TransactionID == req.TransactionID {
			return d
		}
	}
}

// serverAndRelay binds the server's socket on 127.0.0.1 and a relay's on
// 127.0.0.2, on one port, and sets cfg to serve the first.
func serverAndRelay(t *testing.T, cfg *Config) *net.UDPConn {
	t.Helper()
	conns := servetest.SameUDPPort(t, "127.0.0.1", "127.0.0.2")
	cfg.ListenAddr = netip.MustParseAddr("127.0.0.1")
	cfg.Conn = conns[0]
	cfg.Port = servetest.Port(conns[0].LocalAddr())
	return conns[1]
}

// behindLoopbackRelay puts the test nodes on a routed network whose relay
// is 127.0.0.2, as the loopback tests' relay client is.
func behindLoopbackRelay(cfg Config) Config {
	for i := range cfg.Nodes {
		cfg.Nodes[i].Network = "lab"
	}
	cfg.Routed = []inventory.ProvisioningNetwork{{Name: "lab", Subnet: cfg.Subnet, Gateway: cfg.Router, DNSServers: cfg.DNS,
		DomainName: cfg.DomainName, Relays: []netip.Addr{netip.MustParseAddr("127.0.0.2")}, ProvisionerAddress: cfg.ServerIP}}
	cfg.Subnet = netip.MustParsePrefix("10.76.0.0/24")
	return cfg
}

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s := newTestServer(t, cfg)
	servetest.Start(t, s)
	return s
}

func TestRelayOnLoopback(t *testing.T) {
	bus := bootevent.NewBus()
	events, cancel := bus.Subscribe(0)
	defer cancel()
	cfg := behindLoopbackRelay(testConfig(inventory.DHCPAuthoritative))
	relayConn := serverAndRelay(t, &cfg)
	cfg.Events = bus
	startServer(t, cfg)
	relay := newRelayClient(relayConn, cfg.Conn.LocalAddr())

	bios := []dhcpv4.Modifier{withVendor("PXEClient:Arch:00000:UNDI:002001"), withArch(iana.INTEL_X86PC)}
	offer := relay.exchange(t, discover(t, macBIOS, bios...), 5*time.Second)
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer || !offer.YourIPAddr.Equal(net.ParseIP("10.77.0.10")) {
		t.Fatalf("DISCOVER via relay: got %v, want an OFFER of 10.77.0.10", offer)
	}
	ack := relay.exchange(t, request(t, macBIOS, "10.77.0.10", append(bios, withIPXE())...), 5*time.Second)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "http://10.77.0.1:8080/boot/node-bios.ipxe" {
		t.Fatalf("REQUEST via relay: got %v, want an ACK naming the iPXE script", ack)
	}
	// An unknown MAC gets silence; the known one after it still gets an answer,
	// which proves the server was listening during the silence.
	if got := relay.exchange(t, discover(t, macUnknown, bios...), 300*time.Millisecond); got != nil {
		t.Errorf("DISCOVER from unknown MAC %s: got %s, want no answer", macUnknown, got.MessageType())
	}
	if got := relay.exchange(t, discover(t, macUEFI, withVendor("PXEClient:Arch:00007:UNDI:003010")), 5*time.Second); got == nil {
		t.Fatalf("DISCOVER from %s after the unknown MAC: no answer", macUEFI)
	}

	var kinds []string
	timeout := time.After(5 * time.Second)
	for len(kinds) < 7 {
		select {
		case e := <-events:
			kinds = append(kinds, string(e.Kind)+" "+e.Node)
		case <-timeout:
			t.Fatalf("events so far %v, want 7", kinds)
		}
	}
	want := []string{"dhcp_discover node-bios", "dhcp_offer node-bios", "dhcp_request node-bios", "dhcp_ack node-bios", "dhcp_ignored ", "dhcp_discover node-uefi", "dhcp_offer node-uefi"}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestRunRefusesTakenPort(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := testConfig(inventory.DHCPAuthoritative)
	cfg.ListenAddr = netip.MustParseAddr("127.0.0.1")
	cfg.Port = uint16(c.LocalAddr().(*net.UDPAddr).Port)
	err = newTestServer(t, cfg).Run(context.Background())
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "another DHCP server") {
		t.Errorf("Run on a taken port = %v, want EADDRINUSE with a hint", err)
	}
}

func TestRunRefusesMissingInterface(t *testing.T) {
	cfg := testConfig(inventory.DHCPAuthoritative)
	cfg.Interface = "slipway-nope0"
	cfg.Port = 6767 // never bound: the interface check comes first
	err := newTestServer(t, cfg).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "slipway-nope0") {
		t.Errorf("Run on a missing interface = %v, want an error naming it", err)
	}
}

// TestProxyModeOnLoopback runs proxy mode on two sockets: the DISCOVER on
// the server port gets a ProxyDHCP offer without an address, and a client
// that already has an address asks port 4011 (here a free port) and gets
// the boot file answered to its own address and port.
func TestProxyModeOnLoopback(t *testing.T) {
	cfg := behindLoopbackRelay(testConfig(inventory.DHCPProxy))
	relayConn := serverAndRelay(t, &cfg)
	cfg.ProxyConn = servetest.ListenUDP(t, "127.0.0.1:0")
	cfg.ProxyPort = servetest.Port(cfg.ProxyConn.LocalAddr())
	s := startServer(t, cfg)
	if got := len(s.Addrs()); got != 2 {
		t.Fatalf("proxy mode listens on %d sockets, want 2 (server port and %d)", got, cfg.ProxyPort)
	}
	uefi := []dhcpv4.Modifier{withVendor("PXEClient:Arch:00007:UNDI:003010"), withArch(iana.EFI_X86_64)}

	relay := newRelayClient(relayConn, cfg.Conn.LocalAddr())
	offer := relay.exchange(t, discover(t, macUEFI, uefi...), 5*time.Second)
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer || !offer.YourIPAddr.IsUnspecified() || offer.ClassIdentifier() != "PXEClient" {
		t.Fatalf("proxy DISCOVER: got %v, want an OFFER with no address and vendor class PXEClient", offer)
	}

	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := request(t, macUEFI, "", append(uefi, dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 3)))...)
	if _, err := c.WriteToUDP(req.ToBytes(), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(cfg.ProxyPort)}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("REQUEST to the proxy port: no answer: %v", err)
	}
	ack, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "snponly.efi" {
		t.Errorf("REQUEST to the proxy port: got %s with file %q, want ACK with snponly.efi", ack.MessageType(), ack.BootFileName)
	}
}
