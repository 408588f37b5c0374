package provision

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func testPolicy() policy {
	return policy{
		timeouts:    Timeouts{DHCP: time.Minute, Netboot: 2 * time.Minute, Join: 3 * time.Minute, Ready: 4 * time.Minute}.withDefaults(),
		maxAttempts: 2, opTries: 3, backoff: time.Second, maxBackoff: 3 * time.Second,
	}
}

func ev(k EventKind) input    { return input{kind: inEvent, event: Event{Kind: k}} }
func done(o op) input         { return input{kind: inOpDone, op: o} }
func doneErr(o op) input      { return input{kind: inOpDone, op: o, err: errors.New("connection refused")} }
func timeout() input          { return input{kind: inTimeout} }
func start() input            { return input{kind: inStart} }
func at(sec int) time.Time    { return t0.Add(time.Duration(sec) * time.Second) }
func state(p Phase) nodeState { return nodeState{phase: p, since: t0, attempt: 1, issued: true} }

// step is one input at a given second after t0 and what should follow.
type stepWant struct {
	in       input
	sec      int
	wantOp   op
	phase    Phase
	attempt  int
	deadline int // seconds after t0; -1 none
}

func TestStep(t *testing.T) {
	t.Parallel()
	happy := []stepWant{
		{start(), 0, opIssue, PhasePending, 0, -1},
		{done(opIssue), 1, opPowerOff, PhasePoweringOff, 1, -1},
		{done(opPowerOff), 2, opSetBoot, PhaseSettingBoot, 1, -1},
		{done(opSetBoot), 3, opPowerOn, PhasePoweringOn, 1, -1},
		{done(opPowerOn), 4, opNone, PhaseWaitingDHCP, 1, 64},
		{ev(EventDHCP), 10, opNone, PhaseNetbooting, 1, 130},
		{ev(EventKernel), 20, opNone, PhaseNetbooting, 1, 140}, // progress: the netboot timeout restarts
		{ev(EventConfig), 30, opNone, PhaseConfigFetched, 1, 210},
		{ev(EventJoined), 40, opNone, PhaseJoining, 1, 280},
		{ev(EventReady), 50, opRevoke, PhaseReady, 1, -1},
		{ev(EventDHCP), 60, opNone, PhaseReady, 1, -1},
	}
	tests := []struct {
		name  string
		init  nodeState
		steps []stepWant
	}{
		{"happy path", nodeState{phase: PhasePending, since: t0}, happy},
		{"no dhcp: one more power cycle, then fail", state(PhaseWaitingDHCP), []stepWant{
			{timeout(), 0, opNone, PhaseWaitingDHCP, 1, -1}, // deadline not set: nothing
		}},
		{"dhcp timeout power-cycles once more then fails", nodeState{phase: PhasePoweringOn, since: t0, attempt: 1}, []stepWant{
			{done(opPowerOn), 0, opNone, PhaseWaitingDHCP, 1, 60},
			{timeout(), 30, opNone, PhaseWaitingDHCP, 1, 60}, // early: ignored
			{timeout(), 60, opPowerOff, PhasePoweringOff, 2, -1},
			{done(opPowerOff), 61, opSetBoot, PhaseSettingBoot, 2, -1},
			{done(opSetBoot), 62, opPowerOn, PhasePoweringOn, 2, -1},
			{done(opPowerOn), 63, opNone, PhaseWaitingDHCP, 2, 123},
			{timeout(), 123, opNone, PhaseFailed, 2, -1},
		}},
		{"netboot stall power-cycles", state(PhaseWaitingDHCP), []stepWant{
			{ev(EventTFTP), 0, opNone, PhaseNetbooting, 1, 120},
			{timeout(), 120, opPowerOff, PhasePoweringOff, 2, -1},
		}},
		{"a virtual-media node waits for its CD's script fetch, not DHCP", nodeState{phase: PhaseWaitingDHCP, since: t0, attempt: 2, issued: true, fromCD: true, deadline: at(60)}, []stepWant{
			{timeout(), 60, opRevoke, PhaseFailed, 2, -1},
		}},
		{"netboot progress restarts the timeout, a repeated step does not", state(PhaseWaitingDHCP), []stepWant{
			{ev(EventDHCP), 0, opNone, PhaseNetbooting, 1, 120},
			{ev(EventTFTP), 100, opNone, PhaseNetbooting, 1, 220},
			{ev(EventDHCP), 150, opNone, PhaseNetbooting, 1, 220}, // iPXE's DHCP: seen already
			{ev(EventTFTP), 200, opNone, PhaseNetbooting, 1, 220}, // a retransmission
			{ev(EventScript), 210, opNone, PhaseNetbooting, 1, 330},
			{timeout(), 330, opPowerOff, PhasePoweringOff, 2, -1},
		}},
		{"a failed step before the join fails the node at once", state(PhaseConfigFetched), []stepWant{
			{ev(EventNodeFailed), 5, opRevoke, PhaseFailed, 1, -1},
		}},
		{"a failed step after the join is only shown", state(PhaseJoining), []stepWant{
			{ev(EventNodeFailed), 5, opNone, PhaseJoining, 1, -1},
		}},
		{"bmc error retries with backoff then succeeds", state(PhasePoweringOff), []stepWant{
			{doneErr(opPowerOff), 0, opNone, PhasePoweringOff, 1, 1},
			{timeout(), 1, opPowerOff, PhasePoweringOff, 1, -1},
			{doneErr(opPowerOff), 2, opNone, PhasePoweringOff, 1, 4}, // backoff doubled
			{timeout(), 4, opPowerOff, PhasePoweringOff, 1, -1},
			{done(opPowerOff), 5, opSetBoot, PhaseSettingBoot, 1, -1},
		}},
		{"bmc error gives up after tries and revokes the issued config", state(PhasePoweringOn), []stepWant{
			{doneErr(opPowerOn), 0, opNone, PhasePoweringOn, 1, 1},
			{timeout(), 1, opPowerOn, PhasePoweringOn, 1, -1},
			{doneErr(opPowerOn), 2, opNone, PhasePoweringOn, 1, 4},
			{timeout(), 4, opPowerOn, PhasePoweringOn, 1, -1},
			{doneErr(opPowerOn), 5, opRevoke, PhaseFailed, 1, -1},
		}},
		{"issue error fails", nodeState{phase: PhasePending, since: t0}, []stepWant{
			{start(), 0, opIssue, PhasePending, 0, -1},
			{doneErr(opIssue), 1, opNone, PhaseFailed, 0, -1},
		}},
		{"stale events before power on are ignored", state(PhasePoweringOff), []stepWant{
			{ev(EventDHCP), 0, opNone, PhasePoweringOff, 1, -1},
			{ev(EventConfig), 0, opNone, PhasePoweringOff, 1, -1},
			{done(opPowerOn), 0, opNone, PhasePoweringOff, 1, -1}, // answer of another phase
		}},
		{"dhcp before the power-on answer", state(PhasePoweringOn), []stepWant{
			{ev(EventDHCP), 0, opNone, PhaseNetbooting, 1, 120},
			{done(opPowerOn), 1, opNone, PhaseNetbooting, 1, 120},
		}},
		{"config without a dhcp event (proxy or site dhcp)", state(PhaseWaitingDHCP), []stepWant{
			{ev(EventConfig), 5, opNone, PhaseConfigFetched, 1, 185},
		}},
		{"joined but never ready fails without power cycle, revoking its token", state(PhaseConfigFetched), []stepWant{
			{ev(EventJoined), 0, opNone, PhaseJoining, 1, 240},
			{timeout(), 240, opRevoke, PhaseFailed, 1, -1},
		}},
		{"config fetched but no join fails without power cycle", nodeState{phase: PhaseConfigFetched, since: t0, attempt: 1, deadline: at(180)}, []stepWant{
			{ev(EventKernel), 10, opNone, PhaseConfigFetched, 1, 180}, // backwards: ignored
			{timeout(), 180, opNone, PhaseFailed, 1, -1},
		}},
		{"ready straight from config fetched", state(PhaseConfigFetched), []stepWant{
			{ev(EventReady), 0, opRevoke, PhaseReady, 1, -1},
		}},
		{"early netboot: config held until issued", nodeState{phase: PhasePending, since: t0}, []stepWant{
			{input{kind: inStart, early: true}, 0, opPowerOff, PhasePoweringOff, 1, -1},
			{done(opPowerOff), 1, opSetBoot, PhaseSettingBoot, 1, -1},
			{done(opSetBoot), 2, opPowerOn, PhasePoweringOn, 1, -1},
			{done(opPowerOn), 3, opNone, PhaseWaitingDHCP, 1, 63},
			{ev(EventDHCP), 4, opNone, PhaseNetbooting, 1, 124},
			{ev(EventConfig), 5, opNone, PhaseNetbooting, 1, -1}, // held: no timeout while it waits
			{timeout(), 500, opNone, PhaseNetbooting, 1, -1},
			{done(opIssue), 600, opNone, PhaseNetbooting, 1, 720}, // its turn: the config may go
			{ev(EventConfig), 601, opNone, PhaseConfigFetched, 1, 781},
		}},
		{"early netboot: issue failure fails the node", nodeState{phase: PhaseNetbooting, since: t0, attempt: 1, early: true, held: true}, []stepWant{
			{doneErr(opIssue), 0, opNone, PhaseFailed, 1, -1},
		}},
		{"failed stays failed", nodeState{phase: PhaseFailed, since: t0, reason: "x"}, []stepWant{
			{ev(EventReady), 0, opNone, PhaseFailed, 0, -1},
			{start(), 0, opNone, PhaseFailed, 0, -1},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := testPolicy()
			s := tc.init
			for i, sw := range tc.steps {
				got := p.step(&s, sw.in, at(sw.sec))
				dl := -1
				if !s.deadline.IsZero() {
					dl = int(s.deadline.Sub(t0) / time.Second)
				}
				type res struct {
					Op       op
					Phase    Phase
					Attempt  int
					Deadline int
				}
				want := res{sw.wantOp, sw.phase, sw.attempt, sw.deadline}
				if diff := cmp.Diff(want, res{got, s.phase, s.attempt, dl}); diff != "" {
					t.Fatalf("step %d (%+v at +%ds): (-want +got)\n%s", i, sw.in, sw.sec, diff)
				}
			}
		})
	}
}

