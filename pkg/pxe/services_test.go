package pxe

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/pin/tftp/v3"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"

	"github.com/slipway-dev/slipway/internal/servetest"
)

// loopbackInventory is a one-node inventory served on lo: the node's address
// is 127.0.0.1 so the HTTP and TFTP servers can tell it is the node asking.
func loopbackInventory(t *testing.T) *inventory.Inventory {
	t.Helper()
	m, _ := net.ParseMAC("52:54:00:77:00:10")
	return &inventory.Inventory{
		Network: inventory.Network{
			Interface: "lo",
			Address:   netip.MustParseAddr("127.0.0.1"),
			Subnet:    netip.MustParsePrefix("127.0.0.0/8"),
			DHCPMode:  inventory.DHCPAuthoritative,
			LeaseTime: time.Hour,
		},
		Nodes: []inventory.Node{{
			Name: "node-1", MAC: inventory.HardwareAddr(m), IP: netip.MustParseAddr("127.0.0.1"),
			Boot: inventory.Boot{Firmware: inventory.FirmwareBIOS, Kernel: "vmlinuz", Initrd: "initrd.gz"},
		}},
	}
}

func TestServicesBootSequence(t *testing.T) {
	dir := t.TempDir()
	tftpRoot, assets := filepath.Join(dir, "ipxe"), filepath.Join(dir, "assets")
	os.MkdirAll(tftpRoot, 0o755)
	os.MkdirAll(assets, 0o755)
	os.WriteFile(filepath.Join(tftpRoot, "undionly.kpxe"), bytes.Repeat([]byte{0x55}, 70_000), 0o644)
	os.WriteFile(filepath.Join(assets, "vmlinuz"), []byte("kernel"), 0o644)
	os.WriteFile(filepath.Join(assets, "initrd.gz"), []byte("initrd"), 0o644)

	// Bind first and hand the sockets over: the DHCP server and the relay
	// on 127.0.0.2 share one port (the server answers a relay on its own port).
	dhcpConns := servetest.SameUDPPort(t, "127.0.0.1", "127.0.0.2")
	tftpConn, httpLn := servetest.ListenUDP(t, "127.0.0.1:0"), servetest.Listen(t, "127.0.0.1:0")
	dhcpPort, tftpPort, httpPort := servetest.Port(dhcpConns[0].LocalAddr()), servetest.Port(tftpConn.LocalAddr()), servetest.Port(httpLn.Addr())
	relay := dhcpConns[1]
	inv := loopbackInventory(t)
	svc, err := New(Config{
		Inventory: inv, TFTPRoot: tftpRoot, AssetDir: assets,
		Listeners: Listeners{DHCP: dhcpConns[0], TFTP: tftpConn, HTTP: httpLn},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	events, cancelSub := svc.Bus().Subscribe(0)
	defer cancelSub()
	var got []string
	// expect reads events until it has seen n more; each step's events are
	// awaited before the next step, as a real client would (the TFTP event
	// follows the last ACK, which the client does not wait for).
	expect := func(n int) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for want := len(got) + n; len(got) < want; {
			select {
			case e := <-events:
				if e.Node != "node-1" {
					t.Errorf("event %s names node %q, want node-1", e.Kind, e.Node)
				}
				got = append(got, string(e.Kind))
			case <-timeout:
				t.Fatalf("events so far %v, waiting for %d more", got, want-len(got))
			}
		}
	}
	servetest.Start(t, svc)

	// 1. Firmware PXE through a relay on 127.0.0.2.
	exchange := func(mt dhcpv4.MessageType, ipxe bool) *dhcpv4.DHCPv4 {
		t.Helper()
		mac := net.HardwareAddr(inv.Nodes[0].MAC)
		req, _ := dhcpv4.NewDiscovery(mac,
			dhcpv4.WithMessageType(mt),
			dhcpv4.WithGatewayIP(net.IPv4(127, 0, 0, 2)),
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
		if ipxe {
			req.UpdateOption(dhcpv4.OptUserClass("iPXE"))
		}
		relay.WriteToUDP(req.ToBytes(), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(dhcpPort)})
		relay.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, _, err := relay.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("DHCP %s: %v", mt, err)
		}
		resp, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	offer := exchange(dhcpv4.MessageTypeDiscover, false)
	exchange(dhcpv4.MessageTypeRequest, false)
	expect(4)
	if offer.BootFileName != "undionly.kpxe" {
		t.Fatalf("offer boot file = %q, want undionly.kpxe", offer.BootFileName)
	}
	// 2. TFTP of the named binary.
	c, _ := tftp.NewClient(net.JoinHostPort("127.0.0.1", itoa(tftpPort)))
	wt, err := c.Receive(offer.BootFileName, "octet")
	if err != nil {
		t.Fatalf("TFTP %s: %v", offer.BootFileName, err)
	}
	if n, err := wt.WriteTo(io.Discard); err != nil || n != 70_000 {
		t.Fatalf("TFTP %s: %d bytes, %v", offer.BootFileName, n, err)
	}
	expect(1)
	// 3. iPXE asks again and gets its script URL.
	ack := exchange(dhcpv4.MessageTypeRequest, true)
	get := func(url string) string {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d", url, resp.StatusCode)
		}
		return string(b)
	}
	script := get(ack.BootFileName)
	// 4. What the script names: kernel, initrd, then the booted node's config and phone-home.
	for _, re := range []string{`kernel (\S+)`, `initrd (http\S+)`, `slipway.config=(\S+)`} {
		m := regexp.MustCompile(re).FindStringSubmatch(script)
		if m == nil {
			t.Fatalf("script lacks %s:\n%s", re, script)
		}
		get(m[1])
	}
	resp, err := http.Post("http://127.0.0.1:"+itoa(httpPort)+"/phone-home/node-1", "text/plain", strings.NewReader("booted"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	want := []string{
		"dhcp_discover", "dhcp_offer", "dhcp_request", "dhcp_ack", "tftp_served",
		"dhcp_request", "dhcp_ack", "script_served", "kernel_served", "initrd_served",
		"config_fetched", "phone_home",
	}
	expect(len(want) - len(got))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("boot events (-want +got):\n%s", diff)
	}
	if m := get("http://127.0.0.1:" + itoa(httpPort) + "/metrics"); !strings.Contains(m, `slipway_boot_events_total{kind="tftp_served"} 1`) {
		t.Errorf("/metrics lacks the boot event counter:\n%s", m)
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

func TestServicesRefuseToStart(t *testing.T) {
	tests := []struct {
		name   string
		change func(*inventory.Inventory)
		want   string
	}{
		{"missing interface", func(inv *inventory.Inventory) { inv.Network.Interface = "slipway-nope0" }, "interface slipway-nope0"},
		{"address not on interface", func(inv *inventory.Inventory) { inv.Network.Address = netip.MustParseAddr("192.0.2.1") }, "does not carry network.provisioner.address 192.0.2.1"},
		{"no interface", func(inv *inventory.Inventory) { inv.Network.Interface = "" }, "network.provisioner.interface is empty"},
		{"ipv6 address", func(inv *inventory.Inventory) { inv.Network.Address = netip.MustParseAddr("::1") }, "want the provisioner's IPv4 address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := loopbackInventory(t)
			tt.change(inv)
			_, err := New(Config{Inventory: inv, TFTPRoot: t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%s) = %v, want an error containing %q", tt.name, err, tt.want)
			}
		})
	}
}

func TestServicesPortTaken(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	svc, err := New(Config{
		Inventory: loopbackInventory(t), TFTPRoot: t.TempDir(),
		Listeners: Listeners{DHCP: servetest.ListenUDP(t, "127.0.0.1:0"), TFTP: servetest.ListenUDP(t, "127.0.0.1:0")},
		HTTPPort:  uint16(l.Addr().(*net.TCPAddr).Port),
	})
	if err != nil {
		t.Fatal(err)
	}
	ready := svc.Ready()
	if again := svc.Ready(); again != ready {
		t.Error("Ready returned another channel on its second call: one watcher per call")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = svc.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "already uses the port") {
		t.Errorf("Run with the HTTP port taken = %v, want a port-taken error", err)
	}
	if ctx.Err() != nil {
		t.Error("Run waited for the deadline instead of stopping at the first failure")
	}
	select {
	case <-ready:
		t.Error("Ready closed although the HTTP server never listened")
	default:
	}
	select {
	case <-svc.stopped: // the Ready watcher returns on it
	default:
		t.Error("Run returned without marking the services stopped: Ready's watcher would wait for ever")
	}
}

var _ bootevent.Sink = (*bootevent.Bus)(nil)

// TestServedHTTPPort checks that the boot HTTP port, and with it every URL
// handed to nodes, is decided in one place.
func TestServedHTTPPort(t *testing.T) {
	inv := loopbackInventory(t)
	inv.Network.HTTPPort = 8081
	ln := servetest.Listen(t, "127.0.0.1:0")
	lnPort := servetest.Port(ln.Addr())
	tests := []struct {
		name    string
		cfg     Config
		want    uint16
		wantErr string
	}{
		{"inventory", Config{Inventory: inv}, 8081, ""},
		{"flag over inventory", Config{Inventory: inv, HTTPPort: 9000}, 9000, ""},
		{"listener", Config{Inventory: inv, Listeners: Listeners{HTTP: ln}}, lnPort, ""},
		{"listener and the same port", Config{Inventory: inv, HTTPPort: lnPort, Listeners: Listeners{HTTP: ln}}, lnPort, ""},
		{"listener and another port", Config{Inventory: inv, HTTPPort: 1, Listeners: Listeners{HTTP: ln}}, 0, "but the HTTP port is set to 1"},
		{"default", Config{Inventory: loopbackInventory(t)}, 8080, ""},
	}
	for _, tt := range tests {
		got, err := tt.cfg.ServedHTTPPort()
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ServedHTTPPort(%s) error = %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ServedHTTPPort(%s) = %d, %v; want %d", tt.name, got, err, tt.want)
		}
		if base, _ := tt.cfg.BaseURL(); base != "http://127.0.0.1:"+itoa(tt.want) {
			t.Errorf("BaseURL(%s) = %q, want port %d", tt.name, base, tt.want)
		}
	}
}
