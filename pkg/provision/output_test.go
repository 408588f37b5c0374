package provision

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/slipway-dev/slipway/pkg/inventory"

	goldenfile "github.com/slipway-dev/slipway/internal/golden"
)

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenfile.Check(t, filepath.Join("testdata", name), got)
}

// goldenNodes are five nodes: the first control plane, a second one, two
// workers and a disabled worker.
func goldenNodes() []inventory.Node {
	mk := func(name string, role inventory.Role, i int) inventory.Node {
		return inventory.Node{Name: name, Role: role, Rack: "r1", Slot: i,
			MAC:  inventory.HardwareAddr(net.HardwareAddr{0x52, 0x54, 0, 0, 0, byte(i)}),
			BMC:  inventory.BMC{URL: "redfish://10.0.1." + string(rune('0'+i))},
			Boot: inventory.Boot{Firmware: inventory.FirmwareUEFI, Kernel: "vmlinuz", Initrd: "initrd.img"}}
	}
	nodes := []inventory.Node{mk("cp1", inventory.RoleControlPlane, 1), mk("cp2", inventory.RoleControlPlane, 2),
		mk("w1", inventory.RoleWorker, 3), mk("w2", inventory.RoleWorker, 4), mk("w3", inventory.RoleWorker, 5)}
	nodes[4].Disabled = true
	return nodes
}

func goldenJournal() *JournalState {
	tm := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	return &JournalState{Nodes: map[string]Record{
		"cp1": {Time: tm, Node: "cp1", Phase: PhaseReady, Attempt: 1},
		"cp2": {Time: tm.Add(time.Minute), Node: "cp2", Phase: PhaseJoining, Attempt: 1},
		"w1":  {Time: tm.Add(2 * time.Minute), Node: "w1", Phase: PhaseFailed, Attempt: 3, Reason: "no DHCP request within 5m0s (gave up after 3 power cycles)"},
		"w2":  {Time: tm.Add(3 * time.Minute), Node: "w2", Phase: PhaseNetbooting, Attempt: 1},
		"old": {Time: tm, Node: "old", Phase: PhaseReady, Attempt: 1},
	}, Warnings: []string{"journal x: ignoring a torn last record at line 9 (a crash interrupted its write)"}}
}

func TestPlanGolden(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		journal *JournalState
		verbose bool
	}{
		{"plan-fresh.golden", nil, true},
		{"plan-resume.golden", goldenJournal(), false},
	} {
		var buf bytes.Buffer
		if err := WritePlan(&buf, Plan(goldenNodes(), tc.journal), tc.verbose); err != nil {
			t.Fatal(err)
		}
		golden(t, tc.name, buf.Bytes())
	}
}

func TestPlanActions(t *testing.T) {
	t.Parallel()
	got := map[string]string{}
	for _, it := range Plan(goldenNodes(), goldenJournal()) {
		got[it.Node] = it.Action
	}
	want := map[string]string{"cp1": ActionNothing, "cp2": ActionResume, "w1": ActionProvision, "w2": ActionProvision, "w3": ActionSkip}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Plan actions (-want +got):\n%s", diff)
	}
}

func TestStatusGolden(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := WriteStatus(&buf, goldenJournal(), goldenNodes()); err != nil {
		t.Fatal(err)
	}
	golden(t, "status.golden", buf.Bytes())
}

func goldenUpdates() []Update {
	tm := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	return []Update{
		{Time: tm, Node: "cp1", Rack: "r1", Slot: 1, Phase: PhasePoweringOff, Since: tm, PhaseChanged: true, Attempt: 1, Event: "node config issued"},
		{Time: tm.Add(2 * time.Second), Node: "w1", Rack: "r1", Slot: 3, Phase: PhaseNetbooting, Since: tm, Attempt: 2, Event: "kernel /assets/vmlinuz"},
		{Time: tm.Add(3 * time.Second), Node: "w2", Phase: PhaseFailed, Since: tm.Add(3 * time.Second), PhaseChanged: true, Attempt: 3, Event: "x", Reason: "no DHCP request within 5m0s (gave up after 3 power cycles)"},
		{Time: tm.Add(4 * time.Second), Node: "cp2", Rack: "r1", Slot: 2, Phase: PhaseReady, Since: tm.Add(4 * time.Second), PhaseChanged: true, Attempt: 1, Event: "ready", Resumed: true},
	}
}