func TestStepFailureReasons(t *testing.T) {
	t.Parallel()
	p := testPolicy()
	s := nodeState{phase: PhaseWaitingDHCP, since: t0, attempt: 2, deadline: at(60)}
	p.step(&s, timeout(), at(60))
	if s.phase != PhaseFailed || !strings.Contains(s.reason, "no DHCP request within 1m0s (gave up after 2 power cycles)") {
		t.Errorf("dhcp timeout on last attempt: phase %s reason %q, want failed with the DHCP reason", s.phase, s.reason)
	}
	s = nodeState{phase: PhaseWaitingDHCP, since: t0, attempt: 2, deadline: at(60), fromCD: true}
	p.step(&s, timeout(), at(60))
	if !strings.Contains(s.reason, "no script fetch from its virtual-media CD (static address, no DHCP) within 1m0s") {
		t.Errorf("virtual-media timeout: reason %q, want it to name the CD's script fetch", s.reason)
	}
	s = state(PhasePoweringOff)
	for range 3 {
		p.step(&s, doneErr(opPowerOff), at(0))
		p.step(&s, timeout(), at(100))
	}
	if want := "power off: connection refused (gave up after 3 tries)"; s.reason != want {
		t.Errorf("bmc give-up reason = %q, want %q", s.reason, want)
	}
}

