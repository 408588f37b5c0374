package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// Config configures an Orchestrator. A zero field means the documented default.
type Config struct {
	// Nodes are the nodes to provision (normally the inventory's enabled
	// nodes). The first control-plane node inits the cluster.
	Nodes []inventory.Node
	// StateDir holds the journal and the lock (required).
	StateDir string
	// Command names the lock holder in "in use" errors (default "provisioner up").
	Command string
	// BMCs opens each node's BMC (required).
	BMCs BMCOpener
	// Issuer mints and revokes node configs (nil: none, for boot services
	// that serve configs on their own).
	Issuer Issuer
	// Readiness is asked whether joined nodes are Ready (nil: only
	// EventReady pushed through Observe counts).
	Readiness Readiness
	// ReadyPoll is how often Readiness is asked (default 2s).
	ReadyPoll time.Duration
	// Parallel bounds how many nodes are in flight at once (default 64).
	Parallel int
	// EarlyNetboot lets nodes whose turn has not come (the control plane
	// is not Ready yet) power-cycle and netboot as soon as every node whose
	// turn it is has been powered on; their config and join token are
	// issued when their turn comes, and a config request made before then
	// is held (Observe returns ErrHeld). Off: a node is not touched before
	// its turn.
	EarlyNetboot bool
	// Timeouts bound each phase and each call.
	Timeouts Timeouts
	// MaxAttempts is how many power cycles a node gets per run when no DHCP
	// request arrives or netboot stalls (default 3).
	MaxAttempts int
	// BMCTries is how many times one BMC call is tried (default 3).
	BMCTries int
	// Backoff is the delay before the first retry of a BMC call; it doubles
	// up to MaxBackoff (defaults 2s and 1m).
	Backoff, MaxBackoff time.Duration
	// Clock is the time source (nil: the wall clock).
	Clock Clock
	// Progress receives every change of every node, from one goroutine, in
	// order. It must not block for long (nil: none).
	Progress func(Update)
	// Metrics records Prometheus metrics (nil: none).
	Metrics *Metrics
	// Log receives operational logs (nil: discard).
	Log *slog.Logger
}

// Update is one change of one node, for progress display.
type Update struct {
	// Time is when the change happened.
	Time time.Time `json:"time"`
	// Node, Rack and Slot identify the node.
	Node string `json:"node"`
	Rack string `json:"rack,omitempty"`
	Slot int    `json:"slot,omitempty"`
	// Phase is the node's phase after the change; Since is when it entered it.
	Phase Phase     `json:"phase"`
	Since time.Time `json:"since"`
	// PhaseChanged is true when this update entered Phase.
	PhaseChanged bool `json:"phase_changed"`
	// Attempt is the power cycle the node is on.
	Attempt int `json:"attempt"`
	// Event is the last thing observed about the node.
	Event string `json:"event,omitempty"`
	// Reason says why the node failed.
	Reason string `json:"reason,omitempty"`
	// Resumed is true for the first update of a node taken over from the journal.
	Resumed bool `json:"resumed,omitempty"`
	// BlockedBy names the first control-plane node when this node failed
	// only because that one did (its own Reason says so too).
	BlockedBy string `json:"blocked_by,omitempty"`
}

// Orchestrator drives every node's state machine. Build it with New, then
// call Run once; Observe feeds it events while it runs.
type Orchestrator struct {
	cfg    Config
	pol    policy
	clock  Clock
	log    *slog.Logger
	inputs chan nodeInput
	done   chan struct{} // closed when Run's loop ends
	byMAC  map[string]int
	byName map[string]int
	once   sync.Once
}

type nodeInput struct {
	idx int
	in  input
	ack chan error // closed (or sent an error) once the result is durable
}

