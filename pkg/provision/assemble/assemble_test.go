package assemble

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/simrack"
)

// newWorld is a simulated rack of n nodes on loopback (cp-1, then
// node-0002 ...), closed when the test ends.
func newWorld(t *testing.T, n int, faults map[string]simrack.Fault) *simrack.World {
	t.Helper()
	w, err := simrack.NewWorld(simrack.WorldConfig{Dir: t.TempDir(), Nodes: n, Firmware: 50 * time.Millisecond, OS: 100 * time.Millisecond,
		Faults: faults, Seed: 1})
	if err != nil {
		t.Fatalf("simrack.NewWorld: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// worldOptions are the Options `provisioner demo` fills for w, with short
// phase timeouts and fast BMC polls.
func worldOptions(w *simrack.World, state string) Options {
	return Options{
		Inventory: w.Inventory, StateDir: state, Command: "assemble test", Join: JoinReportOnly,
		Boot: Boot{TFTPRoot: w.TFTPRoot, AssetDir: w.AssetDir, Listeners: w.Listeners, SkipInterfaceCheck: true},
		BMC:  bmc.Config{Backoff: []time.Duration{20 * time.Millisecond}}, MaxAttempts: 1,
		Timeouts: provision.Timeouts{DHCP: 3 * time.Second, Netboot: 5 * time.Second, Join: 5 * time.Second, Ready: 5 * time.Second},
		Beside:   []func(context.Context) error{w.Rack.Run},
	}
}

// TestRun runs the whole assembly against a simulated rack on loopback
// (Redfish BMCs, DHCP through a relay, TFTP, HTTP, the node config's join
// report): every healthy node ends Ready after one power cycle, the node
// without PXE fails, and a second run resumes from the journal without
// power-cycling anything but the failed node.
func TestRun(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 4, map[string]simrack.Fault{"node-0004": simrack.FaultNoPXE})
	state := t.TempDir()
	var besideStopped atomic.Bool
	opts := worldOptions(w, state)
	opts.Beside = append(opts.Beside, func(ctx context.Context) error {
		<-ctx.Done() // runs until provisioning ends
		besideStopped.Store(true)
		return nil
	})
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	res, err := p.Run(ctx)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := map[string]provision.Phase{"cp-1": provision.PhaseReady, "node-0002": provision.PhaseReady,
		"node-0003": provision.PhaseReady, "node-0004": provision.PhaseFailed}
	if diff := cmp.Diff(want, phasesOf(res.Report)); diff != "" {
		t.Errorf("Run: phases (-want +got):\n%s", diff)
	}
	for _, r := range res.Report.Nodes {
		if r.Attempts != 1 {
			t.Errorf("Run: %s took %d power cycles, want 1", r.Node, r.Attempts)
		}
	}
	if res.Addons != nil {
		t.Errorf("Run: add-ons %+v in report-only mode, want none", res.Addons)
	}
	if !besideStopped.Load() {
		t.Error("Run returned before the Beside function saw its context end")
	}
	if boots := w.Rack.Boots(); boots != 4 {
		t.Errorf("Run: the rack saw %d network boots, want 4 (one per node)", boots)
	}

	// A resumed run on the same state directory: the Ready nodes are left
	// alone, only the failed one is tried again.
	w2 := newWorld(t, 4, map[string]simrack.Fault{"node-0004": simrack.FaultNoPXE})
	p, err = New(worldOptions(w2, state))
	if err != nil {
		t.Fatalf("New (resume): %v", err)
	}
	res, err = p.Run(ctx)
	if err != nil {
		t.Fatalf("Run (resume): %v", err)
	}
	if diff := cmp.Diff(want, phasesOf(res.Report)); diff != "" {
		t.Errorf("Run (resume): phases (-want +got):\n%s", diff)
	}
	if got := w2.Rack.Boots(); got != 1 {
		t.Errorf("Run (resume): the rack saw %d network boots, want 1 (only the failed node-0004 is retried)", got)
	}
}

// TestRunFirstControlPlaneFails checks that when the first control plane
// fails every other node stops, each saying why, and the report says it
// once per cause.
func TestRunFirstControlPlaneFails(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 5, map[string]simrack.Fault{"cp-1": simrack.FaultHangOS})
	opts := worldOptions(w, t.TempDir())
	opts.EarlyNetboot = true
	opts.Timeouts.Join = time.Second
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	res, err := p.Run(t.Context())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, r := range res.Report.Nodes {
		switch {
		case r.Node == "cp-1" && (r.Phase != provision.PhaseFailed || r.BlockedBy != "" || !strings.Contains(r.Reason, "reported no join")):
			t.Errorf("cp-1 ended %s (%q, blocked by %q), want failed for its own reason", r.Phase, r.Reason, r.BlockedBy)
		case r.Node != "cp-1" && (r.Phase != provision.PhaseFailed || r.BlockedBy != "cp-1"):
			t.Errorf("%s ended %s blocked by %q, want failed, blocked by cp-1", r.Node, r.Phase, r.BlockedBy)
		}
	}
}

// TestRunErrors checks what Run returns when it is interrupted and when a
// function beside the services fails.
func TestRunErrors(t *testing.T) {
	t.Parallel()
	t.Run("interrupted", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, 2, nil)
		opts := worldOptions(w, t.TempDir())
		opts.Beside = nil // no rack: the nodes never boot
		opts.Timeouts.DHCP = time.Minute
		p, err := New(opts)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(500*time.Millisecond, cancel)
		res, err := p.Run(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run after cancel = %v, want context.Canceled", err)
		}
		if res.Report == nil || res.Report.Unfinished != 2 {
			t.Errorf("Run after cancel: report %+v, want 2 unfinished nodes", res.Report)
		}
	})
	t.Run("beside fails", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, 2, nil)
		opts := worldOptions(w, t.TempDir())
		opts.Beside = []func(context.Context) error{func(context.Context) error { return errors.New("rack exploded") }}
		p, err := New(opts)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		_, err = p.Run(t.Context())
		// The rack failed, not the boot services: the error says so.
		if err == nil || err.Error() != "rack exploded" {
			t.Errorf("Run with a failing Beside = %v, want rack exploded", err)
		}
	})
	t.Run("boot services fail", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, 2, nil)
		opts := worldOptions(w, t.TempDir())
		p, err := New(opts)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		w.Listeners.HTTP.Close() // the boot HTTP server cannot serve
		_, err = p.Run(t.Context())
		if err == nil || !strings.HasPrefix(err.Error(), "boot services: ") {
			t.Errorf("Run with a closed boot HTTP listener = %v, want boot services: ...", err)
		}
	})
	t.Run("bad options", func(t *testing.T) {
		t.Parallel()
		_, err := New(Options{Join: "magic"})
		for _, want := range []string{"no inventory", "no state directory", `join mode "magic"`} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("New(bad options) = %v, want it to say %q", err, want)
			}
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
