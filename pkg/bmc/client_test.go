package bmc_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/bmc/redfishsim"
)

// TestRedfishPowerAndBoot drives the Redfish backend (gofish) against the
// simulator over verified HTTPS: status, on, one-time PXE read back, off,
// and a single session that is logged out.
func TestRedfishPowerAndBoot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim := newSim(t)
	var events []redfishsim.PowerEvent
	sb, n := startBMC(t, sim, "node-01", redfishsim.BMCConfig{
		TLS: true, Manufacturer: "Supermicro", Model: "SYS-221H-TNR",
		OnPower: func(_ context.Context, ev redfishsim.PowerEvent) error { events = append(events, ev); return nil },
	})

	c, err := bmc.Dial(ctx, n.Name, n.BMC, fastConfig())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if diff := cmp.Diff(bmc.Info{Protocol: "redfish", Vendor: "Supermicro", Model: "SYS-221H-TNR"}, c.Info()); diff != "" {
		t.Errorf("Info() mismatch (-want +got):\n%s", diff)
	}
	if st, err := c.PowerState(ctx); err != nil || st != bmc.PowerOff {
		t.Errorf("PowerState() = %q, %v, want off", st, err)
	}
	if err := c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{}); err != nil {
		t.Fatalf("SetBootDevice(pxe once uefi): %v", err)
	}
	if got, want := sb.Boot(), (redfishsim.Boot{Target: "Pxe", Enabled: "Once", Mode: "UEFI"}); got != want {
		t.Errorf("simulator boot after SetBootDevice(pxe) = %+v, want %+v", got, want)
	}
	if err := c.SetPower(ctx, bmc.ActionOn); err != nil {
		t.Fatalf("SetPower(on): %v", err)
	}
	if got := sb.PowerState(); got != redfishsim.PowerOn {
		t.Errorf("simulator power after SetPower(on) = %s, want On", got)
	}
	// The one-time override was consumed by that boot.
	ov, err := c.BootOverride(ctx)
	if err != nil || ov.Device != "" {
		t.Errorf("BootOverride() after boot = %v, %v, want none", ov, err)
	}
	if err := c.SetBootDevice(ctx, bmc.BootDisk, bmc.BootOptions{Persistent: true, Legacy: true}); err != nil {
		t.Fatalf("SetBootDevice(disk persistent legacy): %v", err)
	}
	if got, want := sb.Boot(), (redfishsim.Boot{Target: "Hdd", Enabled: "Continuous", Mode: "Legacy"}); got != want {
		t.Errorf("simulator boot = %+v, want %+v", got, want)
	}
	if err := c.SetPower(ctx, bmc.ActionOff); err != nil {
		t.Fatalf("SetPower(off): %v", err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st := sb.Stats()
	if st.Logins != 1 || st.Logouts != 1 || sb.Sessions() != 0 {
		t.Errorf("sessions: logins %d logouts %d open %d, want 1 1 0", st.Logins, st.Logouts, sb.Sessions())
	}
	wantEvents := []redfishsim.PowerEvent{
		{BMC: "node-01", Action: "on", Boot: redfishsim.Boot{Target: "Pxe", Enabled: "Once", Mode: "UEFI"}},
		{BMC: "node-01", Action: "off"},
	}
	if diff := cmp.Diff(wantEvents, events); diff != "" {
		t.Errorf("OnPower events mismatch (-want +got):\n%s", diff)
	}
}

// TestSessionExpiry: when the BMC drops the session (timeout, BMC restart)
// the Client logs in again once and the call succeeds.
func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim := newSim(t)
	sb, n := startBMC(t, sim, "n1", redfishsim.BMCConfig{})
	c, err := bmc.Dial(ctx, n.Name, n.BMC, fastConfig())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close(ctx)
	sb.ExpireSessions()
	if err := c.SetPower(ctx, bmc.ActionOn); err != nil {
		t.Fatalf("SetPower(on) after the session expired: %v", err)
	}
	if got := sb.Stats().Logins; got != 2 {
		t.Errorf("logins = %d, want 2 (one login again)", got)
	}
	// A BMC that now refuses the credentials fails once, without a loop.
	sb.ExpireSessions()
	sb.SetFaults(redfishsim.Faults{RejectCredentials: true})
	err = c.SetPower(ctx, bmc.ActionOff)
	if err == nil || !strings.Contains(err.Error(), "log in again: log in: credentials refused (HTTP 401") {
		t.Errorf("SetPower(off) with refused credentials = %v, want a log in again failure", err)
	}
	if got := sb.Stats().Logins; got != 2 {
		t.Errorf("logins = %d after a refused login, want still 2", got)
	}
}
