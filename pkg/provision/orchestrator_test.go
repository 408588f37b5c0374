package provision_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/provision/provisionfake"
)

func testNodes(cps, workers int) []inventory.Node {
	var nodes []inventory.Node
	for i := range cps + workers {
		role, name := inventory.RoleControlPlane, fmt.Sprintf("cp-%d", i+1)
		if i >= cps {
			role, name = inventory.RoleWorker, fmt.Sprintf("w-%02d", i-cps+1)
		}
		nodes = append(nodes, inventory.Node{
			Name: name, Role: role, Rack: "r1", Slot: i + 1,
			MAC: inventory.HardwareAddr(net.HardwareAddr{0x52, 0x54, 0, 0, byte(i >> 8), byte(i)}),
		})
	}
	return nodes
}

func fastConfig(t *testing.T, nodes []inventory.Node, rack *provisionfake.Rack) provision.Config {
	t.Helper()
	return provision.Config{
		Nodes: nodes, StateDir: t.TempDir(), BMCs: rack, Issuer: rack, Readiness: rack,
		ReadyPoll: 10 * time.Millisecond, Backoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Timeouts: provision.Timeouts{DHCP: 1500 * time.Millisecond, Netboot: 1500 * time.Millisecond,
			Join: 1500 * time.Millisecond, Ready: 1500 * time.Millisecond, BMC: 2 * time.Second},
	}
}

func run(t *testing.T, cfg provision.Config, rack *provisionfake.Rack) *provision.Report {
	t.Helper()
	o, err := provision.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	rack.Deliver = o.Observe
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	rep, err := o.Run(ctx)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rep
}

func outcome(rep *provision.Report) map[string]provision.Phase {
	got := map[string]provision.Phase{}
	for _, n := range rep.Nodes {
		got[n.Node] = n.Phase
	}
	return got
}

func TestRunInjectedFailures(t *testing.T) {
	t.Parallel()
	nodes := testNodes(3, 12)
	var machines []*provisionfake.Machine
	behave := map[string]provisionfake.Behavior{
		"w-01": {NoPXE: true},
		"w-02": {HangOS: true},
		"w-03": {BMCDead: true},
		"w-04": {NoPXEFirst: 1}, // needs the second power cycle
		"w-05": {BMCFlaky: 2},   // two BMC errors, then fine
		"w-06": {NeverReady: true},
	}
	for _, n := range nodes {
		machines = append(machines, &provisionfake.Machine{Name: n.Name, Behavior: behave[n.Name]})
	}
	rack := provisionfake.New(machines...)
	cfg := fastConfig(t, nodes, rack)
	cfg.Parallel = 4
	var mu sync.Mutex
	var order []string // nodes in the order they left pending
	cfg.Progress = func(u provision.Update) {
		if u.PhaseChanged && u.Phase == provision.PhasePoweringOff && u.Attempt == 1 {
			mu.Lock()
			order = append(order, u.Node)
			mu.Unlock()
		}
		if u.PhaseChanged && u.Phase == provision.PhaseReady {
			mu.Lock()
			order = append(order, u.Node+":ready")
			mu.Unlock()
		}
	}
	rep := run(t, cfg, rack)

	want := map[string]provision.Phase{}
	for _, n := range nodes {
		want[n.Name] = provision.PhaseReady
	}
	for _, n := range []string{"w-01", "w-02", "w-03", "w-06"} {
		want[n] = provision.PhaseFailed
	}
	if diff := cmp.Diff(want, outcome(rep)); diff != "" {
		t.Errorf("final phases (-want +got):\n%s", diff)
	}
	reasons := map[string]string{}
	for _, n := range rep.Nodes {
		reasons[n.Node] = n.Reason
	}
	for node, frag := range map[string]string{
		"w-01": "no DHCP request", "w-02": "reported no join", "w-03": "connection refused (gave up after 3 tries)",
		"w-06": "not Ready within",
	} {
		if !strings.Contains(reasons[node], frag) {
			t.Errorf("reason of %s = %q, want it to mention %q", node, reasons[node], frag)
		}
	}
	if s := rack.Machine("w-04").Stats(); s.Boots != 2 {
		t.Errorf("w-04 (no PXE on first boot) booted %d times, want 2", s.Boots)
	}
	if s := rack.Machine("w-01").Stats(); s.Boots != 3 {
		t.Errorf("w-01 (never PXE) booted %d times, want 3 (MaxAttempts)", s.Boots)
	}
	issued := rack.Issued()
	if issued["cp-1"] != provision.JoinInit || issued["cp-2"] != provision.JoinControlPlane || issued["w-07"] != provision.JoinWorker {
		t.Errorf("issued join kinds = %v, want cp-1 init, cp-2 join-control-plane, w-07 join-worker", issued)
	}
	// Control plane first: cp-1 is ready before any other node starts, and
	// every control-plane node is done before any worker starts.
	mu.Lock()
	defer mu.Unlock()
	idx := func(s string) int {
		for i, o := range order {
			if o == s {
				return i
			}
		}
		return -1
	}
	if idx("cp-1:ready") < 0 || idx("cp-1:ready") > idx("cp-2") || idx("cp-1:ready") > idx("cp-3") {
		t.Errorf("start order %v: want cp-1 ready before cp-2 and cp-3 start", order)
	}
	for _, w := range []string{"w-01", "w-12"} {
		if idx(w) < idx("cp-2:ready") || idx(w) < idx("cp-3:ready") {
			t.Errorf("start order %v: worker %s started before the control plane was ready", order, w)
		}
	}
	if rep.Ready != 11 || rep.Failed != 4 {
		t.Errorf("report counts ready=%d failed=%d, want 11 and 4", rep.Ready, rep.Failed)
	}
}

