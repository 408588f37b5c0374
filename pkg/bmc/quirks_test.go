package bmc_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/bmc/redfishsim"
)

// TestQuirkPowerCycle: where a BMC has no PowerCycle (by the quirk table or
// by its advertised reset types), or reports nothing that would prove a
// restart, the Client cycles by itself with ForceOff then On; otherwise it
// sends one PowerCycle and waits for the evidence.
func TestQuirkPowerCycle(t *testing.T) {
	t.Parallel()
	noCycle := []string{"On", "ForceOff", "GracefulShutdown", "ForceRestart", "GracefulRestart", "Nmi"}
	tests := []struct {
		name   string
		sim    redfishsim.BMCConfig
		quirks []bmc.Quirk
		want   []string
		wantQ  []string
	}{
		{name: "PowerCycle advertised, LastResetTime reported", sim: redfishsim.BMCConfig{Manufacturer: "Supermicro", LastResetTime: true},
			quirks: bmc.DefaultQuirks(), want: []string{"PowerCycle"}},
		{name: "PowerCycle advertised, no reboot evidence", sim: redfishsim.BMCConfig{Manufacturer: "Supermicro"},
			quirks: bmc.DefaultQuirks(), want: []string{"ForceOff", "On"}},
		{name: "PowerCycle missing from the allowable values",
			sim:    redfishsim.BMCConfig{Manufacturer: "Contoso", ResetTypes: noCycle},
			quirks: bmc.DefaultQuirks(), want: []string{"ForceOff", "On"}, wantQ: []string{"no PowerCycle"}},
		{name: "Dell in the quirk table, iDRAC reset types",
			sim:    redfishsim.BMCConfig{Manufacturer: "Dell Inc.", Model: "PowerEdge R760", ResetTypes: noCycle},
			quirks: bmc.DefaultQuirks(), want: []string{"ForceOff", "On"}, wantQ: []string{"no PowerCycle"}},
		{name: "quirk table entry wins over advertised PowerCycle",
			sim:    redfishsim.BMCConfig{Manufacturer: "Dell Inc.", Model: "PowerEdge R760"},
			quirks: bmc.DefaultQuirks(), want: []string{"ForceOff", "On"}, wantQ: []string{"no PowerCycle"}},
		{name: "empty quirk table, PowerCycle advertised",
			sim:    redfishsim.BMCConfig{Manufacturer: "Dell Inc.", Model: "PowerEdge R760", BootProgress: true},
			quirks: []bmc.Quirk{}, want: []string{"PowerCycle"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			sim := newSim(t)
			tc.sim.PoweredOn = true
			var events []string
			tc.sim.OnPower = func(_ context.Context, ev redfishsim.PowerEvent) error {
				events = append(events, ev.Action)
				return nil
			}
			sb, n := startBMC(t, sim, "n1", tc.sim)
			cfg := fastConfig()
			cfg.Quirks = tc.quirks
			c, err := bmc.Dial(ctx, n.Name, n.BMC, cfg)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close(ctx)
			if diff := cmp.Diff(tc.wantQ, c.Info().Quirks); diff != "" {
				t.Errorf("Info().Quirks mismatch (-want +got):\n%s", diff)
			}
			if err := c.SetPower(ctx, bmc.ActionCycle); err != nil {
				t.Fatalf("SetPower(cycle): %v", err)
			}
			if diff := cmp.Diff(tc.want, sb.Stats().Resets); diff != "" {
				t.Errorf("reset types sent mismatch (-want +got):\n%s", diff)
			}
			// Either way the machine went off and on again.
			if diff := cmp.Diff([]string{"off", "on"}, events); diff != "" {
				t.Errorf("power events mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestQuirkNoBootMode: a BMC that refuses BootSourceOverrideMode gets a
// PATCH without it when the quirk table names it; without an entry bmclib's
// first PATCH is refused before its retry.
func TestQuirkNoBootMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		model        string
		wantRejected int
		wantQ        []string
	}{
		{name: "in the quirk table", model: "ProLiant DL160 Gen10", wantRejected: 0, wantQ: []string{"no BootSourceOverrideMode", "no PowerCycle"}},
		{name: "not in the quirk table", model: "ProLiant DL380 Gen10", wantRejected: 1, wantQ: []string{"no PowerCycle"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			sim := newSim(t)
			sb, n := startBMC(t, sim, "n1", redfishsim.BMCConfig{Manufacturer: "HPE", Model: tc.model, RejectBootMode: true})
			c, err := bmc.Dial(ctx, n.Name, n.BMC, fastConfig())
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close(ctx)
			if diff := cmp.Diff(tc.wantQ, c.Info().Quirks); diff != "" {
				t.Errorf("Info().Quirks mismatch (-want +got):\n%s", diff)
			}
			if err := c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{}); err != nil {
				t.Fatalf("SetBootDevice(pxe): %v", err)
			}
			st := sb.Stats()
			if st.RejectedBootPatches != tc.wantRejected || st.BootPatches != 1 {
				t.Errorf("boot PATCHes: rejected %d accepted %d, want %d 1", st.RejectedBootPatches, st.BootPatches, tc.wantRejected)
			}
			if got := sb.Boot(); got.Target != "Pxe" || got.Enabled != "Once" {
				t.Errorf("simulator boot = %+v, want Pxe Once", got)
			}
		})
	}
}

// TestVerifyWaitsForTransition: a BMC that reports PoweringOn for a while is
// polled until it reads On.
func TestVerifyWaitsForTransition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim := newSim(t)
	sb, n := startBMC(t, sim, "n1", redfishsim.BMCConfig{TransitionDelay: 150 * time.Millisecond})
	cfg := fastConfig()
	cfg.VerifyTimeout = 5 * time.Second
	c, err := bmc.Dial(ctx, n.Name, n.BMC, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close(ctx)
	if err := c.SetPower(ctx, bmc.ActionOn); err != nil {
		t.Fatalf("SetPower(on): %v", err)
	}
	st, err := c.PowerState(ctx)
	if err != nil || st != bmc.PowerOn {
		t.Errorf("PowerState() after SetPower(on) = %q, %v, want on", st, err)
	}
	// Login, probe (2), the on check inside bmclib and the reset, then
	// at least two polls: one PoweringOn, one On.
	if got := sb.Stats().Requests; got < 8 {
		t.Errorf("requests = %d, want at least 8 (the Client must have polled through PoweringOn)", got)
	}
}
