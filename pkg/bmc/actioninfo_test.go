package bmc_test

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/bmc/redfishsim"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

// TestActionInfoResetTypes runs power cycle on running nodes of the openbmc
// profile, whose Reset action lists its reset types only in the
// ResetActionInfo resource its @Redfish.ActionInfo names (bmcweb). Where
// that list lacks PowerCycle the node is cycled by hand (ForceOff, confirm
// off, On, confirm on) and PowerCycle is never sent; where it lists
// PowerCycle (and the BMC reports LastResetTime and BootProgress, so the
// restart can be seen) one PowerCycle is sent. An ActionInfo that cannot
// be read leaves the reset types not advertised, said once in the debug
// log, and does not fail the command.
func TestActionInfoResetTypes(t *testing.T) {
	t.Parallel()
	withoutCycle := func(types []string) []string {
		return slices.DeleteFunc(slices.Clone(types), func(s string) bool { return s == "PowerCycle" })
	}
	tests := []struct {
		name string
		// listed replaces the ResetTypes the ActionInfo lists (nil: the
		// profile's, PowerCycle included).
		listed       func([]string) []string
		actionInfoSt int // Faults.ActionInfoStatus
		// wantStatus is ok or failed; wantEvidence the start of the
		// row's evidence, wantErr part of the error.
		wantStatus   string
		wantEvidence string
		wantErr      string
		// wantSent are the reset types the BMC accepted; wantEvents the
		// power changes the host went through.
		wantSent   []string
		wantEvents []string
		wantQuirks []string
		// wantLog is a debug line the run must log exactly once ("" none).
		wantLog string
	}{
		{name: "ActionInfo without PowerCycle", listed: withoutCycle,
			wantStatus: "ok", wantEvidence: "off then on read back",
			wantSent: []string{"ForceOff", "On"}, wantEvents: []string{"off", "on"}, wantQuirks: []string{"no PowerCycle"}},
		{name: "ActionInfo with PowerCycle",
			wantStatus: "ok", wantEvidence: "LastResetTime moved to ",
			wantSent: []string{"PowerCycle"}, wantEvents: []string{"off", "on"}},
		// Unreadable: today's behaviour, every type taken as allowed.
		{name: "ActionInfo unreadable, PowerCycle allowed", actionInfoSt: 500,
			wantStatus: "ok", wantEvidence: "LastResetTime moved to ",
			wantSent: []string{"PowerCycle"}, wantEvents: []string{"off", "on"},
			wantLog: `msg="bmc reset action info unreadable; its reset types are taken as not advertised" node=openbmc`},
		// ... and where the BMC then refuses PowerCycle, its answer is
		// the error: nothing changed, nothing claimed.
		{name: "ActionInfo unreadable, PowerCycle refused", listed: withoutCycle, actionInfoSt: 500,
			wantStatus: "failed", wantErr: "The action Reset was submitted with the invalid parameter PowerCycle.",
			wantLog: `msg="bmc reset action info unreadable; its reset types are taken as not advertised" node=openbmc`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, ok := redfishsim.LookupProfile("openbmc")
			if !ok {
				t.Fatal(`LookupProfile("openbmc"): no such profile`)
			}
			cfg := p.Config
			if tc.listed != nil {
				cfg.ResetTypes = tc.listed(cfg.ResetTypes)
			}
			cfg.PoweredOn = true
			cfg.Faults.ActionInfoStatus = tc.actionInfoSt
			var mu sync.Mutex
			var events []string
			cfg.OnPower = func(_ context.Context, ev redfishsim.PowerEvent) error {
				mu.Lock()
				defer mu.Unlock()
				events = append(events, ev.Action)
				return nil
			}
			sb, n := startBMC(t, newSim(t), "openbmc", cfg)
			var logs bytes.Buffer
			ccfg := profileConfig()
			ccfg.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			var info bmc.Info
			infoStep := bmc.Step{Name: "info", Do: func(_ context.Context, c *bmc.Client, _ *bmc.Result) error {
				info = c.Info()
				return nil
			}}
			r := bmc.Run(context.Background(), []inventory.Node{n}, bmc.RunConfig{Client: ccfg}, infoStep, bmc.PowerStep(bmc.ActionCycle))[0]

			if got := r.Status(); got != tc.wantStatus {
				t.Errorf("power cycle: status %s (err %v), want %s", got, r.Err, tc.wantStatus)
			}
			if !strings.HasPrefix(r.Evidence, tc.wantEvidence) {
				t.Errorf("power cycle: evidence %q, want it to start with %q", r.Evidence, tc.wantEvidence)
			}
			if tc.wantErr != "" && (r.Err == nil || !strings.Contains(r.Err.Error(), tc.wantErr)) {
				t.Errorf("power cycle: error %v, want it to contain %q", r.Err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.wantSent, sb.Stats().Resets); diff != "" {
				t.Errorf("power cycle: reset types the BMC accepted (-want +got):\n%s", diff)
			}
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(tc.wantEvents, events); diff != "" {
				t.Errorf("power cycle: power changes of the host (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantQuirks, info.Quirks); diff != "" {
				t.Errorf("Info().Quirks (-want +got):\n%s", diff)
			}
			if tc.wantLog != "" {
				if got := strings.Count(logs.String(), tc.wantLog); got != 1 {
					t.Errorf("debug log has %q %d times, want once:\n%s", tc.wantLog, got, logs.String())
				}
			} else if strings.Contains(logs.String(), "reset action info") {
				t.Errorf("debug log speaks of the reset action info although it was read:\n%s", logs.String())
			}
			checkSessions(t, sb)
		})
	}
}
