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

// PowerStep performs a power action and confirms the resulting state.
func PowerStep(a PowerAction) Step {
	return Step{Name: "power " + string(a), Do: func(ctx context.Context, c *Client, r *Result) error {
		if err := c.SetPower(ctx, a); err != nil {
			return err
		}
		r.Power = a.target()
		return nil
	}}
}

// BootStep sets the next boot device and records in the Result what was
// read back and verified.
func BootStep(d BootDevice, o BootOptions) Step {
	return Step{Name: "set boot device " + string(d), Do: func(ctx context.Context, c *Client, r *Result) error {
		if err := c.SetBootDevice(ctx, d, o); err != nil {
			return err
		}
		r.Boot = &BootOverride{Device: d, Persistent: o.Persistent, Legacy: o.Legacy}
		_, r.BootFlagsVerified = c.BootReadBack()
		return nil
	}}
}

// Result is what happened on one node.
type Result struct {
	// Node is the node name and BMC its BMC address.
	Node string
	BMC  string
	// Info describes the BMC (protocol, vendor, model, quirks), as far as
	// the connection got.
	Info Info
	// Power is the last power state read or confirmed ("" if none).
	Power PowerState
	// Boot is the boot override set and read back (bootdev only).
	Boot *BootOverride
	// BootFlagsVerified is false where only Boot.Device was read back
	// (IPMI), not the persistent and UEFI flags.
	BootFlagsVerified bool
	// Took is the node's wall time, connect and log out included.
	Took time.Duration
	// Err is the first failure, an *OpError; nil when every step passed.
	Err error
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
	r.Info = c.Info()
	for _, s := range steps {
		if err := s.Do(ctx, c, r); err != nil {
			r.Err = err
			break
		}
	}
	if err := c.Close(ctx); err != nil && r.Err == nil {
		r.Err = err
	}
}
