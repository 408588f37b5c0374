package ipmisim_test

import (
	"context"
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
