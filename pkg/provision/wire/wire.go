package wire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/pxe"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
	"github.com/slipway-dev/slipway/pkg/pxe/httpboot"
)

// Config configures a Provisioner. A zero field means the documented default.
type Config struct {
	// Nodes are the nodes to provision (normally the inventory's enabled
	// nodes). Required.
	Nodes []inventory.Node
	// StateDir holds the journal and the lock. Required.
	StateDir string
	// Command names the lock holder in "in use" errors (default "provisioner up").
	Command string
	// Services are the boot services; Run runs them. Required.
	Services *pxe.Services
	// Renderer is the renderer the boot services were built with, when it is
	// a JournaledRenderer: Run tells it about the orchestrator, so a config
	// fetch is journaled before the config is served (nil: configs are
	// served without journaling first).
	Renderer *JournaledRenderer
	// BMC configures the BMC clients (zero: package bmc's defaults). Its
	// Log defaults to Log.
	BMC bmc.Config
	// Issuer mints and revokes node configs (nil: none).
	Issuer provision.Issuer
	// Readiness is asked whether joined nodes are Ready (nil: only
	// EventReady counts).
	Readiness provision.Readiness
	// ReadyPoll is how often Readiness is asked (0: the orchestrator's default, 2s).
	ReadyPoll time.Duration
	// Parallel bounds how many nodes are in flight at once (0: 64).
	Parallel int
	// MaxAttempts is how many power cycles a node gets per run (0: 3).
	MaxAttempts int
	// Timeouts bound each phase and each call (zero fields: the orchestrator's defaults).
	Timeouts provision.Timeouts
	// EarlyNetboot lets later nodes netboot while the control plane comes
	// up (see provision.Config.EarlyNetboot).
	EarlyNetboot bool
	// Progress receives every change of every node (nil: none).
	Progress func(provision.Update)
	// Metrics records Prometheus metrics (nil: none).
	Metrics *provision.Metrics
	// Beside are functions run beside the boot services, under the same
	// errgroup, with a context cancelled once provisioning ends (a metrics
	// server, a simulated rack, add-ons). An error from one stops the run.
	Beside []func(ctx context.Context) error
	// Log receives operational logs (nil: discard).
	Log *slog.Logger
}

// Provisioner is `provisioner up` as a library: the orchestrator wired to
// BMCs and boot services. Build it with New, then call Run once.
type Provisioner struct {
	cfg    Config
	o      *provision.Orchestrator
	opener *BMCOpener
}

