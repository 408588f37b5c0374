package bmc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/bmc/redfishsim"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

// profileBMC starts a simulated BMC from a built-in vendor profile, with the
// profile's delays shortened so a test takes well under a second per step.
func profileBMC(t *testing.T, sim *redfishsim.Sim, profile string, poweredOn bool) (*redfishsim.BMC, inventory.Node) {
	t.Helper()
	return profileBMCModel(t, sim, profile, "", poweredOn)
}

// profileBMCModel is profileBMC with the Model replaced (when not empty).
func profileBMCModel(t *testing.T, sim *redfishsim.Sim, profile, model string, poweredOn bool) (*redfishsim.BMC, inventory.Node) {
	t.Helper()
	p, ok := redfishsim.LookupProfile(profile)
	if !ok {
		t.Fatalf("no profile %q", profile)
	}
	cfg := p.Config
	if model != "" {
		cfg.Model = model
	}
	if cfg.BootApplyDelay > 0 {
		cfg.BootApplyDelay = 300 * time.Millisecond
	}
	if cfg.TransitionDelay > 0 {
		cfg.TransitionDelay = 150 * time.Millisecond
	}
	cfg.PoweredOn = poweredOn
	return startBMC(t, sim, profile, cfg)
}

// profileConfig polls quickly and gives up after 3 s: ten times the
// profiles' shortened delays, so a loaded machine still sees them, and
// short enough for the lying ones.
func profileConfig() bmc.Config {
	return bmc.Config{
		ConnectTimeout: 5 * time.Second,
		OpTimeout:      5 * time.Second,
		VerifyTimeout:  3 * time.Second,
		Backoff:        []time.Duration{50 * time.Millisecond, 100 * time.Millisecond},
	}
}

// checkSessions fails the test when a BMC holds a session or saw a login
// without its logout.
func checkSessions(t *testing.T, sb *redfishsim.BMC) {
	t.Helper()
	st := sb.Stats()
	if sb.Sessions() != 0 || st.Logins != st.Logouts {
		t.Errorf("sessions after the run: %d open, %d logins, %d logouts; want every session closed", sb.Sessions(), st.Logins, st.Logouts)
	}
}

// readBack converts what the simulated BMC holds into the row's terms.
func readBack(b redfishsim.Boot, pending bool) bmc.BootOverride {
	o := bmc.BootOverride{FlagsRead: true, Pending: pending, Persistent: b.Enabled == "Continuous"}
	if b.Enabled != "Disabled" {
		o.Device = map[string]bmc.BootDevice{"Pxe": bmc.BootPXE, "Hdd": bmc.BootDisk, "Cd": bmc.BootCD}[b.Target]
	}
	o.Mode = map[string]bmc.BootMode{"UEFI": bmc.ModeUEFI, "Legacy": bmc.ModeLegacy}[b.Mode]
	return o
}