func TestRunFirstControlPlaneFails(t *testing.T) {
	t.Parallel()
	nodes := testNodes(2, 2)
	rack := provisionfake.New(
		&provisionfake.Machine{Name: "cp-1", Behavior: provisionfake.Behavior{BMCDead: true}},
		&provisionfake.Machine{Name: "cp-2"}, &provisionfake.Machine{Name: "w-01"}, &provisionfake.Machine{Name: "w-02"})
	rep := run(t, fastConfig(t, nodes, rack), rack)
	for _, n := range rep.Nodes {
		if n.Phase != provision.PhaseFailed {
			t.Errorf("%s ended %s, want failed (no cluster to join)", n.Node, n.Phase)
		}
		if n.Node != "cp-1" && !strings.Contains(n.Reason, "first control-plane node cp-1 failed") {
			t.Errorf("%s reason %q, want it to name cp-1", n.Node, n.Reason)
		}
	}
	for _, name := range []string{"cp-2", "w-01"} {
		if s := rack.Machine(name).Stats(); s.PowerOps != 0 {
			t.Errorf("%s got %d power operations, want 0", name, s.PowerOps)
		}
	}
}

func TestRunResumeSkipsReadyAndDoesNotPowerCyclePastNetboot(t *testing.T) {
	t.Parallel()
	nodes := testNodes(1, 3)
	// A previous run left cp-1 ready, w-01 joining, w-02 netbooting.
	now := time.Now()
	dir := writeJournal(t,
		provision.Record{Time: now, Node: "cp-1", Phase: provision.PhaseReady, Attempt: 1},
		provision.Record{Time: now, Node: "w-01", Phase: provision.PhaseJoining, Attempt: 1},
		provision.Record{Time: now, Node: "w-02", Phase: provision.PhaseNetbooting, Attempt: 2},
	)
	rack := provisionfake.New(&provisionfake.Machine{Name: "cp-1"}, &provisionfake.Machine{Name: "w-01"},
		&provisionfake.Machine{Name: "w-02"}, &provisionfake.Machine{Name: "w-03"})
	cfg := fastConfig(t, nodes, rack)
	cfg.StateDir = dir
	// w-01 joined while we were away: the readiness source says so.
	rack.Deliver = func(context.Context, provision.Event) error { return nil }
	o, err := provision.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rack.Deliver = o.Observe
	go rack.Deliver(t.Context(), provision.Event{}) // unknown node: ignored
	markJoined(t, rack, "w-01")
	rep, err := o.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]provision.Phase{"cp-1": provision.PhaseReady, "w-01": provision.PhaseReady, "w-02": provision.PhaseReady, "w-03": provision.PhaseReady}
	if diff := cmp.Diff(want, outcome(rep)); diff != "" {
		t.Errorf("final phases (-want +got):\n%s", diff)
	}
	for name, wantOps := range map[string]int{"cp-1": 0, "w-01": 0, "w-02": 2, "w-03": 2} {
		if s := rack.Machine(name).Stats(); s.PowerOps != wantOps {
			t.Errorf("%s: %d power operations, want %d", name, s.PowerOps, wantOps)
		}
	}
	st, err := provision.ReadJournal(filepath.Join(dir, provision.JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != 4 {
		t.Errorf("journal after the run holds %d records, want 4 (compacted to one per node)", st.Records)
	}
}

// markJoined makes the fake machine answer Ready without booting it.
func markJoined(t *testing.T, rack *provisionfake.Rack, name string) {
	t.Helper()
	rack.Machine(name).SetJoined()
}

func TestLockNamesHolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, err := provision.LockStateDir(dir, "provisioner up -f inv/")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	_, err = provision.LockStateDir(dir, "provisioner up")
	if !errors.Is(err, provision.ErrLocked) {
		t.Fatalf("second LockStateDir(%s) = %v, want ErrLocked", dir, err)
	}
	if !strings.Contains(err.Error(), `"provisioner up -f inv/"`) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("lock error %q does not name the holder command and pid", err)
	}
	l.Unlock()
	l2, err := provision.LockStateDir(dir, "provisioner up")
	if err != nil {
		t.Fatalf("LockStateDir after Unlock: %v", err)
	}
	l2.Unlock()
}

