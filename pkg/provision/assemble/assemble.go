package assemble

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/slipway-dev/slipway/pkg/addons"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/pxe"
)

// Provisioner is `provisioner up` assembled: build it with New, then call
// Run once.
type Provisioner struct {
	opts    Options
	baseURL string
	o       *provision.Orchestrator
	svc     *pxe.Services
	opener  *BMCOpener
	addons  *addonStep
	joins   joinReadiness
}

// Result is what a run did.
type Result struct {
	// Report is the orchestrator's report; nil only when the run could not
	// start (state directory locked, journal unreadable).
	Report *provision.Report
	// Addons is what applying the inventory's add-ons did; nil when the
	// inventory lists none or the mode has no cluster.
	Addons *AddonsResult
}

// AddonsResult is the outcome of applying the inventory's add-ons.
type AddonsResult struct {
	Objects []addons.Result
	// Err says why they were not (all) applied.
	Err error
	// Addons is every add-on of the inventory, in order, with what
	// applying it did.
	Addons []AddonOutcome
}

// AddonOutcome is what applying one add-on did.
type AddonOutcome struct {
	// Name is the add-on's name (inventory.Addon.Name).
	Name string
	// Objects are its objects (or its chart release) applied.
	Objects []addons.Result
	// Err says why it is not (all) applied; nil when it is.
	Err error
}

// New builds the provisioner from opts, in the order the package doc
// gives. Nothing runs yet and no BMC is contacted; the PKI is created in
// the state directory when it is missing (JoinKubeadm).
func New(opts Options) (*Provisioner, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	inv := opts.Inventory
	pcfg := opts.Boot.pxeConfig(inv, opts.Bus, opts.ServiceLog)
	baseURL, err := pcfg.BaseURL()
	if err != nil {
		return nil, err
	}
	p := &Provisioner{opts: opts, baseURL: baseURL}
	// Credentials, renderer, readiness.
	creds, err := newCredentials(opts, baseURL)
	if err != nil {
		return nil, err
	}
	readiness := creds.readiness
	if opts.Join == JoinReportOnly {
		readiness = nil // the bridge turns a join report into EventReady
	}
	reg := prometheus.NewRegistry()
	metrics, err := provision.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("assemble provisioner: register metrics: %w", err)
	}
	p.opener = NewBMCOpener(opts.BMC)
	p.o, err = provision.New(provision.Config{
		Nodes: inv.Enabled(), StateDir: opts.StateDir, Command: opts.Command,
		BMCs: p.opener, Issuer: creds.issuer, Readiness: readiness, ReadyPoll: opts.ReadyPoll,
		Parallel: opts.Parallel, MaxAttempts: opts.MaxAttempts, Timeouts: opts.Timeouts, EarlyNetboot: opts.EarlyNetboot,
		BMCTries: opts.BMCTries, Backoff: opts.Backoff,
		Progress: opts.Progress, Metrics: metrics, Log: opts.Log,
	})
	if err != nil {
		return nil, err
	}
	pcfg.Renderer = &journaledRenderer{next: creds.renderer, o: p.o}
	pcfg.Registry = reg
	if p.svc, err = pxe.New(pcfg); err != nil {
		return nil, err
	}
	// Last, as it binds its listener: nothing after it can fail. The CDs
	// chain to the port the boot HTTP server really listens on.
	media := opts.Media
	if media.ISO.HTTPPort == 0 {
		media.ISO.HTTPPort, _ = pcfg.ServedHTTPPort() // BaseURL checked it
	}
	if p.opener.media, err = newMediaServer(inv, media, opts.Log); err != nil {
		return nil, err
	}
	p.addons = creds.addons
	p.joins = joinReadiness{ready: opts.Join == JoinReportOnly}
	return p, nil
}

// Endpoints are where the provisioner serves what nodes and BMCs fetch.
type Endpoints struct {
	// Boot is the boot HTTP server's URL as nodes reach it; it also serves
	// /metrics and /healthz.
	Boot string
	// Media is the virtual-media CD server's URL as BMCs reach it (empty:
	// no node boots from virtual media).
	Media string
}

// Endpoints returns where the provisioner serves.
func (p *Provisioner) Endpoints() Endpoints {
	e := Endpoints{Boot: p.baseURL}
	if m := p.opener.media; m != nil {
		e.Media = m.base
	}
	return e
}

// Run runs the boot services, the event bridge, the add-ons, the Beside
// functions and the orchestrator until every node is Ready or failed (or
// ctx is done), then stops the services, logs out of every BMC session
// still open and returns the result. The error is the orchestrator's, else
// that of the part that failed ("boot services: ...", "virtual-media cd
// server: ...", or a Beside function's own); when ctx ended the run it is
// ctx.Err().
func (p *Provisioner) Run(ctx context.Context) (*Result, error) {
	svcCtx, stopSvc := context.WithCancel(ctx)
	defer stopSvc()
	g, gctx := errgroup.WithContext(svcCtx)
	events, unsubscribe := p.opts.Bus.Subscribe(0)
	defer unsubscribe()
	g.Go(func() error {
		if err := p.svc.Run(gctx); err != nil {
			return fmt.Errorf("boot services: %w", err)
		}
		return nil
	})
	g.Go(func() error { bridge(gctx, p.o, events, p.joins); return nil })
	if m := p.opener.media; m != nil {
		g.Go(func() error { return m.run(gctx) })
	}
	for _, f := range p.opts.Beside {
		g.Go(func() error { return f(gctx) })
	}
	res := &Result{}
	if p.addons != nil {
		g.Go(func() error { res.Addons = p.addons.run(gctx); return nil })
	}
	var runErr error
	g.Go(func() error {
		res.Report, runErr = p.o.Run(gctx)
		stopSvc() // every node is done: stop serving
		return nil
	})
	svcErr := g.Wait()
	p.opener.CloseAll()
	if res.Report == nil {
		res = &Result{}
	}
	switch {
	case runErr != nil && !errors.Is(runErr, context.Canceled):
		return res, runErr
	case svcErr != nil && !errors.Is(svcErr, context.Canceled):
		return res, svcErr
	}
	return res, ctx.Err()
}
