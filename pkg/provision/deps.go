package provision

import (
	"context"
	"time"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// BMC is what the orchestrator needs of one node's baseboard management
// controller. Each call gets its own deadline through ctx.
type BMC interface {
	// PowerOff turns the node off (hard off is fine: it is about to be re-imaged).
	PowerOff(ctx context.Context) error
	// SetNetboot asks for a one-time network boot on the next power on.
	SetNetboot(ctx context.Context) error
	// PowerOn turns the node on.
	PowerOn(ctx context.Context) error
}

// A BMC that also has Close(ctx) error is closed once the node is powered
// on, and opened again only if the node needs another power cycle.

// BMCOpener returns the BMC of a node. Opening should not touch the network
// if it can avoid it; the orchestrator calls it once per node per run.
type BMCOpener interface {
	OpenBMC(ctx context.Context, n inventory.Node) (BMC, error)
}

// JoinKind says how a node enters the cluster.
type JoinKind string

// Join kinds.
const (
	// JoinInit: the first control-plane node runs kubeadm init.
	JoinInit JoinKind = "init"
	// JoinControlPlane: another control-plane node joins as control plane.
	JoinControlPlane JoinKind = "join-control-plane"
	// JoinWorker: a worker joins.
	JoinWorker JoinKind = "join-worker"
)

// Issuer mints a node's short-lived credentials and config before it boots
// (so the boot services can serve them) and withdraws them once it is Ready.
// Both calls must be idempotent: a resumed run may repeat them.
type Issuer interface {
	Issue(ctx context.Context, n inventory.Node, kind JoinKind) error
	Revoke(ctx context.Context, n inventory.Node) error
}

// Readiness answers whether a node is a Ready Kubernetes node. The
// orchestrator asks it for nodes in the joining phases every ReadyPoll; a
// source that watches can also push EventReady through Observe.
type Readiness interface {
	Ready(ctx context.Context, node string) (bool, error)
}

// Clock is the orchestrator's time source; tests pass a fake.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is a Clock's timer.
type Timer interface {
	C() <-chan time.Time
	// Stop stops the timer; it reports whether it was still pending.
	Stop() bool
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// NewTimer returns a time.Timer.
func (RealClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }
