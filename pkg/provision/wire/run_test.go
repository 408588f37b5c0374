package wire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/pxe"
	"github.com/slipway-dev/slipway/pkg/pxe/httpboot"
	"github.com/slipway-dev/slipway/pkg/simrack"
)

// rackSetup is a simulated rack on loopback and the boot services for it,
// the way `provisioner demo` builds them.
type rackSetup struct {
	inv    *inventory.Inventory
	rack   *simrack.Rack
	svc    *pxe.Services
	render *JournaledRenderer
}

// newRackSetup builds nodes cp-1 (control plane) and worker-1..workers-1
// on 127.10.0.x, a simrack with faults, and boot services on free
// loopback ports. Everything is closed in t.Cleanup.
func newRackSetup(t *testing.T, nodes int, faults map[string]simrack.Fault) *rackSetup {
	t.Helper()
	tmp := t.TempDir()
	tftpRoot, assets := filepath.Join(tmp, "ipxe"), filepath.Join(tmp, "assets")
	for path, size := range map[string]int{
		filepath.Join(tftpRoot, "undionly.kpxe"): 1 << 10, filepath.Join(tftpRoot, "snponly.efi"): 1 << 10,
		filepath.Join(assets, "vmlinuz"): 4 << 10, filepath.Join(assets, "initrd.img"): 4 << 10,
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, bytes.Repeat([]byte{0x5a}, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pwFile := filepath.Join(tmp, "bmc-password")
	if err := os.WriteFile(pwFile, []byte("simulated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dhcpPort, tftpPort, httpPort := freeUDPPortOnBoth(t), freePort(t, "udp4"), freePort(t, "tcp4")
	lo := netip.MustParseAddr("127.0.0.1")
	inv := &inventory.Inventory{
		Cluster: inventory.Cluster{Name: "wire-test", KubernetesVersion: "v1.37.2"},
		Network: inventory.Network{
			Interface: "lo", Address: lo, HTTPPort: httpPort,
			Subnet: netip.MustParsePrefix("127.0.0.0/8"), DHCPMode: inventory.DHCPAuthoritative, LeaseTime: time.Hour,
		},
	}
	for i := range nodes {
		n := inventory.Node{
			Name: fmt.Sprintf("worker-%d", i), Role: inventory.RoleWorker,
			MAC:  inventory.HardwareAddr(net.HardwareAddr{0x02, 0x5a, 0x77, 0, 0, byte(i + 1)}),
			IP:   netip.AddrFrom4([4]byte{127, 10, 0, byte(i + 1)}),
			Boot: inventory.Boot{Firmware: inventory.FirmwareUEFI, Kernel: "vmlinuz", Initrd: "initrd.img"},
		}
		if i == 0 {
			n.Name, n.Role = "cp-1", inventory.RoleControlPlane
		}
		inv.Nodes = append(inv.Nodes, n)
	}
	rack, err := simrack.New(simrack.Config{
		Nodes: inv.Nodes, DHCPServer: netip.AddrPortFrom(lo, dhcpPort), TFTPServer: netip.AddrPortFrom(lo, tftpPort),
		Firmware: 50 * time.Millisecond, OS: 100 * time.Millisecond, Faults: faults, Seed: 1,
		Password: "simulated", PasswordRef: inventory.SecretRef{Source: "file", Name: pwFile},
	})
	if err != nil {
		t.Fatalf("simrack.New: %v", err)
	}
	t.Cleanup(func() { rack.Close() })
	for i := range inv.Nodes {
		inv.Nodes[i].BMC, _ = rack.BMC(inv.Nodes[i].Name)
	}
	render := NewJournaledRenderer(httpboot.PhoneHomeRenderer{BaseURL: fmt.Sprintf("http://127.0.0.1:%d", httpPort)})
	svc, err := pxe.New(pxe.Config{
		Inventory: inv, TFTPRoot: tftpRoot, AssetDir: assets, Renderer: render,
		HTTPPort: httpPort, DHCPPort: dhcpPort, TFTPPort: tftpPort,
		DHCPListenAddr: lo, SkipInterfaceCheck: true,
	})
	if err != nil {
		t.Fatalf("pxe.New: %v", err)
	}
	return &rackSetup{inv: inv, rack: rack, svc: svc, render: render}
}

// config is the Provisioner configuration for s: short phase timeouts and
// fast BMC polls, the rack's readiness, the rack running beside.
func (s *rackSetup) config(state string) Config {
	return Config{
		Nodes: s.inv.Enabled(), StateDir: state, Services: s.svc, Renderer: s.render,
		BMC:       bmc.Config{Backoff: []time.Duration{20 * time.Millisecond}},
		Readiness: s.rack, ReadyPoll: 50 * time.Millisecond, MaxAttempts: 1,
		Timeouts: provision.Timeouts{DHCP: 3 * time.Second, Netboot: 5 * time.Second, Join: 5 * time.Second, Ready: 5 * time.Second},
		Beside:   []func(context.Context) error{s.rack.Run},
	}
}

func freePort(t *testing.T, network string) uint16 {
	t.Helper()
	if network == "tcp4" {
		l, err := net.Listen(network, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return uint16(l.Addr().(*net.TCPAddr).Port)
	}
	c, err := net.ListenPacket(network, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

// freeUDPPortOnBoth finds a UDP port free on 127.0.0.1 (the DHCP server)
// and 127.0.0.2 (simrack's relay).
func freeUDPPortOnBoth(t *testing.T) uint16 {
	t.Helper()
	for range 20 {
		p := freePort(t, "udp4")
		c, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.2:%d", p))
		if err == nil {
			c.Close()
			return p
		}
	}
	t.Fatal("no udp port free on both 127.0.0.1 and 127.0.0.2")
	return 0
}

// TestProvisionerRun runs the whole wiring against a simulated rack on
// loopback (Redfish BMCs, DHCP through a relay, TFTP, HTTP, the join
// phone-home): every healthy node ends Ready after one power cycle, the
// node without PXE fails, and a second run resumes from the journal
// without power-cycling anything.
func TestProvisionerRun(t *testing.T) {
	t.Parallel()
	s := newRackSetup(t, 4, map[string]simrack.Fault{"worker-3": simrack.FaultNoPXE})
	state := t.TempDir()
	var besideStopped atomic.Bool
	cfg := s.config(state)
	cfg.Beside = append(cfg.Beside, func(ctx context.Context) error {
		<-ctx.Done() // runs until provisioning ends
		besideStopped.Store(true)
		return nil
	})
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	rep, err := p.Run(ctx)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := map[string]provision.Phase{"cp-1": provision.PhaseReady, "worker-1": provision.PhaseReady,
		"worker-2": provision.PhaseReady, "worker-3": provision.PhaseFailed}
	if diff := cmp.Diff(want, phasesOf(rep)); diff != "" {
		t.Errorf("Run: phases (-want +got):\n%s", diff)
	}
	for _, r := range rep.Nodes {
		if r.Attempts != 1 {
			t.Errorf("Run: %s took %d power cycles, want 1", r.Node, r.Attempts)
		}
	}
	if !besideStopped.Load() {
		t.Error("Run returned before the Beside function saw its context end")
	}
	boots := s.rack.Boots()
	if boots != 4 {
		t.Errorf("Run: the rack saw %d power-ons, want 4 (one per node)", boots)
	}

	// A resumed run on the same state directory: the Ready nodes are left
	// alone, only the failed one is tried again.
	s2 := newRackSetup(t, 4, map[string]simrack.Fault{"worker-3": simrack.FaultNoPXE})
	p, err = New(s2.config(state))
	if err != nil {
		t.Fatalf("New (resume): %v", err)
	}
	rep, err = p.Run(ctx)
	if err != nil {
		t.Fatalf("Run (resume): %v", err)
	}
	if diff := cmp.Diff(want, phasesOf(rep)); diff != "" {
		t.Errorf("Run (resume): phases (-want +got):\n%s", diff)
	}
	if got := s2.rack.Boots(); got != 1 {
		t.Errorf("Run (resume): the rack saw %d power-ons, want 1 (only the failed worker-3 is retried)", got)
	}
}

// TestProvisionerRunErrors checks what Run returns when it is interrupted
// and when a function beside the services fails.
func TestProvisionerRunErrors(t *testing.T) {
	t.Parallel()
	t.Run("interrupted", func(t *testing.T) {
		t.Parallel()
		s := newRackSetup(t, 2, nil)
		cfg := s.config(t.TempDir())
		cfg.Beside = nil // no rack: the nodes never boot
		cfg.Timeouts.DHCP = time.Minute
		p, err := New(cfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(500*time.Millisecond, cancel)
		rep, err := p.Run(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run after cancel = %v, want context.Canceled", err)
		}
		if rep == nil || rep.Unfinished != 2 {
			t.Errorf("Run after cancel: report %+v, want 2 unfinished nodes", rep)
		}
	})
	t.Run("beside fails", func(t *testing.T) {
		t.Parallel()
		s := newRackSetup(t, 2, nil)
		cfg := s.config(t.TempDir())
		cfg.Beside = []func(context.Context) error{func(context.Context) error { return errors.New("metrics port taken") }}
		p, err := New(cfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		_, err = p.Run(t.Context())
		if err == nil || !strings.Contains(err.Error(), "boot services: metrics port taken") {
			t.Errorf("Run with a failing Beside = %v, want boot services: metrics port taken", err)
		}
	})
	t.Run("no services", func(t *testing.T) {
		t.Parallel()
		if _, err := New(Config{StateDir: t.TempDir()}); err == nil {
			t.Error("New without Services = nil error, want one")
		}
	})
}

func phasesOf(rep *provision.Report) map[string]provision.Phase {
	m := map[string]provision.Phase{}
	for _, r := range rep.Nodes {
		m[r.Node] = r.Phase
	}
	return m
}
