package simrack_test

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/servetest"
	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/pxe"
	"github.com/slipway-dev/slipway/pkg/simrack"
)

// TestMachinesBootFromTheBootServices powers two simulated machines on
// through their Redfish simulators with pkg/bmc, exactly as up does: the
// healthy one goes through real DHCP, TFTP and HTTP to its join, the one
// with FaultNoPXE never asks for DHCP.
func TestMachinesBootFromTheBootServices(t *testing.T) {
	dir := t.TempDir()
	tftpRoot, assets := filepath.Join(dir, "ipxe"), filepath.Join(dir, "assets")
	for p, n := range map[string]int{filepath.Join(tftpRoot, "snponly.efi"): 40000, filepath.Join(tftpRoot, "undionly.kpxe"): 30000,
		filepath.Join(assets, "vmlinuz"): 1000, filepath.Join(assets, "initrd.img"): 2000} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, bytes.Repeat([]byte{1}, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	// Bind first, hand over: the DHCP server and the rack's relay share a port.
	dhcp := servetest.SameUDPPort(t, "127.0.0.1", "127.0.0.2")
	tftpConn, httpLn := servetest.ListenUDP(t, "127.0.0.1:0"), servetest.Listen(t, "127.0.0.1:0")
	lo := netip.MustParseAddr("127.0.0.1")
	node := func(name string, i byte, fw inventory.Firmware) inventory.Node {
		return inventory.Node{Name: name, Role: inventory.RoleWorker,
			MAC: inventory.HardwareAddr(net.HardwareAddr{2, 0, 0, 0, 0, i}), IP: netip.AddrFrom4([4]byte{127, 20, 0, i}),
			Boot: inventory.Boot{Firmware: fw, Kernel: "vmlinuz", Initrd: "initrd.img"}}
	}
	inv := &inventory.Inventory{
		Network: inventory.Network{Interface: "lo", Address: lo, Subnet: netip.MustParsePrefix("127.0.0.0/8"),
			DHCPMode: inventory.DHCPAuthoritative, LeaseTime: time.Hour},
		Nodes: []inventory.Node{node("good", 1, inventory.FirmwareUEFI), node("legacy", 2, inventory.FirmwareBIOS), node("nopxe", 3, inventory.FirmwareUEFI)},
	}
	rack, err := simrack.New(simrack.Config{Nodes: inv.Nodes, Relay: dhcp[1],
		DHCPServer: dhcp[0].LocalAddr().(*net.UDPAddr).AddrPort(), TFTPServer: tftpConn.LocalAddr().(*net.UDPAddr).AddrPort(),
		Firmware: 20 * time.Millisecond, OS: 30 * time.Millisecond, Faults: map[string]simrack.Fault{"nopxe": simrack.FaultNoPXE},
		Password: "secret", PasswordRef: inventory.SecretRef{Source: "file", Name: pw}})
	if err != nil {
		t.Fatalf("simrack.New: %v", err)
	}
	defer rack.Close()
	for i := range inv.Nodes {
		inv.Nodes[i].BMC, _ = rack.BMC(inv.Nodes[i].Name)
	}
	svc, err := pxe.New(pxe.Config{Inventory: inv, TFTPRoot: tftpRoot, AssetDir: assets, SkipInterfaceCheck: true,
		Listeners: pxe.Listeners{DHCP: dhcp[0], TFTP: tftpConn, HTTP: httpLn}})
	if err != nil {
		t.Fatalf("pxe.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	servetest.Start(t, svc)
	go rack.Run(ctx)
	for _, n := range inv.Nodes {
		c, err := bmc.New(n.Name, n.BMC, bmc.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{Legacy: n.Boot.Firmware == inventory.FirmwareBIOS}); err != nil {
			t.Fatalf("set pxe boot on %s: %v", n.Name, err)
		}
		if err := c.SetPower(ctx, bmc.ActionOn); err != nil {
			t.Fatalf("power on %s: %v", n.Name, err)
		}
		c.Close(ctx)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		good, _ := rack.Ready(ctx, "good")
		legacy, _ := rack.Ready(ctx, "legacy")
		if good && legacy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("machines not joined within 20s: %+v", rack.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ok, _ := rack.Ready(ctx, "nopxe"); ok {
		t.Errorf("Ready(nopxe) = true, want false: the machine never PXE-boots")
	}
	for _, s := range rack.Stats() {
		if s.Node != "nopxe" && (s.Stage != "joined" || s.Took <= 0) {
			t.Errorf("machine %s: stage %q took %s, want joined", s.Node, s.Stage, s.Took)
		}
		if s.Node == "nopxe" && s.Stage != "no network boot (fault)" {
			t.Errorf("machine nopxe: stage %q, want the fault", s.Stage)
		}
	}
	if got := rack.Boots(); got != 3 {
		t.Errorf("Boots() = %d, want 3 network boots started", got)
	}
	if _, err := simrack.ParseFault("explode"); err == nil {
		t.Error(`ParseFault("explode") = nil error, want one naming the faults`)
	}
}