func TestProgressPrintersGolden(t *testing.T) {
	t.Parallel()
	var lines, js, table bytes.Buffer
	lp, jp, tb := NewLinePrinter(&lines), NewJSONPrinter(&js), NewTable(&table, 10)
	tb.clock = func() time.Time { return time.Date(2026, 11, 28, 10, 0, 9, 0, time.UTC) }
	for i, u := range goldenUpdates() {
		lp.Update(u)
		jp.Update(u)
		tb.Update(u)
		if i == 1 {
			tb.Draw() // a second draw moves the cursor back over the first
		}
	}
	tb.Draw()
	golden(t, "progress-plain.golden", lines.Bytes())
	golden(t, "progress-json.golden", js.Bytes())
	golden(t, "progress-table.golden", table.Bytes())
}

func TestReportSummary(t *testing.T) {
	t.Parallel()
	r := &runner{start: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)}
	for i, name := range []string{"a", "b", "c"} {
		s := &slot{node: inventory.Node{Name: name}, durations: map[Phase]time.Duration{
			PhaseWaitingDHCP: time.Duration(i+1) * time.Second, PhaseNetbooting: time.Duration(10*(i+1)) * time.Millisecond}}
		s.st.phase = PhaseReady
		if name == "c" {
			s.st.phase, s.st.reason, s.st.attempt = PhaseFailed, "power on: connection refused (gave up after 3 tries)", 1
		}
		r.slots = append(r.slots, s)
	}
	rep := r.report(r.start.Add(90 * time.Second))
	var buf bytes.Buffer
	if err := rep.WriteSummary(&buf); err != nil {
		t.Fatal(err)
	}
	golden(t, "summary.golden", buf.Bytes())
	if rep.Ready != 2 || rep.Failed != 1 {
		t.Errorf("report ready=%d failed=%d, want 2 and 1", rep.Ready, rep.Failed)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.setPhase("", PhasePending)
	m.setPhase("", PhasePending)
	m.setPhase(PhasePending, PhasePoweringOff)
	m.phaseDone(PhasePending, 2*time.Second)
	m.bmcCall("power off", 30*time.Millisecond, nil)
	m.bmcCall("power off", 30*time.Millisecond, os.ErrDeadlineExceeded)
	m.retry("power-cycle")
	for _, c := range []struct {
		family, label string
		want          float64
	}{
		{"slipway_provision_nodes", "pending", 1},
		{"slipway_provision_nodes", "powering-off", 1},
		{"slipway_provision_bmc_call_errors_total", "power off", 1},
		{"slipway_provision_retries_total", "power-cycle", 1},
		{"slipway_provision_phase_duration_seconds", "pending", 1}, // sample count
		{"slipway_provision_bmc_call_duration_seconds", "power off", 2},
	} {
		if got := metricValue(t, reg, c.family, c.label); got != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.family, c.label, got, c.want)
		}
	}
	var nilM *Metrics
	nilM.setPhase("", PhaseReady) // a nil *Metrics records nothing and does not panic
	if _, err := NewMetrics(reg); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("second NewMetrics on one registry = %v, want a duplicate registration error", err)
	}
}

// metricValue returns the value (or histogram sample count) of the series
// of family whose only label has value label.
func metricValue(t *testing.T, reg *prometheus.Registry, family, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != label {
				continue
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no series %s{%s}", family, label)
	return 0
}

// TestFirstControlPlaneFailureSaidOnce checks that nodes stopped because
// the first control plane failed are reported once, by cause: one progress
// line and one summary line, not one per node.
func TestFirstControlPlaneFailureSaidOnce(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	var lines bytes.Buffer
	p := NewLinePrinter(&lines)
	p.Update(Update{Time: at, Node: "cp-1", Phase: PhaseFailed, Attempt: 3, Reason: "no DHCP request within 5m (gave up after 3 power cycles)"})
	rep := &Report{Nodes: []NodeResult{{Node: "cp-1", Phase: PhaseFailed, Attempts: 3, Reason: "no DHCP request within 5m (gave up after 3 power cycles)"}}, Failed: 1}
	for i := range 999 {
		name := fmt.Sprintf("w-%03d", i)
		reason := "not started: first control-plane node cp-1 failed, so there is no cluster to join"
		p.Update(Update{Time: at, Node: name, Phase: PhaseFailed, Reason: reason, BlockedBy: "cp-1"})
		rep.Nodes = append(rep.Nodes, NodeResult{Node: name, Phase: PhaseFailed, Reason: reason, BlockedBy: "cp-1"})
		rep.Failed++
	}
	if got := strings.Count(lines.String(), "\n"); got != 2 {
		t.Errorf("progress lines = %d, want 2 (cp-1's failure, then one for every node it stopped):\n%s", got, lines.String())
	}
	var sum bytes.Buffer
	rep.WriteSummary(&sum)
	if strings.Count(sum.String(), "w-") != 0 || !strings.Contains(sum.String(), "999 more nodes stopped: the first control-plane node cp-1 failed") {
		t.Errorf("summary lists the stopped nodes one by one or not at all:\n%s", sum.String())
	}
}
