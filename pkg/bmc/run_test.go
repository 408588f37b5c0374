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

// TestRunCancel: Ctrl-C in the middle of a run stops the node in progress at
// its next BMC call, still logs it out, and reports the nodes not started.
func TestRunCancel(t *testing.T) {
	t.Parallel()
	sim := newSim(t)
	var bmcs []*redfishsim.BMC
	var nodes []inventory.Node
	for i := range 3 {
		b, n := startBMC(t, sim, fmt.Sprintf("n%d", i+1), redfishsim.BMCConfig{})
		bmcs = append(bmcs, b)
		nodes = append(nodes, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	interrupt := bmc.Step{Name: "interrupt", Do: func(context.Context, *bmc.Client, *bmc.Result) error {
		cancel() // as the signal handler does on Ctrl-C
		return nil
	}}
	res := bmc.Run(ctx, nodes, bmc.RunConfig{Parallel: 1, Client: fastConfig()}, interrupt, bmc.PowerStep(bmc.ActionOn))

	var got []string
	for _, r := range res {
		got = append(got, fmt.Sprint(r.Err))
	}
	addr := func(i int) string { return nodes[i].BMC.Addr() }
	want := []string{
		"power on n1 (bmc " + addr(0) + "): read power state: cancelled: context canceled",
		"interrupt n2 (bmc " + addr(1) + "): not started: cancelled: context canceled",
		"interrupt n3 (bmc " + addr(2) + "): not started: cancelled: context canceled",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Run errors mismatch (-want +got):\n%s", diff)
	}
	if st := bmcs[0].Stats(); st.Logins != 1 || st.Logouts != 1 || len(st.Resets) != 0 {
		t.Errorf("n1 after cancel: logins %d logouts %d resets %v, want 1 1 none", st.Logins, st.Logouts, st.Resets)
	}
	for i, b := range bmcs[1:] {
		if n := b.Stats().Requests; n != 0 {
			t.Errorf("n%d got %d requests after the run was cancelled, want 0", i+2, n)
		}
	}
}

// TestRunHangingBMC: with more nodes than slots, a BMC that never answers
// costs its own connect timeout and the other nodes all complete.
func TestRunHangingBMC(t *testing.T) {
	t.Parallel()
	sim := newSim(t)
	var nodes []inventory.Node
	var bmcs []*redfishsim.BMC
	for i := range 6 {
		cfg := redfishsim.BMCConfig{}
		if i == 1 {
			cfg.Faults.Hang = true
		}
		b, n := startBMC(t, sim, fmt.Sprintf("n%d", i+1), cfg)
		nodes = append(nodes, n)
		bmcs = append(bmcs, b)
	}
	// The budget only has to let the healthy BMCs in on a loaded machine;
	// the hanging one never answers, whatever it is.
	cfg := fastConfig()
	cfg.ConnectTimeout = 3 * time.Second
	res := bmc.Run(context.Background(), nodes, bmc.RunConfig{Parallel: 2, Client: cfg},
		bmc.PowerStep(bmc.ActionOff), bmc.BootStep(bmc.BootPXE, bmc.BootOptions{}), bmc.PowerStep(bmc.ActionOn))
	for i, r := range res {
		if r.Node != nodes[i].Name {
			t.Errorf("result %d is for %s, want %s (results must keep node order)", i, r.Node, nodes[i].Name)
		}
		if i == 1 {
			if r.Err == nil || !strings.Contains(r.Err.Error(), "no answer within 3s") {
				t.Errorf("hanging node error = %v, want a connect timeout", r.Err)
			}
			continue
		}
		if r.Err != nil {
			t.Errorf("node %s failed next to a hanging bmc: %v", r.Node, r.Err)
			continue
		}
		if r.Power != bmc.PowerOn || bmcs[i].PowerState() != redfishsim.PowerOn {
			t.Errorf("node %s: result power %q, simulator %s, want on", r.Node, r.Power, bmcs[i].PowerState())
		}
		if want := (bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.ModeUEFI, FlagsRead: true}); r.Boot == nil || *r.Boot != want {
			t.Errorf("node %s: boot read back = %v, want %v", r.Node, r.Boot, want)
		}
		if got := bmcs[i].Boot(); got.Target != "None" {
			t.Errorf("node %s: simulator boot after the PXE boot = %+v, want the one-time override consumed", r.Node, got)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"on", "off", "soft-off", "cycle", "reset"} {
		if a, err := bmc.ParsePowerAction(s); err != nil || string(a) != s {
			t.Errorf("ParsePowerAction(%q) = %q, %v, want %q", s, a, err, s)
		}
	}
	if _, err := bmc.ParsePowerAction("reboot"); err == nil {
		t.Errorf("ParsePowerAction(%q) = nil error, want one", "reboot")
	}
	for _, s := range []string{"pxe", "disk", "cd"} {
		if d, err := bmc.ParseBootDevice(s); err != nil || string(d) != s {
			t.Errorf("ParseBootDevice(%q) = %q, %v, want %q", s, d, err, s)
		}
	}
	if _, err := bmc.ParseBootDevice("floppy"); err == nil {
		t.Errorf("ParseBootDevice(%q) = nil error, want one", "floppy")
	}
}