func TestRunEarlyNetboot(t *testing.T) {
	t.Parallel()
	nodes := testNodes(1, 6)
	var machines []*provisionfake.Machine
	for _, n := range nodes {
		m := &provisionfake.Machine{Name: n.Name, Boot: 40 * time.Millisecond}
		if n.Name == "cp-1" {
			m.Boot = 400 * time.Millisecond // the control plane boots slowly
		}
		machines = append(machines, m)
	}
	rack := provisionfake.New(machines...)
	cfg := fastConfig(t, nodes, rack)
	cfg.EarlyNetboot = true
	var mu sync.Mutex
	var order []string
	cfg.Progress = func(u provision.Update) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case u.PhaseChanged && u.Phase == provision.PhaseReady:
			order = append(order, u.Node+":ready")
		case u.PhaseChanged && u.Phase == provision.PhaseConfigFetched:
			order = append(order, u.Node+":config")
		case u.PhaseChanged && u.Phase == provision.PhaseNetbooting:
			order = append(order, u.Node+":netboot")
		case u.PhaseChanged && (u.Phase == provision.PhasePoweringOff || u.Phase == provision.PhaseWaitingDHCP):
			order = append(order, u.Node+":"+string(u.Phase))
		}
	}
	rep := run(t, cfg, rack)
	if rep.Ready != len(nodes) {
		var buf bytes.Buffer
		rep.WriteSummary(&buf)
		t.Fatalf("early netboot: %d of %d ready\n%s", rep.Ready, len(nodes), buf.String())
	}
	mu.Lock()
	defer mu.Unlock()
	idx := func(s string) int {
		for i, o := range order {
			if o == s {
				return i
			}
		}
		return -1
	}
	cpReady := idx("cp-1:ready")
	// The early nodes wait until the first control plane is powered on:
	// their power cycles do not queue in front of its BMC calls.
	for _, w := range []string{"w-01", "w-06"} {
		if p := idx(w + ":powering-off"); p < idx("cp-1:waiting-dhcp") {
			t.Errorf("order %v: %s started its power cycle before cp-1 was powered on", order, w)
		}
	}
	if w := idx("w-01:netboot"); w < 0 || w > cpReady {
		t.Errorf("order %v: w-01 should netboot before cp-1 is ready (early netboot)", order)
	}
	for _, w := range []string{"w-01", "w-06"} {
		if c := idx(w + ":config"); c < cpReady {
			t.Errorf("order %v: %s got its config before cp-1 was ready", order, w)
		}
	}
	if got := rack.Issued()["w-03"]; got != provision.JoinWorker {
		t.Errorf("w-03 issued %q, want join-worker", got)
	}
}

