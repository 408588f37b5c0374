package bmcfake

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/slipway-dev/slipway/pkg/bmc"
)

var _ bmc.Controller = (*BMC)(nil)

// Method names, as recorded in Calls and keyed in Errs.
const (
	MethodPowerState    = "PowerState"
	MethodSetPower      = "SetPower"
	MethodSetBootDevice = "SetBootDevice"
	MethodClose         = "Close"
)

// BMC is a fake BMC. The zero value is a powered-off server with no boot
// override; it is safe for concurrent use.
type BMC struct {
	mu     sync.Mutex
	power  bmc.PowerState
	boot   bmc.BootOverride
	calls  []string
	errs   map[string]error
	stuck  bool
	closed bool
	// OnPower, when set, is called (outside the fake's lock) after every
	// successful power change with the action and the boot override in
	// effect, so a test can attach a simulated machine.
	OnPower func(ctx context.Context, a bmc.PowerAction, boot bmc.BootOverride)
}

// New returns a fake BMC in the given power state.
func New(power bmc.PowerState) *BMC { return &BMC{power: power} }

// FailOn makes every later call of method fail with err (nil clears it).
func (f *BMC) FailOn(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.errs == nil {
		f.errs = map[string]error{}
	}
	f.errs[method] = err
}

// Stuck makes SetPower acknowledge actions without changing the state, and
// fail the way a real Client does when its confirmation poll times out.
func (f *BMC) Stuck(stuck bool) {
	f.mu.Lock()
	f.stuck = stuck
	f.mu.Unlock()
}

// Calls returns the calls made so far, such as "SetPower on" or
// "SetBootDevice pxe once uefi".
func (f *BMC) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Power returns the current power state.
func (f *BMC) Power() bmc.PowerState {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.power == "" {
		return bmc.PowerOff
	}
	return f.power
}

// Boot returns the current boot override.
func (f *BMC) Boot() bmc.BootOverride {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.boot
}

// Closed reports whether Close was called.
func (f *BMC) Closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

func (f *BMC) enter(ctx context.Context, method, call string) error {
	f.calls = append(f.calls, call)
	if err := ctx.Err(); err != nil {
		return err
	}
	return f.errs[method]
}

// PowerState implements bmc.Controller.
func (f *BMC) PowerState(ctx context.Context) (bmc.PowerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter(ctx, MethodPowerState, MethodPowerState); err != nil {
		return bmc.PowerStateUnknown, err
	}
	if f.power == "" {
		return bmc.PowerOff, nil
	}
	return f.power, nil
}

// SetPower implements bmc.Controller.
func (f *BMC) SetPower(ctx context.Context, a bmc.PowerAction) error {
	f.mu.Lock()
	if err := f.enter(ctx, MethodSetPower, MethodSetPower+" "+string(a)); err != nil {
		f.mu.Unlock()
		return err
	}
	if _, err := bmc.ParsePowerAction(string(a)); err != nil {
		f.mu.Unlock()
		return err
	}
	want := bmc.PowerOn
	if a == bmc.ActionOff || a == bmc.ActionSoftOff {
		want = bmc.PowerOff
	}
	if f.stuck {
		have := f.power
		f.mu.Unlock()
		return fmt.Errorf("bmc acknowledged the request but power is still %s, not %s", have, want)
	}
	boot := f.boot
	f.power = want
	if want == bmc.PowerOn && !f.boot.Persistent {
		f.boot = bmc.BootOverride{}
	}
	hook := f.OnPower
	f.mu.Unlock()
	if hook != nil {
		hook(ctx, a, boot)
	}
	return nil
}

// SetBootDevice implements bmc.Controller.
func (f *BMC) SetBootDevice(ctx context.Context, d bmc.BootDevice, o bmc.BootOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ov := bmc.BootOverride{Device: d, Persistent: o.Persistent, Legacy: o.Legacy}
	if err := f.enter(ctx, MethodSetBootDevice, MethodSetBootDevice+" "+ov.String()); err != nil {
		return err
	}
	if _, err := bmc.ParseBootDevice(string(d)); err != nil {
		return err
	}
	f.boot = ov
	return nil
}

// Close implements bmc.Controller. It succeeds even after a cancelled
// context, as the real Client logs out under a fresh one.
func (f *BMC) Close(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, MethodClose)
	f.closed = true
	return f.errs[MethodClose]
}
