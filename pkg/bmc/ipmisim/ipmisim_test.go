package ipmisim_test

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/bmc/ipmisim"
)

func TestStartClose(t *testing.T) {
	testenv.RequireCommands(t, "ipmi_sim")
	if _, err := ipmisim.Start(context.Background(), ipmisim.Config{Dir: t.TempDir()}); err == nil {
		t.Errorf("Start without a password = nil error, want one")
	}
	sim, err := ipmisim.Start(context.Background(), ipmisim.Config{Dir: t.TempDir(), Password: "pw"})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if c, err := net.ListenPacket("udp4", sim.Addr()); err == nil {
		c.Close()
		t.Errorf("%s is free while ipmi_sim runs, want it taken", sim.Addr())
	}
	if on, err := sim.Power(); err != nil || on {
		t.Errorf("Power() = %v, %v, want off", on, err)
	}
	if err := sim.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := sim.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	c, err := net.ListenPacket("udp4", sim.Addr())
	if err != nil {
		t.Errorf("%s still taken after Close: %v", sim.Addr(), err)
	} else {
		c.Close()
	}
}

// TestPortTaken: when another process holds the port ipmi_sim is told to
// use, Start fails and says so; it never mistakes the other socket for
// ipmi_sim's (the old readiness check, "the port is taken", did).
func TestPortTaken(t *testing.T) {
	testenv.RequireCommands(t, "ipmi_sim")
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.LocalAddr().(*net.UDPAddr).Port
	sim, err := ipmisim.Start(context.Background(), ipmisim.Config{Dir: t.TempDir(), Password: "pw", Port: port})
	if err == nil {
		sim.Close()
		t.Fatalf("Start on a port another process holds = nil error, want one")
	}
	if want := fmt.Sprintf("start ipmi_sim on 127.0.0.1:%d: port taken (Unable to bind to LAN port: Address already in use)", port); err.Error() != want {
		t.Errorf("Start on a taken port: %v, want %q", err, want)
	}
}
