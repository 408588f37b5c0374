package bmc_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/bmc/ipmisim"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

// startIPMISim runs OpenIPMI's ipmi_sim on a free UDP port of 127.0.0.1 and
// returns it and a node whose BMC it is; it is stopped when the test ends.
func startIPMISim(t *testing.T) (*ipmisim.Sim, inventory.Node) {
	t.Helper()
	testenv.RequireCommands(t, "ipmi_sim", "ipmitool")
	dir := t.TempDir()
	sim, err := ipmisim.Start(context.Background(), ipmisim.Config{Dir: dir, Password: testPassword})
	if err != nil {
		t.Fatalf("ipmisim.Start: %v", err)
	}
	t.Cleanup(func() {
		sim.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "ipmi_sim.log"))
			t.Logf("ipmi_sim output:\n%s", b)
		}
	})
	n := inventory.Node{Name: "ipmi-01", BMC: inventory.BMC{
		URL: sim.URL(), Protocol: inventory.ProtocolIPMI,
		Host: "127.0.0.1", Port: uint16(sim.Port()), Username: "admin", Password: passwordFile(t, testPassword),
	}}
	return sim, n
}

// TestIPMI drives a real IPMI BMC (ipmi_sim) through bmclib's ipmitool
// provider: status, one-time PXE, on, cycle, off, and a refused password.
func TestIPMI(t *testing.T) {
	sim, node := startIPMISim(t)
	ctx := context.Background()
	cfg := bmc.Config{Backoff: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}, VerifyTimeout: 10 * time.Second}
	c, err := bmc.Dial(ctx, node.Name, node.BMC, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close(ctx)
	if diff := cmp.Diff(bmc.Info{Protocol: "ipmi", Vendor: "MontaVista Software, Inc."}, c.Info()); diff != "" {
		t.Errorf("Info() mismatch (-want +got):\n%s", diff)
	}
	if st, err := c.PowerState(ctx); err != nil || st != bmc.PowerOff {
		t.Errorf("PowerState() = %q, %v, want off", st, err)
	}
	if err := c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{}); err != nil {
		t.Fatalf("SetBootDevice(pxe): %v", err)
	}
	if got, err := sim.BootDevice(); err != nil || got != "pxe" {
		t.Errorf("chassis boot device after SetBootDevice(pxe) = %q, %v, want pxe", got, err)
	}
	if ov, err := c.BootOverride(ctx); err != nil || ov.Device != bmc.BootPXE {
		t.Errorf("BootOverride() = %v, %v, want device pxe", ov, err)
	}
	if err := c.SetPower(ctx, bmc.ActionOn); err != nil {
		t.Fatalf("SetPower(on): %v", err)
	}
	if err := c.SetPower(ctx, bmc.ActionCycle); err != nil {
		t.Fatalf("SetPower(cycle): %v", err)
	}
	if err := c.SetPower(ctx, bmc.ActionOff); err != nil {
		t.Fatalf("SetPower(off): %v", err)
	}
	if st, err := c.PowerState(ctx); err != nil || st != bmc.PowerOff {
		t.Errorf("PowerState() after off = %q, %v, want off", st, err)
	}
	want := []string{"set boot pxe", "set power 1", "set power 0", "set power 1", "set power 0"}
	log, err := sim.Log()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, log); diff != "" {
		t.Errorf("what the BMC told the chassis (-want +got):\n%s", diff)
	}

	bad := node
	bad.BMC.Password = passwordFile(t, "wrong-password")
	res := bmc.Run(ctx, []inventory.Node{bad, node}, bmc.RunConfig{Client: cfg}, bmc.StatusStep())
	if res[1].Err != nil || res[1].Power != bmc.PowerOff {
		t.Errorf("Run: good node = %q, %v, want off", res[1].Power, res[1].Err)
	}
	if res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "power status ipmi-01 (bmc "+bad.BMC.Addr()+"): connect: log in:") ||
		!strings.Contains(res[0].Err.Error(), "Unable to establish IPMI v2 / RMCP+ session") {
		t.Errorf("Run with a wrong password: error = %v, want a one-line log in failure", res[0].Err)
	}
	t.Logf("wrong password: %v", res[0].Err)
	if res[0].Err != nil && strings.Contains(res[0].Err.Error(), "wrong-password") {
		t.Errorf("the password leaked into the error: %v", res[0].Err)
	}
}

// TestIPMIDeadBMC: an IPMI BMC that never answers (nothing on the UDP port)
// costs the connect timeout, not ipmitool's own retries.
func TestIPMIDeadBMC(t *testing.T) {
	testenv.RequireCommands(t, "ipmitool")
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() // bound but never read: the requests go unanswered
	port := c.LocalAddr().(*net.UDPAddr).Port
	n := inventory.Node{Name: "ipmi-dead", BMC: inventory.BMC{
		URL: "ipmi://" + c.LocalAddr().String(), Protocol: inventory.ProtocolIPMI,
		Host: "127.0.0.1", Port: uint16(port), Username: "admin", Password: passwordFile(t, testPassword),
	}}
	res := bmc.Run(context.Background(), []inventory.Node{n}, bmc.RunConfig{Client: bmc.Config{ConnectTimeout: 500 * time.Millisecond}}, bmc.StatusStep())
	want := "power status ipmi-dead (bmc " + n.BMC.Addr() + "): connect: no answer within 500ms"
	if res[0].Err == nil || res[0].Err.Error() != want {
		t.Errorf("Run against a silent IPMI port: error = %v, want %q", res[0].Err, want)
	}
}

// TestIPMIBootNotApplied: a BMC that acknowledges "chassis bootdev pxe" but
// keeps booting from disk is caught by reading boot parameter 5 back.
func TestIPMIBootNotApplied(t *testing.T) {
	testenv.RequireCommands(t, "ipmi_sim", "ipmitool")
	dir := t.TempDir()
	script := filepath.Join(dir, "stubborn.sh")
	// Answers every get, ignores every set.
	body := "#!/bin/sh\n[ \"$1\" = get ] || exit 0\nshift\nfor n in \"$@\"; do case $n in power) echo power:0;; boot) echo boot:default;; esac; done\n"
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	sim, err := ipmisim.Start(context.Background(), ipmisim.Config{Dir: dir, Password: testPassword, ChassisControl: script})
	if err != nil {
		t.Fatalf("ipmisim.Start: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	n := inventory.Node{Name: "ipmi-02", BMC: inventory.BMC{
		URL: sim.URL(), Protocol: inventory.ProtocolIPMI,
		Host: "127.0.0.1", Port: uint16(sim.Port()), Username: "admin", Password: passwordFile(t, testPassword),
	}}
	cfg := bmc.Config{VerifyTimeout: 500 * time.Millisecond, Backoff: []time.Duration{100 * time.Millisecond}}
	res := bmc.Run(context.Background(), []inventory.Node{n}, bmc.RunConfig{Client: cfg}, bmc.BootStep(bmc.BootPXE, bmc.BootOptions{}))
	want := "set boot device pxe ipmi-02 (bmc " + n.BMC.Addr() + "): bmc accepted the boot override but reads back disk (device only: once/persistent and mode not readable), not pxe once uefi, after 500ms"
	if res[0].Err == nil || res[0].Err.Error() != want {
		t.Errorf("Run(bootdev pxe) on a BMC that ignores it: error = %v, want %q", res[0].Err, want)
	}
}