// TestProfileBootdev sets a one-time network boot on every vendor profile,
// then powers the node on. The row must say what the BMC holds (read back,
// not the request), fail where the node would not boot as asked, and the
// simulated host must then boot what the row said.
func TestProfileBootdev(t *testing.T) {
	t.Parallel()
	tests := []struct {
		profile string
		model   string // replaces the profile's model when set
		legacy  bool
		// wantRow is the BOOT column; wantErr a part of the error ("" none).
		wantRow string
		wantErr []string
		// wantBooted is what the host boots at the next power-on.
		wantBooted redfishsim.Booted
	}{
		{profile: "generic", wantRow: "pxe once uefi", wantBooted: redfishsim.Booted{Device: "Pxe", Mode: "UEFI"}},
		// The override reads back only after 300 ms: polled, not failed.
		{profile: "ilo5", wantRow: "pxe once uefi", wantBooted: redfishsim.Booted{Device: "Pxe", Mode: "UEFI"}},
		// 400 on the mode, target applied anyway, BIOS in Legacy: the row
		// says legacy and the node fails, with what to do. A model not in
		// the quirk table is caught by the BMC's answer...
		{profile: "idrac8", model: "PowerEdge R430", wantRow: "pxe once legacy",
			wantErr: []string{"asked for a uefi boot but the bmc holds legacy (it refused BootSourceOverrideMode: bmc error (HTTP 400: The property BootSourceOverrideMode is a read only property",
				"set the boot mode to UEFI in the server's BIOS setup, or boot this node in legacy mode (--legacy; inventory boot.firmware: bios)"},
			wantBooted: redfishsim.Booted{Device: "Pxe", Mode: "Legacy"}},
		// ... and one in it by the hint, with the same verdict.
		{profile: "idrac8", wantRow: "pxe once legacy",
			wantErr: []string{"asked for a uefi boot but the bmc holds legacy (BootSourceOverrideMode was not sent: the quirk table lists Dell Inc. PowerEdge R630 as refusing it)",
				"set the boot mode to UEFI in the server's BIOS setup"},
			wantBooted: redfishsim.Booted{Device: "Pxe", Mode: "Legacy"}},
		{profile: "idrac8", legacy: true, wantRow: "pxe once legacy", wantBooted: redfishsim.Booted{Device: "Pxe", Mode: "Legacy"}},
		// 405 on the system: the settings object takes it, pending.
		{profile: "megarac", wantRow: "pxe once uefi, pending until the next power-on or reset", wantBooted: redfishsim.Booted{Device: "Pxe", Mode: "UEFI"}},
		{profile: "lazy", wantRow: "pxe once uefi", wantBooted: redfishsim.Booted{Device: "Pxe", Mode: "UEFI"}},
		{profile: "minimal", wantRow: "pxe once uefi", wantBooted: redfishsim.Booted{Device: "Pxe", Mode: "UEFI"}},
		{profile: "openbmc", wantRow: "pxe once uefi", wantBooted: redfishsim.Booted{Device: "Pxe", Mode: "UEFI"}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%s/legacy=%v", tc.profile, tc.model, tc.legacy), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			sim := newSim(t)
			sb, n := profileBMCModel(t, sim, tc.profile, tc.model, false)
			res := bmc.Run(ctx, []inventory.Node{n}, bmc.RunConfig{Client: profileConfig()},
				bmc.BootStep(bmc.BootPXE, bmc.BootOptions{Legacy: tc.legacy}))
			r := res[0]
			if r.Boot == nil {
				t.Fatalf("bootdev pxe on %s: no boot override read back (err %v)", tc.profile, r.Err)
			}
			if got := r.Boot.String(); got != tc.wantRow {
				t.Errorf("bootdev pxe on %s: row says %q, want %q", tc.profile, got, tc.wantRow)
			}
			// The row is what the simulated BMC holds.
			held, pending := sb.PendingSettings()
			if !pending {
				held = sb.Boot()
			}
			if diff := cmp.Diff(readBack(held, pending), *r.Boot); diff != "" {
				t.Errorf("bootdev pxe on %s: row differs from what the BMC holds (-bmc +row):\n%s", tc.profile, diff)
			}
			if len(tc.wantErr) == 0 && r.Err != nil {
				t.Errorf("bootdev pxe on %s: %v", tc.profile, r.Err)
			}
			for _, w := range tc.wantErr {
				if r.Err == nil || !strings.Contains(r.Err.Error(), w) {
					t.Errorf("bootdev pxe on %s: error %v, want it to contain %q", tc.profile, r.Err, w)
				}
			}
			checkSessions(t, sb)

			// What the host boots next is what the row said.
			on := bmc.Run(ctx, []inventory.Node{n}, bmc.RunConfig{Client: profileConfig()}, bmc.PowerStep(bmc.ActionOn))
			if on[0].Err != nil {
				t.Fatalf("power on %s: %v", tc.profile, on[0].Err)
			}
			if diff := cmp.Diff([]redfishsim.Booted{tc.wantBooted}, sb.Booted()); diff != "" {
				t.Errorf("what the host booted on %s (-want +got):\n%s", tc.profile, diff)
			}
			checkSessions(t, sb)
		})
	}
}