// TestStallNamesTheLastNetbootStep: the stall reason names the last
// netboot step the node reached and how long ago, not whatever was said
// about the node since (an early node's config being issued while its boot
// had died at the kernel) nor the time since netboot began.
func TestStallNamesTheLastNetbootStep(t *testing.T) {
	t.Parallel()
	p := testPolicy() // netboot timeout 2m, 2 attempts
	kernel := input{kind: inEvent, event: Event{Kind: EventKernel, Detail: "/assets/vmlinuz"}}
	tests := []struct {
		name  string
		init  nodeState
		steps []stepWant
		want  string
	}{
		{"early node whose boot died at the kernel gets its turn", nodeState{phase: PhaseWaitingDHCP, since: t0, attempt: 1, early: true}, []stepWant{
			{ev(EventDHCP), 0, opNone, PhaseNetbooting, 1, 120},
			{kernel, 60, opNone, PhaseNetbooting, 1, 180},
			{done(opIssue), 100, opNone, PhaseNetbooting, 1, 180},
			{timeout(), 180, opPowerOff, PhasePoweringOff, 2, -1},
		}, "netboot stalled: no new step within 2m0s after kernel /assets/vmlinuz; power cycle 2/2"},
		{"held config let through, never fetched", nodeState{phase: PhaseWaitingDHCP, since: t0, attempt: 2, early: true}, []stepWant{
			{ev(EventDHCP), 0, opNone, PhaseNetbooting, 2, 120},
			{ev(EventConfig), 5, opNone, PhaseNetbooting, 2, -1}, // held
			{done(opIssue), 500, opNone, PhaseNetbooting, 2, 620},
			{timeout(), 620, opRevoke, PhaseFailed, 2, -1},
		}, "netboot stalled: no new step within 2m0s after its held config request was let through (gave up after 2 power cycles)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := tc.init
			for i, sw := range tc.steps {
				if got := p.step(&s, sw.in, at(sw.sec)); got != sw.wantOp || s.phase != sw.phase {
					t.Fatalf("step %d (%+v at +%ds) = %s in %s, want %s in %s", i, sw.in, sw.sec, got, s.phase, sw.wantOp, sw.phase)
				}
			}
			if got := s.last; got != tc.want {
				t.Errorf("stall message = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPhasePassedNetboot(t *testing.T) {
	t.Parallel()
	var got []Phase
	for _, p := range AllPhases() {
		if p.PassedNetboot() {
			got = append(got, p)
		}
	}
	if diff := cmp.Diff([]Phase{PhaseConfigFetched, PhaseJoining, PhaseReady}, got); diff != "" {
		t.Errorf("phases that passed netboot (-want +got):\n%s", diff)
	}
}