// New checks cfg and returns an Orchestrator.
func New(cfg Config) (*Orchestrator, error) {
	var errs []error
	if cfg.StateDir == "" {
		errs = append(errs, errors.New("no state directory"))
	}
	if cfg.BMCs == nil {
		errs = append(errs, errors.New("no BMC opener"))
	}
	o := &Orchestrator{byMAC: map[string]int{}, byName: map[string]int{}}
	for i, n := range cfg.Nodes {
		if _, dup := o.byName[n.Name]; dup {
			errs = append(errs, fmt.Errorf("node %s is listed twice", n.Name))
		}
		o.byName[n.Name] = i
		if len(n.MAC) > 0 {
			o.byMAC[strings.ToLower(n.MAC.String())] = i
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configure provisioning: %w", err)
	}
	if cfg.Command == "" {
		cfg.Command = "provisioner up"
	}
	if cfg.ReadyPoll <= 0 {
		cfg.ReadyPoll = 2 * time.Second
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 64
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.BMCTries <= 0 {
		cfg.BMCTries = 3
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 2 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Minute
	}
	cfg.Timeouts = cfg.Timeouts.withDefaults()
	o.cfg = cfg
	o.pol = policy{timeouts: cfg.Timeouts, maxAttempts: cfg.MaxAttempts, opTries: cfg.BMCTries,
		backoff: cfg.Backoff, maxBackoff: cfg.MaxBackoff}
	o.clock = cfg.Clock
	if o.clock == nil {
		o.clock = RealClock{}
	}
	o.log = cfg.Log
	if o.log == nil {
		o.log = discardLogger()
	}
	o.inputs = make(chan nodeInput, 1024)
	o.done = make(chan struct{})
	return o, nil
}

// ErrNotRunning is returned by Observe when Run has ended.
var ErrNotRunning = errors.New("provisioning is not running")

// ErrUnexpected is returned by Observe when the event does not fit the
// node's phase and was dropped: a config request from a node that is about
// to be power-cycled, for instance. A boot service should then refuse the
// request rather than serve it.
var ErrUnexpected = errors.New("event does not fit the node's phase")

// ErrHeld is returned by Observe for a config request of a node that
// netbooted early (Config.EarlyNetboot) before its turn: its config is not
// issued yet. The boot service should hold the request and ask again.
var ErrHeld = errors.New("node config held until the node's turn")

// Observe feeds one event to the node it names (by Node, else by MAC) and
// waits until the resulting transition is durable in the journal, so a
// caller that answers the node only after Observe returns (the config
// download, for instance) can rely on a resumed run knowing about it. Events
// about unknown nodes are ignored.
func (o *Orchestrator) Observe(ctx context.Context, ev Event) error {
	idx, ok := o.byName[ev.Node]
	if !ok {
		idx, ok = o.byMAC[strings.ToLower(ev.MAC)]
	}
	if !ok {
		return nil
	}
	ack := make(chan error, 1)
	select {
	case o.inputs <- nodeInput{idx: idx, in: input{kind: inEvent, event: ev}, ack: ack}:
	case <-o.done:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-ack:
		return err
	case <-o.done:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run-time view of one node.
type slot struct {
	node      inventory.Node
	st        nodeState
	stage     int
	started   bool // admitted in this run (or resumed in flight)
	busy      bool // an op is in flight
	bmc       BMC  // opened lazily by the op goroutine
	resumed   bool
	durations map[Phase]time.Duration
}

// Run provisions every node until each is Ready or failed, or ctx ends. It
// holds the state directory's lock throughout. The report covers every node;
// the error is nil unless the run itself could not go on (lock, journal,
// cancellation).
func (o *Orchestrator) Run(ctx context.Context) (*Report, error) {
	defer o.once.Do(func() { close(o.done) })
	lock, err := LockStateDir(o.cfg.StateDir, o.cfg.Command)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	j, prev, err := OpenJournal(o.cfg.StateDir, o.log)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	r := &runner{o: o, j: j, start: o.clock.Now()}
	r.init(prev, o.alreadyReady(ctx, prev))
	if len(r.adopted) > 0 {
		if err := j.Append(r.adopted...); err != nil {
			return r.report(o.clock.Now()), err
		}
	}
	rep, err := r.loop(ctx)
	if cerr := j.Compact(r.latest); cerr != nil && err == nil {
		err = cerr
	}
	return rep, err
}

type runner struct {
	o        *Orchestrator
	j        *Journal
	start    time.Time
	slots    []*slot
	latest   map[string]Record
	inflight int
	ops      sync.WaitGroup
	polling  bool
	nextPoll time.Time
	warnings []string
	// adopted are the Ready records of nodes init found Ready in the
	// cluster although the journal left them failed or before netboot.
	adopted []Record
}

// alreadyReady asks Readiness once about every node an earlier run left
// failed or before netboot, and returns those that are Ready Nodes now. A
// node that joined after that run gave up on it (its join outlasted the
// timeout, or the run was stopped) must not be power-cycled: it would run
// kubeadm join again under a name the cluster already has as a Ready Node,
// which kubeadm refuses. The first error (the cluster API does not answer:
// no node can be Ready in it) ends the asking.
func (o *Orchestrator) alreadyReady(ctx context.Context, prev *JournalState) map[string]bool {
	if o.cfg.Readiness == nil {
		return nil
	}
	var ready map[string]bool
	for _, n := range o.cfg.Nodes {
		rec, ok := prev.Nodes[n.Name]
		if !ok || rec.Phase.PassedNetboot() {
			continue // never seen (a first run asks nothing), or resumed as it stands
		}
		cctx, cancel := context.WithTimeout(ctx, o.pol.timeouts.BMC)
		ok, err := o.cfg.Readiness.Ready(cctx, n.Name)
		cancel()
		if err != nil {
			o.log.Info("cannot ask the cluster whether nodes an earlier run left unfinished joined since; they are provisioned again", "node", n.Name, "err", err)
			return ready
		}
		if ok {
			if ready == nil {
				ready = map[string]bool{}
			}
			ready[n.Name] = true
		}
	}
	return ready
}

func stageOf(nodes []inventory.Node) []int {
	stages := make([]int, len(nodes))
	first := true
	for i, n := range nodes {
		switch {
		case n.Role == inventory.RoleControlPlane && first:
			stages[i], first = 0, false
		case n.Role == inventory.RoleControlPlane:
			stages[i] = 1
		default:
			stages[i] = 2
		}
	}
	return stages
}

func (r *runner) init(prev *JournalState, readyNow map[string]bool) {
	o := r.o
	now := o.clock.Now()
	r.latest = make(map[string]Record, len(prev.Nodes)+len(o.cfg.Nodes))
	for k, v := range prev.Nodes {
		r.latest[k] = v // keep nodes not in this run (disabled ones) in the journal
	}
	r.warnings = prev.Warnings
	stages := stageOf(o.cfg.Nodes)
	for i, n := range o.cfg.Nodes {
		s := &slot{node: n, stage: stages[i], durations: map[Phase]time.Duration{}}
		s.st = nodeState{phase: PhasePending, since: now}
		if rec, ok := prev.Nodes[n.Name]; ok {
			switch {
			case readyNow[n.Name]:
				// Joined while no run followed it: take it as it is.
				s.st = nodeState{phase: PhaseReady, since: now, attempt: rec.Attempt,
					last: fmt.Sprintf("a Ready Node in the cluster (journal: %s): not power-cycled", rec.Phase)}
				s.resumed = true
				adopted := Record{Time: now, Node: n.Name, Phase: PhaseReady, Attempt: rec.Attempt}
				r.adopted = append(r.adopted, adopted)
				r.latest[n.Name] = adopted
			case rec.Phase == PhaseReady:
				s.st = nodeState{phase: PhaseReady, since: rec.Time, attempt: rec.Attempt, last: "ready (from journal)"}
				s.resumed = true
			case rec.Phase.PassedNetboot():
				// It booted its OS already: never power-cycle it; keep
				// waiting with a fresh deadline since we were away.
				s.st = nodeState{phase: rec.Phase, since: rec.Time, attempt: rec.Attempt, last: "resumed from journal", issued: true}
				if rec.Phase == PhaseConfigFetched {
					s.st.deadline = now.Add(o.pol.timeouts.Join)
				} else {
					s.st.deadline = now.Add(o.pol.timeouts.Ready)
				}
				s.started = true
				s.resumed = true
				r.inflight++
			default:
				// Before netboot nothing is on the node yet: start over.
				s.st.last = fmt.Sprintf("restarting (journal: %s)", rec.Phase)
			}
		}
		s.st.fromCD = n.Boot.Method == inventory.BootMethodVirtualMedia
		r.slots = append(r.slots, s)
	}
	for _, s := range r.slots {
		r.emit(s, now, s.resumed)
		o.cfg.Metrics.setPhase("", s.st.phase)
	}
}

func (r *runner) emit(s *slot, now time.Time, changed bool) {
	if r.o.cfg.Progress == nil {
		return
	}
	r.o.cfg.Progress(Update{Time: now, Node: s.node.Name, Rack: s.node.Rack, Slot: s.node.Slot,
		Phase: s.st.phase, Since: s.st.since, PhaseChanged: changed, Attempt: s.st.attempt,
		Event: s.st.last, Reason: s.st.reason, Resumed: s.resumed && changed, BlockedBy: s.st.blockedBy})
}

func (r *runner) allDone() bool {
	for _, s := range r.slots {
		if !s.st.phase.Terminal() {
			return false
		}
	}
	return true
}

func (r *runner) loop(ctx context.Context) (*Report, error) {
	o := r.o
	var pending []nodeInput
	var recs []Record
	type ackErr struct {
		ch  chan error
		err error
	}
	var acks []ackErr
	var ops []func(context.Context)
	timer := o.clock.NewTimer(time.Hour)
	defer func() { timer.Stop() }()
	pollDone := make(chan struct{}, 1)

	apply := func(s *slot, in input, now time.Time) {
		before := s.st
		nextOp := o.pol.step(&s.st, in, now)
		r.after(s, before, nextOp, now, &recs, &ops)
	}
	for {
		now := o.clock.Now()
		r.admit(now, &recs, &ops, apply)
		if len(recs) > 0 {
			if err := r.j.Append(recs...); err != nil {
				for _, a := range acks {
					a.ch <- err
				}
				o.once.Do(func() { close(o.done) })
				r.ops.Wait()
				return r.report(o.clock.Now()), err
			}
			for _, rec := range recs {
				r.latest[rec.Node] = rec
			}
			recs = recs[:0]
		}
		for _, a := range acks {
			if a.err != nil {
				a.ch <- a.err
			}
			close(a.ch)
		}
		acks = acks[:0]
		for _, f := range ops {
			f(ctx)
		}
		ops = ops[:0]
		if r.allDone() {
			o.once.Do(func() { close(o.done) })
			r.ops.Wait() // let revokes finish
			return r.report(o.clock.Now()), nil
		}
		// Sleep until the nearest deadline or the next readiness poll.
		wake := time.Time{}
		for _, s := range r.slots {
			if !s.st.deadline.IsZero() && (wake.IsZero() || s.st.deadline.Before(wake)) {
				wake = s.st.deadline
			}
		}
		if o.cfg.Readiness != nil && !r.polling && r.wantPoll() {
			if r.nextPoll.IsZero() || !now.Before(r.nextPoll) {
				r.poll(ctx, pollDone)
				r.nextPoll = now.Add(o.cfg.ReadyPoll)
			}
			if wake.IsZero() || r.nextPoll.Before(wake) {
				wake = r.nextPoll
			}
		}
		timer.Stop()
		d := time.Hour
		if !wake.IsZero() {
			d = max(wake.Sub(now), 0)
		}
		timer = o.clock.NewTimer(d)
		select {
		case <-ctx.Done():
			o.once.Do(func() { close(o.done) })
			r.ops.Wait()
			for _, a := range acks {
				a.ch <- ctx.Err()
			}
			return r.report(o.clock.Now()), ctx.Err()
		case ni := <-o.inputs:
			pending = append(pending[:0], ni)
		drain:
			for len(pending) < 4096 {
				select {
				case ni := <-o.inputs:
					pending = append(pending, ni)
				default:
					break drain
				}
			}
		case <-timer.C():
		case <-pollDone:
			r.polling = false
		}
		now = o.clock.Now()
		for _, ni := range pending {
			s := r.slots[ni.idx]
			if ni.in.kind == inOpDone && ni.in.op != opRevoke {
				s.busy = false
			}
			apply(s, ni.in, now)
			if ni.ack != nil {
				var err error
				switch {
				case ni.in.kind == inEvent && s.st.ignored:
					err = fmt.Errorf("%s from %s in phase %s: %w", ni.in.event.Kind, s.node.Name, s.st.phase, ErrUnexpected)
				case ni.in.kind == inEvent && ni.in.event.Kind == EventConfig && s.st.held:
					err = fmt.Errorf("config of %s: %w", s.node.Name, ErrHeld)
				}
				acks = append(acks, ackErr{ni.ack, err})
			}
		}
		pending = pending[:0]
		for _, s := range r.slots {
			if !s.busy && !s.st.deadline.IsZero() && !now.Before(s.st.deadline) {
				apply(s, input{kind: inTimeout}, now)
			}
		}
	}
}

// after records what a step changed and schedules its op.
func (r *runner) after(s *slot, before nodeState, nextOp op, now time.Time, recs *[]Record, ops *[]func(context.Context)) {
	o := r.o
	changed := before.phase != s.st.phase || before.attempt != s.st.attempt
	if changed {
		*recs = append(*recs, Record{Time: now, Node: s.node.Name, Phase: s.st.phase, Attempt: s.st.attempt, Reason: s.st.reason})
		if before.phase != s.st.phase {
			d := now.Sub(before.since)
			s.durations[before.phase] += d
			o.cfg.Metrics.phaseDone(before.phase, d)
			o.cfg.Metrics.setPhase(before.phase, s.st.phase)
		}
		if s.st.attempt > before.attempt && before.attempt > 0 {
			o.cfg.Metrics.retry("power-cycle")
		}
		if s.st.phase.Terminal() && s.started {
			s.started = false
			r.inflight--
		}
		switch {
		case s.st.phase == PhaseFailed && s.st.blockedBy != "":
			// Said once, by the first control plane's own failure and
			// the report; not once per waiting node.
			o.log.Debug("node stopped", "node", s.node.Name, "phase", before.phase, "blocked_by", s.st.blockedBy)
		case s.st.phase == PhaseFailed:
			o.log.Warn("node failed", "node", s.node.Name, "phase", before.phase, "err", s.st.reason)
		case s.st.phase == PhaseReady:
			o.log.Debug("node ready", "node", s.node.Name) // the progress output says it
		default:
			o.log.Debug("node phase", "node", s.node.Name, "phase", s.st.phase, "attempt", s.st.attempt)
		}
	}
	if before.retry == opNone && s.st.retry != opNone {
		o.cfg.Metrics.retry(string(s.st.retry))
	}
	if changed || before.last != s.st.last {
		r.emit(s, now, changed)
	}
	if nextOp != opNone {
		*ops = append(*ops, r.startOp(s, nextOp))
	}
}

// admit starts pending nodes whose stage is open, up to Parallel in flight.
func (r *runner) admit(now time.Time, recs *[]Record, ops *[]func(context.Context), apply func(*slot, input, time.Time)) {
	o := r.o
	open, blockedBy := r.openStage()
	// Early nodes wait until every node whose turn it is has been powered
	// on: the first control plane is the critical path, and a thousand
	// early power cycles must not queue in front of its BMC calls.
	early := o.cfg.EarlyNetboot && blockedBy == "" && r.poweredOn(open)
	for _, s := range r.slots {
		if s.st.phase.Terminal() || s.busy {
			continue
		}
		if blockedBy != "" && !s.st.issued {
			before := s.st
			why := "not started"
			if s.started {
				why = "stopped"
			}
			next := s.st.fail(fmt.Sprintf("%s: first control-plane node %s failed, so there is no cluster to join", why, blockedBy), now)
			s.st.blockedBy = blockedBy
			r.after(s, before, next, now, recs, ops)
			continue
		}
		if s.started {
			// An early node whose turn has come gets its config now.
			if s.st.early && !s.st.issued && s.stage <= open {
				*ops = append(*ops, r.startOp(s, opIssue))
			}
			continue
		}
		if r.inflight >= o.cfg.Parallel || (s.stage > open && !early) {
			continue
		}
		s.started = true
		r.inflight++
		apply(s, input{kind: inStart, early: s.stage > open}, now)
	}
}

// poweredOn reports whether every node of stages up to open is past its
// power-on (or done).
func (r *runner) poweredOn(open int) bool {
	for _, s := range r.slots {
		if s.stage > open || s.st.phase.Terminal() {
			continue
		}
		switch s.st.phase {
		case PhasePending, PhasePoweringOff, PhaseSettingBoot, PhasePoweringOn:
			return false
		}
	}
	return true
}

// openStage returns the highest stage whose nodes may start, or the name of
// the first control-plane node when it failed and nothing can join.
func (r *runner) openStage() (int, string) {
	done := [3]bool{true, true, true}
	for _, s := range r.slots {
		if !s.st.phase.Terminal() {
			done[s.stage] = false
		}
		if s.stage == 0 && s.st.phase == PhaseFailed {
			return -1, s.node.Name
		}
	}
	switch {
	case !done[0]:
		return 0, ""
	case !done[1]:
		return 1, ""
	}
	return 2, ""
}

func joinKind(stage int) JoinKind {
	switch stage {
	case 0:
		return JoinInit
	case 1:
		return JoinControlPlane
	}
	return JoinWorker
}

// startOp returns a function that runs op for s in its own goroutine, with
// its own timeout, and reports back through the inputs channel.
func (r *runner) startOp(s *slot, p op) func(context.Context) {
	o := r.o
	if p != opRevoke {
		s.busy = true
	}
	idx := o.byName[s.node.Name]
	node := s.node
	kind := joinKind(s.stage)
	return func(runCtx context.Context) {
		r.ops.Add(1)
		go func() {
			defer r.ops.Done()
			timeout := o.pol.timeouts.BMC
			if p == opIssue || p == opRevoke {
				timeout = o.pol.timeouts.Issue
			}
			ctx, cancel := context.WithTimeout(runCtx, timeout)
			defer cancel()
			t0 := time.Now()
			err := r.call(ctx, s, node, kind, p)
			if phaseOfOp[p] != "" {
				o.cfg.Metrics.bmcCall(string(p), time.Since(t0), err)
			}
			if p == opRevoke {
				if err != nil {
					o.log.Warn("revoke node config", "node", node.Name, "err", err)
				}
				return
			}
			select {
			case o.inputs <- nodeInput{idx: idx, in: input{kind: inOpDone, op: p, err: err}}:
			case <-o.done:
			}
		}()
	}
}

func (r *runner) call(ctx context.Context, s *slot, n inventory.Node, kind JoinKind, p op) error {
	o := r.o
	switch p {
	case opIssue:
		if o.cfg.Issuer == nil {
			return nil
		}
		return o.cfg.Issuer.Issue(ctx, n, kind)
	case opRevoke:
		if o.cfg.Issuer == nil {
			return nil
		}
		return o.cfg.Issuer.Revoke(ctx, n)
	}
	if s.bmc == nil {
		b, err := o.cfg.BMCs.OpenBMC(ctx, n)
		if err != nil {
			return fmt.Errorf("open bmc %s: %w", n.BMC.Addr(), err)
		}
		s.bmc = b
	}
	switch p {
	case opPowerOff:
		return s.bmc.PowerOff(ctx)
	case opSetBoot:
		return s.bmc.SetNetboot(ctx)
	case opPowerOn:
		if err := s.bmc.PowerOn(ctx); err != nil {
			return err
		}
		// The node needs its BMC again only for another power cycle: let
		// the session go now (BMCs allow few; a rack holds thousands).
		if c, ok := s.bmc.(interface{ Close(context.Context) error }); ok {
			if err := c.Close(ctx); err != nil {
				o.log.Debug("close bmc session", "node", n.Name, "err", err)
			}
		}
		s.bmc = nil
		return nil
	}
	return fmt.Errorf("unknown op %q", p)
}

func (r *runner) wantPoll() bool {
	for _, s := range r.slots {
		if s.st.phase == PhaseConfigFetched || s.st.phase == PhaseJoining {
			return true
		}
	}
	return false
}

// poll asks Readiness about every joining node in one goroutine.
func (r *runner) poll(ctx context.Context, done chan<- struct{}) {
	o := r.o
	var names []string
	var idxs []int
	for i, s := range r.slots {
		if s.st.phase == PhaseConfigFetched || s.st.phase == PhaseJoining {
			names = append(names, s.node.Name)
			idxs = append(idxs, i)
		}
	}
	r.polling = true
	r.ops.Add(1)
	go func() {
		defer r.ops.Done()
		defer func() { done <- struct{}{} }()
		for k, name := range names {
			cctx, cancel := context.WithTimeout(ctx, o.pol.timeouts.BMC)
			ok, err := o.cfg.Readiness.Ready(cctx, name)
			cancel()
			if err != nil {
				o.log.Debug("ask node readiness", "node", name, "err", err)
				continue
			}
			if !ok {
				continue
			}
			select {
			case o.inputs <- nodeInput{idx: idxs[k], in: input{kind: inEvent, event: Event{Node: name, Kind: EventReady}}}:
			case <-o.done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
}
