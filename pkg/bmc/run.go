package bmc

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// DefaultParallel is how many BMCs Run talks to at once by default.
const DefaultParallel = 64

// Step is one thing Run does on each node's open Client; it records what it
// learns in the Result.
type Step struct {
	// Name names the step in logs.
	Name string
	// Do performs the step.
	Do func(ctx context.Context, c *Client, r *Result) error
}

// StatusStep reads the power state.
func StatusStep() Step {
	return Step{Name: "power status", Do: func(ctx context.Context, c *Client, r *Result) error {
		st, err := c.PowerState(ctx)
		r.Power = st
		return err
	}}
}

// PowerStep performs a power action and records the state read back. An
// action whose effect cannot be observed (a reset on a BMC without reboot
// evidence) is recorded in Result.Unverified, not as a failure and not as
// ok.
func PowerStep(a PowerAction) Step {
	return Step{Name: "power " + string(a), Do: func(ctx context.Context, c *Client, r *Result) error {
		res, err := c.Power(ctx, a)
		r.Power = res.State
		if err != nil {
			return err
		}
		r.Evidence = res.Evidence
		if !res.Verified {
			r.Unverified = (&NotVerifiedError{Action: a, Why: res.Evidence}).Error()
		}
		return nil
	}}
}

// BootStep sets the next boot device and records the override read back.
func BootStep(d BootDevice, o BootOptions) Step {
	return Step{Name: "set boot device " + string(d), Do: func(ctx context.Context, c *Client, r *Result) error {
		got, err := c.SetBoot(ctx, d, o)
		if got != (BootOverride{}) || err == nil {
			r.Boot = &got
		}
		return err
	}}
}

// InsertMediaStep inserts the image at url into the virtual CD and records
// the media read back (nothing when the CD could not be read).
func InsertMediaStep(url string) Step {
	return Step{Name: "insert virtual media", Do: func(ctx context.Context, c *Client, r *Result) error {
		m, read, err := c.insertMedia(ctx, url)
		if read {
			r.Media = &m
		}
		return err
	}}
}

// EjectMediaStep empties the virtual CD and records it read back (nothing
// when the CD could not be read).
func EjectMediaStep() Step {
	return Step{Name: "eject virtual media", Do: func(ctx context.Context, c *Client, r *Result) error {
		m, read, err := c.ejectMediaOp(ctx)
		if read {
			r.Media = &m
		}
		return err
	}}
}

// Result is what happened on one node, as read back from its BMC.
type Result struct {
	// Node is the node name and BMC its BMC address.
	Node string
	BMC  string
	// Info describes the BMC (protocol, vendor, model, quirks), as far as
	// the connection got.
	Info Info
	// Power is the last power state read ("" if none).
	Power PowerState
	// Evidence says how the last power action was verified (or what is
	// missing when it could not be).
	Evidence string
	// Unverified is set when a power action was sent but its effect cannot
	// be observed ("reset sent, not verifiable: ..."); such a node is
	// neither ok nor failed.
	Unverified string
	// Boot is the boot override read back (bootdev only).
	Boot *BootOverride
	// Media is the virtual CD read back (bootdev cd only; nil when it
	// could not be read).
	Media *Media
	// Took is the node's wall time, connect and log out included.
	Took time.Duration
	// Err is the first failure, an *OpError; nil when every step passed.
	Err error
}

// Status is "ok", "unverified" or "failed".
func (r Result) Status() string {
	switch {
	case r.Err != nil:
		return "failed"
	case r.Unverified != "":
		return "unverified"
	}
	return "ok"
}

// RunConfig configures Run.
type RunConfig struct {
	// Parallel is how many BMCs are worked on at once (default 64).
	Parallel int
	// Client configures every Client.
	Client Config
}

// Run opens each node's BMC, performs steps in order (stopping a node at its
// first failure), logs out, and returns one Result per node in the order of
// nodes. At most Parallel nodes are in progress at once; a dead or hanging
// BMC holds only its own slot, for at most its timeouts. When ctx is
// cancelled, nodes not started are reported as cancelled and nodes in
// progress stop at their next BMC call and still log out.
func Run(ctx context.Context, nodes []inventory.Node, cfg RunConfig, steps ...Step) []Result {
	par := cfg.Parallel
	if par <= 0 {
		par = DefaultParallel
	}
	results := make([]Result, len(nodes))
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i, n := range nodes {
		results[i] = Result{Node: n.Name, BMC: n.BMC.Addr(), Info: Info{Protocol: string(n.BMC.Protocol)}}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			results[i].Err = &OpError{Op: opName(steps), Node: n.Name, BMC: n.BMC.Addr(), Err: fmt.Errorf("not started: %w", cancelled(ctx.Err()))}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			runNode(ctx, n, cfg.Client, steps, &results[i])
		}()
	}
	wg.Wait()
	return results
}

func opName(steps []Step) string {
	if len(steps) == 0 {
		return "connect"
	}
	return steps[0].Name
}

func runNode(ctx context.Context, n inventory.Node, cfg Config, steps []Step, r *Result) {
	start := time.Now()
	defer func() { r.Took = time.Since(start) }()
	c, err := New(n.Name, n.BMC, cfg)
	if err != nil {
		r.Err = err
		return
	}
	if err := c.Open(ctx); err != nil {
		if oe, ok := err.(*OpError); ok {
			oe.Op = opName(steps)
		}
		r.Err = err
		return
	}
	for _, s := range steps {
		if err := s.Do(ctx, c, r); err != nil {
			r.Err = err
			break
		}
	}
	// Quirks learned from the BMC's answers are known only now.
	r.Info = c.Info()
	if err := c.Close(ctx); err != nil && r.Err == nil {
		r.Err = err
	}
}
