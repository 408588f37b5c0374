package provision

import (
	"fmt"
	"time"
)

// op is one call the orchestrator makes on behalf of a node.
type op string

const (
	opNone     op = ""
	opIssue    op = "issue config"
	opPowerOff op = "power off"
	opSetBoot  op = "set netboot"
	opPowerOn  op = "power on"
	opRevoke   op = "revoke config"
)

// phaseOfOp is the phase in which each BMC op runs.
var phaseOfOp = map[op]Phase{
	opPowerOff: PhasePoweringOff,
	opSetBoot:  PhaseSettingBoot,
	opPowerOn:  PhasePoweringOn,
}

// policy is the part of Config the state machine needs.
type policy struct {
	timeouts    Timeouts
	maxAttempts int           // power cycles per run
	opTries     int           // tries of one BMC call
	backoff     time.Duration // first retry delay; doubles
	maxBackoff  time.Duration
}

// nodeState is one node's machine. Only the orchestrator's loop touches it.
type nodeState struct {
	phase    Phase
	since    time.Time // entered phase
	attempt  int       // power cycles started in this run
	tries    int       // tries of the current op
	deadline time.Time // zero: no deadline
	retry    op        // op to run at deadline (backoff), else deadline is a phase timeout
	reason   string    // why failed
	last     string    // last thing observed, for display
	events   int
	ignored  bool // the last event did not fit the phase and was dropped
	issued   bool // the node's config and token are issued
	held     bool // the node asked for its config before its turn; it waits
	early    bool // it was started before its turn (early netboot)
	// netboot holds a bit per netboot step (eventBit) seen in this boot;
	// step is the last netboot step seen and stepAt when it was first seen
	// (what a stall message names: last may since say something else, such
	// as the config being issued while the node's boot had died).
	netboot uint8
	step    string
	stepAt  time.Time
	// blockedBy names the first control-plane node when this node failed
	// only because that one did.
	blockedBy string
	// fromCD: the node boots its virtual-media CD, whose iPXE asks for the
	// script (no firmware DHCP to wait for, as PXE has).
	fromCD bool
}

// eventBit is a netboot step's bit in nodeState.netboot.
func eventBit(k EventKind) uint8 {
	switch k {
	case EventDHCP:
		return 1
	case EventTFTP:
		return 2
	case EventScript:
		return 4
	case EventKernel:
		return 8
	case EventInitrd:
		return 16
	}
	return 0
}

// inputKind is what drives a step.
type inputKind int

const (
	inStart   inputKind = iota // the scheduler admits the node
	inOpDone                   // an op finished (err may be set)
	inEvent                    // a boot/node event
	inTimeout                  // deadline reached
)

type input struct {
	kind  inputKind
	op    op
	err   error
	event Event
	// early (inStart): the node's turn has not come; it may power-cycle
	// and netboot now, its config is issued when its turn comes.
	early bool
}

// step advances s by one input at time now and returns the op to start, if
// any. It is a pure function of its arguments so every transition can be
// tested with a fake clock.
func (p policy) step(s *nodeState, in input, now time.Time) op {
	switch in.kind {
	case inStart:
		if s.phase != PhasePending {
			return opNone
		}
		if in.early {
			s.early = true
			o := p.powerCycle(s, now)
			s.last = "netbooting early; its config waits for its turn"
			return o
		}
		s.last = "issuing node config"
		return opIssue
	case inOpDone:
		return p.opDone(s, in, now)
	case inEvent:
		return p.event(s, in.event, now)
	case inTimeout:
		return p.timeout(s, now)
	}
	return opNone
}

func (s *nodeState) enter(ph Phase, now time.Time) {
	if ph != PhaseNetbooting {
		s.netboot, s.step, s.stepAt = 0, "", time.Time{}
	}
	s.phase = ph
	s.since = now
	s.deadline = time.Time{}
	s.retry = opNone
	s.tries = 0
}

// fail ends the node's run with reason. A node that holds join credentials
// has them revoked: a failed node will not use its token, and a token left
// behind would stay valid (and keep a control plane's uploaded CA keys in
// the cluster) for the rest of its TTL.
func (s *nodeState) fail(reason string, now time.Time) op {
	s.enter(PhaseFailed, now)
	s.reason = reason
	s.last = reason
	if s.issued {
		return opRevoke
	}
	return opNone
}

func (p policy) backoffFor(tries int) time.Duration {
	d := p.backoff
	for i := 1; i < tries && d < p.maxBackoff; i++ {
		d *= 2
	}
	return min(d, p.maxBackoff)
}

// powerCycle starts (another) power cycle: power off, set boot, power on.
func (p policy) powerCycle(s *nodeState, now time.Time) op {
	s.attempt++
	s.enter(PhasePoweringOff, now)
	return opPowerOff
}

