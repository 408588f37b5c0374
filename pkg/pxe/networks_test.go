package pxe

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/pkg/inventory"

	"github.com/slipway-dev/slipway/internal/servetest"
)

func TestCheckProvisionerAddresses(t *testing.T) {
	cidr := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	local := func() ([]net.Addr, error) {
		return []net.Addr{cidr("10.60.0.2/24"), cidr("10.69.0.2/32"), cidr("fe80::1/64")}, nil
	}
	for _, tt := range []struct {
		name, provisioner, wantErr, wantLog string
	}{
		{name: "the default, the listening address", provisioner: "10.60.0.2"},
		{name: "a VIP or NAT elsewhere", provisioner: "10.99.0.2", wantLog: "routed network reaches the boot services through another address"},
		{name: "another address of this machine", provisioner: "10.69.0.2", wantErr: "network r12's provisionerAddress 10.69.0.2 is an address of this machine, but the boot services listen only on network.provisioner.address 10.60.0.2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inv := &inventory.Inventory{
				Network:  inventory.Network{Address: netip.MustParseAddr("10.60.0.2")},
				Networks: []inventory.ProvisioningNetwork{{Name: "r12", ProvisionerAddress: netip.MustParseAddr(tt.provisioner)}},
			}
			var log bytes.Buffer
			err := checkProvisionerAddresses(inv, local, slog.New(slog.NewTextHandler(&log, nil)))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("checkProvisionerAddresses(%s) = %v, want nil", tt.provisioner, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("checkProvisionerAddresses(%s) = %v, want an error containing %q", tt.provisioner, err, tt.wantErr)
			}
			if tt.wantLog != "" && !strings.Contains(log.String(), tt.wantLog) {
				t.Errorf("checkProvisionerAddresses(%s) logged %q, want %q", tt.provisioner, log.String(), tt.wantLog)
			}
		})
	}
}

// syncBuffer is a log sink safe for the services' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)

// Once every service listens, one line says what runs where, router
// advertisements included.
func TestReadyLine(t *testing.T) {
	inv := loopbackInventory(t)
	inv.Networks = []inventory.ProvisioningNetwork{{Name: "rack-b", Subnet: netip.MustParsePrefix("10.78.0.0/24"),
		Relays: []netip.Addr{netip.MustParseAddr("10.78.0.1")}, ProvisionerAddress: inv.Network.Address}}
	log := &syncBuffer{}
	svc, err := New(Config{
		Inventory: inv, TFTPRoot: t.TempDir(), SkipInterfaceCheck: true,
		Listeners: Listeners{DHCP: servetest.ListenUDP(t, "127.0.0.1:0"), TFTP: servetest.ListenUDP(t, "127.0.0.1:0"), HTTP: servetest.Listen(t, "127.0.0.1:0")},
		Log:       slog.New(slog.NewTextHandler(log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	servetest.Start(t, svc)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(log.String(), "boot services ready") {
		if time.Now().After(deadline) {
			t.Fatalf("no ready line within 5 s; log:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	line := ""
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.Contains(l, "boot services ready") {
			line = l
		}
	}
	for _, want := range []string{"dhcp=authoritative", "http=127.0.0.1:", "tftp=127.0.0.1:", `router_advertisements="off (network.routerAdvertisements: false)"`, "routed_networks=rack-b", "nodes=1"} {
		if !strings.Contains(line, want) {
			t.Errorf("ready line lacks %q: %s", want, line)
		}
	}
}
