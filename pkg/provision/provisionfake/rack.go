package provisionfake

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/provision"
)

var (
	_ provision.BMCOpener = (*Rack)(nil)
	_ provision.Readiness = (*Rack)(nil)
	_ provision.Issuer    = (*Rack)(nil)
	_ provision.BMC       = (*bmc)(nil)
)

// Behavior injects a failure into one machine.
type Behavior struct {
	// NoPXE: the machine never sends a DHCP request.
	NoPXE bool
	// NoPXEFirst: the first N boots send no DHCP request.
	NoPXEFirst int
	// HangOS: the OS boots (config fetched) but never reports a join.
	HangOS bool
	// BMCDead: every BMC call fails.
	BMCDead bool
	// BMCFlaky: the first N BMC calls fail.
	BMCFlaky int
	// NeverReady: the node joins but never turns Ready.
	NeverReady bool
}

// Machine is one fake server.
type Machine struct {
	Name     string
	Behavior Behavior
	// Boot is how long firmware plus OS take from power on to the join (default 20ms).
	Boot time.Duration

	mu            sync.Mutex
	on            bool
	netboot       bool
	gen           int
	boots         int
	calls         int
	joined        bool
	passedNetboot bool
	// PowerOps counts power off/on calls; PowerOpsAfterNetboot counts those
	// made after the machine fetched its config.
	powerOps, powerOpsAfterNetboot int
}

// Stats is a snapshot of a machine's counters.
type Stats struct {
	PowerOps             int
	PowerOpsAfterNetboot int
	Boots                int
	Joined               bool
	PassedNetboot        bool
}

// Stats returns the machine's counters.
func (m *Machine) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Stats{m.powerOps, m.powerOpsAfterNetboot, m.boots, m.joined, m.passedNetboot}
}

// Rack is a set of fake machines.
type Rack struct {
	// Deliver reports an event to the provisioner; the machine treats an
	// error as "the service did not answer".
	Deliver func(ctx context.Context, ev provision.Event) error

	mu       sync.Mutex
	machines map[string]*Machine
	issued   map[string]provision.JoinKind
	revoked  map[string]bool
}

// New returns a rack of machines.
func New(machines ...*Machine) *Rack {
	r := &Rack{machines: map[string]*Machine{}, issued: map[string]provision.JoinKind{}, revoked: map[string]bool{}}
	for _, m := range machines {
		if m.Boot <= 0 {
			m.Boot = 20 * time.Millisecond
		}
		r.machines[m.Name] = m
	}
	return r
}

// Machine returns the machine called name.
func (r *Rack) Machine(name string) *Machine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.machines[name]
}

// Issued returns the join kind issued to each node.
func (r *Rack) Issued() map[string]provision.JoinKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]provision.JoinKind{}
	for k, v := range r.issued {
		out[k] = v
	}
	return out
}

// Issue records the join kind.
func (r *Rack) Issue(_ context.Context, n inventory.Node, kind provision.JoinKind) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.issued[n.Name] = kind
	return nil
}

// Revoke records the revocation.
func (r *Rack) Revoke(_ context.Context, n inventory.Node) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revoked[n.Name] = true
	return nil
}

// Ready reports whether the machine joined (and is not NeverReady).
func (r *Rack) Ready(_ context.Context, node string) (bool, error) {
	m := r.Machine(node)
	if m == nil {
		return false, fmt.Errorf("no machine %s", node)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.joined && !m.Behavior.NeverReady, nil
}

// OpenBMC returns the machine's fake BMC.
func (r *Rack) OpenBMC(_ context.Context, n inventory.Node) (provision.BMC, error) {
	m := r.Machine(n.Name)
	if m == nil {
		return nil, fmt.Errorf("no machine %s", n.Name)
	}
	return &bmc{r: r, m: m}, nil
}

type bmc struct {
	r *Rack
	m *Machine
}

var errDead = errors.New("dial tcp: connection refused")

func (b *bmc) check() error {
	m := b.m
	m.calls++
	if m.Behavior.BMCDead || m.calls <= m.Behavior.BMCFlaky {
		return errDead
	}
	return nil
}

// countPowerOp counts a power change, and separately one made after the
// machine passed netboot (which the orchestrator must never do); m.mu held.
func (b *bmc) countPowerOp() {
	b.m.powerOps++
	if b.m.passedNetboot {
		b.m.powerOpsAfterNetboot++
	}
}

func (b *bmc) PowerOff(context.Context) error {
	m := b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := b.check(); err != nil {
		return err
	}
	b.countPowerOp()
	m.on = false
	m.gen++
	return nil
}

func (b *bmc) SetNetboot(context.Context) error {
	m := b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := b.check(); err != nil {
		return err
	}
	m.netboot = true
	return nil
}

func (b *bmc) PowerOn(context.Context) error {
	m := b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := b.check(); err != nil {
		return err
	}
	b.countPowerOp()
	if m.on {
		return nil
	}
	m.on = true
	m.gen++
	m.boots++
	netboot := m.netboot
	m.netboot = false
	go b.r.boot(m, m.gen, m.boots, netboot)
	return nil
}

// alive reports whether boot generation gen is still running.
func (m *Machine) alive(gen int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on && m.gen == gen
}

func (r *Rack) boot(m *Machine, gen, boot int, netboot bool) {
	ctx := context.Background()
	step := m.Boot / 4
	if !netboot || m.Behavior.NoPXE || boot <= m.Behavior.NoPXEFirst {
		return
	}
	// Like real firmware, each request is retried for a while (about 2s)
	// before the boot is given up.
	send := func(kind provision.EventKind) bool {
		time.Sleep(step / 4)
		for deadline := time.Now().Add(2 * time.Second); m.alive(gen); {
			if r.Deliver(ctx, provision.Event{Node: m.Name, Kind: kind}) == nil {
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	}
	time.Sleep(step)
	for _, k := range []provision.EventKind{provision.EventDHCP, provision.EventTFTP, provision.EventKernel, provision.EventInitrd} {
		if !send(k) {
			return // firmware gives up when a boot service does not answer
		}
	}
	if !send(provision.EventConfig) {
		return
	}
	m.mu.Lock()
	m.passedNetboot = true
	m.mu.Unlock()
	if m.Behavior.HangOS {
		return
	}
	time.Sleep(2 * step)
	// The OS retries its phone-home until the provisioner answers.
	for m.alive(gen) {
		if r.Deliver(ctx, provision.Event{Node: m.Name, Kind: provision.EventJoined}) == nil {
			m.mu.Lock()
			m.joined = true
			m.mu.Unlock()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SetJoined marks the machine as joined (and past netboot) without booting
// it, as if a previous run had got it there.
func (m *Machine) SetJoined() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.joined = true
	m.passedNetboot = true
	m.on = true
}