func (p policy) opDone(s *nodeState, in input, now time.Time) op {
	switch in.op {
	case opIssue:
		if s.phase.Terminal() || (s.phase == PhasePending && s.early) {
			return opNone
		}
		if in.err != nil {
			return s.fail(fmt.Sprintf("issue node config: %v", in.err), now)
		}
		s.issued = true
		s.last = "node config issued"
		if s.phase == PhasePending {
			return p.powerCycle(s, now)
		}
		if s.held {
			// The node is waiting for its config: it may have it now.
			s.held = false
			s.deadline = now.Add(p.timeouts.Netboot)
			s.step, s.stepAt = "its held config request was let through", now
		}
		return opNone
	case opRevoke:
		return opNone
	}
	if phaseOfOp[in.op] != s.phase || s.retry != opNone {
		return opNone // stale answer from an earlier attempt
	}
	if in.err != nil {
		s.tries++
		if s.tries >= p.opTries {
			return s.fail(fmt.Sprintf("%s: %v (gave up after %d tries)", in.op, in.err, s.tries), now)
		}
		d := p.backoffFor(s.tries)
		s.retry = in.op
		s.deadline = now.Add(d)
		s.last = fmt.Sprintf("%s: %v; retry %d/%d in %s", in.op, in.err, s.tries+1, p.opTries, d)
		return opNone
	}
	switch in.op {
	case opPowerOff:
		s.enter(PhaseSettingBoot, now)
		s.last = "powered off"
		return opSetBoot
	case opSetBoot:
		s.enter(PhasePoweringOn, now)
		s.last = "one-time netboot set"
		return opPowerOn
	case opPowerOn:
		s.enter(PhaseWaitingDHCP, now)
		s.deadline = now.Add(p.timeouts.DHCP)
		s.last = "powered on"
	}
	return opNone
}

func (p policy) event(s *nodeState, ev Event, now time.Time) op {
	s.events++
	s.ignored = false
	desc := string(ev.Kind)
	if ev.Detail != "" {
		desc += " " + ev.Detail
	}
	switch s.phase {
	case PhasePending, PhasePoweringOff, PhaseSettingBoot, PhaseFailed:
		// Before power on anything seen belongs to an earlier boot; after
		// a failure nothing changes the outcome.
		s.ignored = true
		return opNone
	case PhaseReady:
		return opNone
	}
	rank := map[EventKind]int{EventDHCP: 1, EventTFTP: 1, EventScript: 1, EventKernel: 1, EventInitrd: 1,
		EventConfig: 2, EventJoined: 3, EventReady: 4}[ev.Kind]
	cur := map[Phase]int{PhasePoweringOn: 0, PhaseWaitingDHCP: 0, PhaseNetbooting: 1,
		PhaseConfigFetched: 2, PhaseJoining: 3}[s.phase]
	if ev.Kind == EventProgress {
		s.last = ev.Detail
		return opNone
	}
	if ev.Kind == EventNodeFailed {
		if s.phase != PhaseConfigFetched {
			// After the join the node is in the cluster: a later step's
			// failure is shown, readiness decides.
			s.last = "node reported " + ev.Detail
			return opNone
		}
		return s.fail("node reported "+ev.Detail, now)
	}
	if rank == 0 {
		s.ignored = true
		return opNone
	}
	s.last = desc
	if rank <= cur {
		// A netboot step reached for the first time in this boot is
		// progress: the node gets the whole netboot timeout again.
		if s.phase == PhaseNetbooting && s.netboot&eventBit(ev.Kind) == 0 {
			s.netboot |= eventBit(ev.Kind)
			s.step, s.stepAt = desc, now
			if !s.held {
				s.deadline = now.Add(p.timeouts.Netboot)
			}
		}
		return opNone
	}
	if rank >= 2 && !s.issued {
		// Early netboot: the config is not issued before the node's turn.
		// The request waits (no phase timeout while it does).
		s.held = true
		s.deadline = time.Time{}
		s.last = "config request held until its turn"
		return opNone
	}
	switch rank {
	case 1:
		s.enter(PhaseNetbooting, now)
		s.netboot = eventBit(ev.Kind)
		s.step, s.stepAt = desc, now
		s.deadline = now.Add(p.timeouts.Netboot)
	case 2:
		s.enter(PhaseConfigFetched, now)
		s.deadline = now.Add(p.timeouts.Join)
	case 3:
		s.enter(PhaseJoining, now)
		s.deadline = now.Add(p.timeouts.Ready)
	case 4:
		s.enter(PhaseReady, now)
		return opRevoke
	}
	s.last = desc
	return opNone
}

// stalled power-cycles a node whose boot stalled (why says how), or fails
// it when it has had every attempt.
func (p policy) stalled(s *nodeState, why string, now time.Time) op {
	if s.attempt >= p.maxAttempts {
		cycles := "power cycles"
		if s.attempt == 1 {
			cycles = "power cycle"
		}
		return s.fail(fmt.Sprintf("%s (gave up after %d %s)", why, s.attempt, cycles), now)
	}
	o := p.powerCycle(s, now)
	s.last = fmt.Sprintf("%s; power cycle %d/%d", why, s.attempt, p.maxAttempts)
	return o
}

func (p policy) timeout(s *nodeState, now time.Time) op {
	if s.deadline.IsZero() || now.Before(s.deadline) {
		return opNone
	}
	if s.retry != opNone {
		o := s.retry
		s.retry = opNone
		s.deadline = time.Time{}
		return o
	}
	waited := now.Sub(s.since).Round(time.Second)
	switch s.phase {
	case PhaseWaitingDHCP, PhaseNetbooting:
		why := "no DHCP request"
		if s.fromCD {
			why = "no script fetch from its virtual-media CD (static address, no DHCP)"
		}
		if s.phase == PhaseNetbooting {
			// waited is the whole netboot; the stall is since the step.
			return p.stalled(s, fmt.Sprintf("netboot stalled: no new step within %s after %s",
				now.Sub(s.stepAt).Round(time.Second), s.step), now)
		}
		return p.stalled(s, fmt.Sprintf("%s within %s", why, waited), now)
	case PhaseConfigFetched:
		return s.fail(fmt.Sprintf("node fetched its config but reported no join within %s", waited), now)
	case PhaseJoining:
		return s.fail(fmt.Sprintf("node joined but was not Ready within %s", waited), now)
	}
	return opNone
}