// New checks cfg and builds the orchestrator.
func New(cfg Config) (*Provisioner, error) {
	if cfg.Services == nil {
		return nil, errors.New("build provisioner: no boot services (Config.Services is nil)")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	bcfg := cfg.BMC
	if bcfg.Log == nil {
		bcfg.Log = cfg.Log
	}
	opener := NewBMCOpener(bcfg)
	o, err := provision.New(provision.Config{
		Nodes: cfg.Nodes, StateDir: cfg.StateDir, Command: cfg.Command,
		BMCs: opener, Issuer: cfg.Issuer, Readiness: cfg.Readiness,
		Parallel: cfg.Parallel, MaxAttempts: cfg.MaxAttempts, Timeouts: cfg.Timeouts, EarlyNetboot: cfg.EarlyNetboot,
		Progress: cfg.Progress, Metrics: cfg.Metrics, Log: cfg.Log, ReadyPoll: cfg.ReadyPoll,
	})
	if err != nil {
		return nil, err
	}
	return &Provisioner{cfg: cfg, o: o, opener: opener}, nil
}

// Orchestrator returns the orchestrator, for callers that feed it events
// of their own (such as EventReady from a watch).
func (p *Provisioner) Orchestrator() *provision.Orchestrator { return p.o }

// Run runs the boot services, the functions in Config.Beside and the
// orchestrator until every node is Ready or failed (or ctx is done), then
// stops the services, logs out of every BMC still open and returns the
// report. The report is nil only when the orchestrator could not start
// (state directory locked, journal unreadable). The error is the
// orchestrator's, else a service's ("boot services: ..."); a cancellation
// is not an error of its own: when ctx ended the run, the error is ctx.Err().
func (p *Provisioner) Run(ctx context.Context) (*provision.Report, error) {
	if p.cfg.Renderer != nil {
		p.cfg.Renderer.SetOrchestrator(p.o)
		defer p.cfg.Renderer.SetOrchestrator(nil)
	}
	svcCtx, stopSvc := context.WithCancel(ctx)
	defer stopSvc()
	g, gctx := errgroup.WithContext(svcCtx)
	events, unsubscribe := p.cfg.Services.Bus().Subscribe(0)
	defer unsubscribe()
	g.Go(func() error { return p.cfg.Services.Run(gctx) })
	g.Go(func() error { BridgeEvents(gctx, p.o, events); return nil })
	for _, f := range p.cfg.Beside {
		g.Go(func() error { return f(gctx) })
	}
	var rep *provision.Report
	var runErr error
	g.Go(func() error {
		rep, runErr = p.o.Run(gctx)
		stopSvc() // every node is done: stop serving
		return nil
	})
	svcErr := g.Wait()
	p.opener.CloseAll()
	switch {
	case runErr != nil && !errors.Is(runErr, context.Canceled):
		return rep, runErr
	case svcErr != nil && !errors.Is(svcErr, context.Canceled):
		return rep, fmt.Errorf("boot services: %w", svcErr)
	}
	return rep, ctx.Err()
}

// JournaledRenderer wraps the node-config renderer the boot server calls
// before it answers a config request: the orchestrator journals "config
// fetched" first (and refuses a node it is about to power-cycle), so a
// provisioner killed right after serving a config still knows, when it
// resumes, that the node booted its OS and must not be power-cycled.
// Provisioner.Run connects it to its orchestrator.
type JournaledRenderer struct {
	next httpboot.Renderer
	mu   sync.Mutex
	o    *provision.Orchestrator
}

// NewJournaledRenderer returns a renderer that journals each fetch, then
// asks next for the config.
func NewJournaledRenderer(next httpboot.Renderer) *JournaledRenderer {
	return &JournaledRenderer{next: next}
}

// SetOrchestrator sets the orchestrator that journals fetches (nil: none,
// configs are rendered at once).
func (j *JournaledRenderer) SetOrchestrator(o *provision.Orchestrator) {
	j.mu.Lock()
	j.o = o
	j.mu.Unlock()
}

// Render journals the fetch, then renders. A node that netbooted before its
// turn (EarlyNetboot) waits here, checking every 250 ms, until its turn
// comes or ctx ends.
func (j *JournaledRenderer) Render(ctx context.Context, n inventory.Node) ([]byte, error) {
	j.mu.Lock()
	o := j.o
	j.mu.Unlock()
	if o != nil {
		// The request stays open while the node waits: the boot server has
		// no write timeout.
		for {
			err := o.Observe(ctx, provision.Event{Node: n.Name, Kind: provision.EventConfig})
			if err == nil {
				break
			}
			if !errors.Is(err, provision.ErrHeld) {
				return nil, fmt.Errorf("serve node config of %s: %w", n.Name, err)
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("serve node config of %s: %w", n.Name, ctx.Err())
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return j.next.Render(ctx, n)
}

// joinedStep matches the phone-home body a node config sends after kubeadm
// ran: "step=kubeadm-join status=ok" (or kubeadm-init), as pkg/kubeadm's
// script reports it.
var joinedStep = regexp.MustCompile(`step=kubeadm-(init|join) status=ok`)

// ToEvent translates a boot-service event into the orchestrator's; ok is
// false for events the orchestrator does not need. A phone-home whose body
// reports a successful kubeadm init or join step becomes EventJoined; any
// other phone-home is EventProgress.
func ToEvent(e bootevent.Event) (ev provision.Event, ok bool) {
	pe := provision.Event{Node: e.Node, Time: e.Time, Detail: e.Path}
	if len(e.MAC) > 0 {
		pe.MAC = e.MAC.String()
	}
	switch e.Kind {
	case bootevent.DHCPDiscover, bootevent.DHCPRequest:
		pe.Kind, pe.Detail = provision.EventDHCP, e.Detail
	case bootevent.TFTPServed:
		pe.Kind = provision.EventTFTP
	case bootevent.ScriptServed:
		pe.Kind = provision.EventScript
	case bootevent.KernelServed:
		pe.Kind = provision.EventKernel
	case bootevent.InitrdServed:
		pe.Kind = provision.EventInitrd
	case bootevent.ConfigFetched:
		pe.Kind, pe.Detail = provision.EventConfig, ""
	case bootevent.PhoneHome:
		pe.Kind, pe.Detail = provision.EventProgress, "phone-home "+e.Detail
		if joinedStep.MatchString(e.Detail) {
			pe.Kind, pe.Detail = provision.EventJoined, ""
		}
	default:
		return pe, false
	}
	if pe.Node == "" && pe.MAC == "" {
		return pe, false
	}
	return pe, true
}

// BridgeEvents feeds boot-service events to o until ctx ends or events is
// closed. Observe waits for the journal, so each event gets its own
// goroutine and the bus is drained at once (a full subscription would drop
// events). It returns once every Observe it started has returned.
func BridgeEvents(ctx context.Context, o *provision.Orchestrator, events <-chan bootevent.Event) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-events:
			if !ok {
				return
			}
			pe, ok := ToEvent(e)
			if !ok {
				continue
			}
			wg.Go(func() { o.Observe(ctx, pe) })
		}
	}
}