// TestRunAdoptsNodesReadySinceAnEarlierRun: a node an earlier run left
// failed (its join outlasted the timeout) that is a Ready Node now is not
// power-cycled (kubeadm would refuse to join it again under its name): it
// is taken as Ready and journaled so. A failed node that is not Ready is
// provisioned again, and a node the journal never saw costs no question.
func TestRunAdoptsNodesReadySinceAnEarlierRun(t *testing.T) {
	t.Parallel()
	nodes := testNodes(1, 3)
	now := time.Now()
	dir := writeJournal(t,
		provision.Record{Time: now, Node: "cp-1", Phase: provision.PhaseReady, Attempt: 1},
		provision.Record{Time: now, Node: "w-01", Phase: provision.PhaseFailed, Attempt: 1, Reason: "no join report within 15m"},
		provision.Record{Time: now, Node: "w-02", Phase: provision.PhaseFailed, Attempt: 3, Reason: "no DHCP request within 5m"},
	)
	rack := provisionfake.New(&provisionfake.Machine{Name: "cp-1"}, &provisionfake.Machine{Name: "w-01"},
		&provisionfake.Machine{Name: "w-02"}, &provisionfake.Machine{Name: "w-03"})
	markJoined(t, rack, "w-01")
	asked := &countingReadiness{next: rack, rack: rack}
	cfg := fastConfig(t, nodes, rack)
	cfg.StateDir, cfg.Readiness = dir, asked
	var mu sync.Mutex
	events := map[string][]string{}
	cfg.Progress = func(u provision.Update) {
		mu.Lock()
		defer mu.Unlock()
		events[u.Node] = append(events[u.Node], u.Event)
	}
	rep := run(t, cfg, rack)
	want := map[string]provision.Phase{"cp-1": provision.PhaseReady, "w-01": provision.PhaseReady, "w-02": provision.PhaseReady, "w-03": provision.PhaseReady}
	if diff := cmp.Diff(want, outcome(rep)); diff != "" {
		t.Errorf("final phases (-want +got):\n%s", diff)
	}
	for name, wantOps := range map[string]int{"cp-1": 0, "w-01": 0, "w-02": 2, "w-03": 2} {
		if s := rack.Machine(name).Stats(); s.PowerOps != wantOps {
			t.Errorf("%s: %d power operations, want %d", name, s.PowerOps, wantOps)
		}
	}
	if got := events["w-01"]; len(got) == 0 || !strings.Contains(got[0], "a Ready Node in the cluster (journal: failed): not power-cycled") {
		t.Errorf("w-01's first update = %q, want it to say it was found Ready and not power-cycled", got)
	}
	if n := asked.about("w-03"); n != 0 {
		t.Errorf("readiness of w-03 (never journaled) asked %d times before it was provisioned, want 0", n)
	}
	st, err := provision.ReadJournal(filepath.Join(dir, provision.JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	if r := st.Nodes["w-01"]; r.Phase != provision.PhaseReady {
		t.Errorf("journal record of w-01 = %s, want %s", r.Phase, provision.PhaseReady)
	}
}

// TestRunAdoptionStopsAtTheFirstError: when the cluster API does not answer
// the first question, no more are asked and the nodes are provisioned again
// as before.
func TestRunAdoptionStopsAtTheFirstError(t *testing.T) {
	t.Parallel()
	nodes := testNodes(1, 2)
	now := time.Now()
	dir := writeJournal(t,
		provision.Record{Time: now, Node: "cp-1", Phase: provision.PhaseFailed, Attempt: 3, Reason: "no join report within 15m"},
		provision.Record{Time: now, Node: "w-01", Phase: provision.PhasePending},
		provision.Record{Time: now, Node: "w-02", Phase: provision.PhasePending},
	)
	rack := provisionfake.New(&provisionfake.Machine{Name: "cp-1"}, &provisionfake.Machine{Name: "w-01"}, &provisionfake.Machine{Name: "w-02"})
	asked := &countingReadiness{next: rack, rack: rack, failFirst: 1}
	cfg := fastConfig(t, nodes, rack)
	cfg.StateDir, cfg.Readiness = dir, asked
	rep := run(t, cfg, rack)
	want := map[string]provision.Phase{"cp-1": provision.PhaseReady, "w-01": provision.PhaseReady, "w-02": provision.PhaseReady}
	if diff := cmp.Diff(want, outcome(rep)); diff != "" {
		t.Errorf("final phases (-want +got):\n%s", diff)
	}
	if n := asked.before("cp-1"); n != 1 {
		t.Errorf("questions before cp-1 was provisioned = %d, want 1 (the failed one, then none)", n)
	}
	for _, name := range []string{"cp-1", "w-01", "w-02"} {
		if s := rack.Machine(name).Stats(); s.PowerOps != 2 {
			t.Errorf("%s: %d power operations, want 2 (provisioned again)", name, s.PowerOps)
		}
	}
}

// countingReadiness records every question with whether each machine had
// been power-cycled yet, and fails the first failFirst questions.
type countingReadiness struct {
	next      provision.Readiness
	rack      *provisionfake.Rack
	failFirst int

	mu    sync.Mutex
	asked []question
}

type question struct {
	node      string
	unpowered map[string]bool // machines with no power operation yet
}

func (c *countingReadiness) Ready(ctx context.Context, node string) (bool, error) {
	q := question{node: node, unpowered: map[string]bool{}}
	for _, name := range []string{"cp-1", "w-01", "w-02", "w-03"} {
		if m := c.rack.Machine(name); m != nil && m.Stats().PowerOps == 0 {
			q.unpowered[name] = true
		}
	}
	c.mu.Lock()
	c.asked = append(c.asked, q)
	n := len(c.asked)
	c.mu.Unlock()
	if n <= c.failFirst {
		return false, errors.New("dial tcp 10.0.0.10:6443: connect: no route to host")
	}
	return c.next.Ready(ctx, node)
}

// about counts the questions about node asked before it was power-cycled.
func (c *countingReadiness) about(node string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, q := range c.asked {
		if q.node == node && q.unpowered[node] {
			n++
		}
	}
	return n
}

// before counts every question asked before node was power-cycled.
func (c *countingReadiness) before(node string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, q := range c.asked {
		if q.unpowered[node] {
			n++
		}
	}
	return n
}