// TestProfilePower runs reset and cycle on running nodes and reset on a node
// that is off, on every profile. A row may say ok only when the BMC showed
// the restart; it says "sent, not verifiable" where nothing can show it,
// fails where the evidence shows nothing happened, and a reset of a node
// that is off fails with one message without sending anything.
func TestProfilePower(t *testing.T) {
	t.Parallel()
	const poweredOff = "the node is powered off: reset restarts a running node; use power on (or power cycle, which turns an off node on)"
	tests := []struct {
		profile string
		action  bmc.PowerAction
		on      bool
		// wantStatus is ok, unverified or failed; wantErr part of the error;
		// wantEvidence the start of the row's evidence ("" any).
		wantStatus   string
		wantErr      string
		wantEvidence string
		// wantSent are the reset types the BMC received; wantBoots how many
		// times the host (re)started.
		wantSent  []string
		wantBoots int
	}{
		{profile: "generic", action: bmc.ActionReset, on: true, wantStatus: "ok", wantSent: []string{"ForceRestart"}, wantBoots: 1},
		{profile: "generic", action: bmc.ActionCycle, on: true, wantStatus: "ok", wantSent: []string{"PowerCycle"}, wantBoots: 1},
		{profile: "ilo5", action: bmc.ActionReset, on: true, wantStatus: "unverified", wantSent: []string{"ForceRestart"}, wantBoots: 1},
		{profile: "ilo5", action: bmc.ActionCycle, on: true, wantStatus: "ok", wantSent: []string{"ForceOff", "On"}, wantBoots: 1},
		{profile: "idrac8", action: bmc.ActionReset, on: true, wantStatus: "ok", wantSent: []string{"ForceRestart"}, wantBoots: 1},
		{profile: "idrac8", action: bmc.ActionCycle, on: true, wantStatus: "ok", wantSent: []string{"ForceOff", "On"}, wantBoots: 1},
		{profile: "megarac", action: bmc.ActionReset, on: true, wantStatus: "ok", wantSent: []string{"ForceRestart"}, wantBoots: 1},
		{profile: "lazy", action: bmc.ActionReset, on: true, wantStatus: "failed", wantSent: []string{"ForceRestart"},
			wantErr: "bmc accepted ForceRestart but shows no restart after 3s (LastResetTime still "},
		{profile: "lazy", action: bmc.ActionCycle, on: true, wantStatus: "failed", wantSent: []string{"PowerCycle"},
			wantErr: "bmc accepted PowerCycle but shows no restart after 3s"},
		{profile: "minimal", action: bmc.ActionReset, on: true, wantStatus: "unverified", wantSent: []string{"ForceRestart"}, wantBoots: 1},
		{profile: "minimal", action: bmc.ActionCycle, on: true, wantStatus: "ok", wantSent: []string{"ForceOff", "On"}, wantBoots: 1},
		// LastResetTime is the chassis's and stays put on a warm restart:
		// BootProgress shows it.
		{profile: "openbmc", action: bmc.ActionReset, on: true, wantStatus: "ok", wantEvidence: "BootProgress ", wantSent: []string{"ForceRestart"}, wantBoots: 1},
		// PowerCycle is listed only in the ActionInfo (TestActionInfoResetTypes
		// has the list without it).
		{profile: "openbmc", action: bmc.ActionCycle, on: true, wantStatus: "ok", wantEvidence: "LastResetTime moved to ", wantSent: []string{"PowerCycle"}, wantBoots: 1},
	}
	for _, p := range redfishsim.Profiles() {
		tests = append(tests, struct {
			profile      string
			action       bmc.PowerAction
			on           bool
			wantStatus   string
			wantErr      string
			wantEvidence string
			wantSent     []string
			wantBoots    int
		}{profile: p.Name, action: bmc.ActionReset, wantStatus: "failed", wantErr: "power reset " + p.Name + " (bmc 127.0.0.1:"})
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%s/on=%v", tc.profile, tc.action, tc.on), func(t *testing.T) {
			t.Parallel()
			sim := newSim(t)
			sb, n := profileBMC(t, sim, tc.profile, tc.on)
			r := bmc.Run(context.Background(), []inventory.Node{n}, bmc.RunConfig{Client: profileConfig()}, bmc.PowerStep(tc.action))[0]
			if got := r.Status(); got != tc.wantStatus {
				t.Errorf("power %s on %s: status %s (err %v, unverified %q), want %s", tc.action, tc.profile, got, r.Err, r.Unverified, tc.wantStatus)
			}
			if tc.wantErr != "" && (r.Err == nil || !strings.Contains(r.Err.Error(), tc.wantErr)) {
				t.Errorf("power %s on %s: error %v, want it to contain %q", tc.action, tc.profile, r.Err, tc.wantErr)
			}
			if !strings.HasPrefix(r.Evidence, tc.wantEvidence) {
				t.Errorf("power %s on %s: evidence %q, want it to start with %q", tc.action, tc.profile, r.Evidence, tc.wantEvidence)
			}
			if !tc.on && (r.Err == nil || !strings.HasSuffix(r.Err.Error(), poweredOff)) {
				t.Errorf("power reset on an off %s: error %v, want it to end in %q", tc.profile, r.Err, poweredOff)
			}
			if tc.wantStatus == "unverified" && !strings.Contains(r.Unverified, "reset sent, not verifiable") {
				t.Errorf("power reset on %s: unverified %q, want it to say sent, not verifiable", tc.profile, r.Unverified)
			}
			if diff := cmp.Diff(tc.wantSent, sb.Stats().Resets); diff != "" {
				t.Errorf("power %s on %s: reset types the BMC received (-want +got):\n%s", tc.action, tc.profile, diff)
			}
			if got := len(sb.Booted()); got != tc.wantBoots {
				t.Errorf("power %s on %s: the host started %d times, want %d", tc.action, tc.profile, got, tc.wantBoots)
			}
			// The row's power is what the BMC reports (a transition in
			// progress reads as it is).
			if want := bmc.PowerState(strings.ToLower(sb.PowerState())); bmc.PowerState(strings.TrimPrefix(string(r.Power), "powering-")) != want {
				t.Errorf("power %s on %s: row power %q, BMC %q", tc.action, tc.profile, r.Power, want)
			}
			checkSessions(t, sb)
		})
	}
}

// TestExtendedInfo: a BMC whose error message is a generic "see
// ExtendedInfo" has its ExtendedInfo text shown, and a session limit said
// in it is named as such.
func TestExtendedInfo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim := newSim(t)
	sb, n := profileBMC(t, sim, "idrac8", false)
	var holders []*bmc.Client
	for range 8 {
		c, err := bmc.Dial(ctx, n.Name, n.BMC, profileConfig())
		if err != nil {
			t.Fatalf("Dial while filling the session table: %v", err)
		}
		holders = append(holders, c)
	}
	r := bmc.Run(ctx, []inventory.Node{n}, bmc.RunConfig{Client: profileConfig()}, bmc.StatusStep())[0]
	want := "connect: log in: session limit reached (HTTP 503: The maximum number of user sessions is reached. (Close one or more sessions and retry the operation))"
	if r.Err == nil || !strings.Contains(r.Err.Error(), want) {
		t.Errorf("status with every session taken: %v, want %q", r.Err, want)
	}
	if r.Err != nil && strings.Contains(r.Err.Error(), "general error") {
		t.Errorf("the error shows the generic message: %v", r.Err)
	}
	for _, c := range holders {
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	// A generic 405/400 elsewhere shows its ExtendedInfo too.
	sb.SetFaults(redfishsim.Faults{ErrorStatus: 500})
	r = bmc.Run(ctx, []inventory.Node{n}, bmc.RunConfig{Client: profileConfig()}, bmc.StatusStep())[0]
	if want := "bmc error (HTTP 500: The request failed due to an internal service error.)"; r.Err == nil || !strings.Contains(r.Err.Error(), want) {
		t.Errorf("status on a failing BMC: %v, want %q", r.Err, want)
	}
	checkSessions(t, sb)
}

// TestProfileSessionsOnCancel interrupts a run (as Ctrl-C does) at several
// points of a bootdev-and-cycle sequence on every profile: whatever was
// interrupted, every session opened is closed.
func TestProfileSessionsOnCancel(t *testing.T) {
	t.Parallel()
	for _, p := range redfishsim.Profiles() {
		for _, after := range []time.Duration{5 * time.Millisecond, 40 * time.Millisecond, 150 * time.Millisecond, 400 * time.Millisecond} {
			t.Run(fmt.Sprintf("%s/after=%s", p.Name, after), func(t *testing.T) {
				t.Parallel()
				sim := newSim(t)
				sb, n := profileBMC(t, sim, p.Name, true)
				sb.SetFaults(redfishsim.Faults{Latency: 10 * time.Millisecond})
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(after, cancel)
				cfg := profileConfig()
				cfg.VerifyTimeout = 5 * time.Second
				bmc.Run(ctx, []inventory.Node{n, n}, bmc.RunConfig{Parallel: 2, Client: cfg},
					bmc.BootStep(bmc.BootPXE, bmc.BootOptions{Legacy: p.Config.FirmwareMode == "Legacy"}), bmc.PowerStep(bmc.ActionCycle))
				cancel()
				checkSessions(t, sb)
			})
		}
	}
}
