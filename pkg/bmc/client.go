package bmc

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

// backend is one protocol's way of talking to a BMC. Every method gets a
// context that already carries the call's deadline.
type backend interface {
	open(ctx context.Context, password inventory.Secret) error
	close(ctx context.Context) error
	info() Info
	quirks() quirks
	powerState(ctx context.Context) (PowerState, error)
	// setPower sends the action without waiting for its effect. cycle is
	// only sent when quirks().noPowerCycle is false.
	setPower(ctx context.Context, a PowerAction) error
	setBoot(ctx context.Context, d BootDevice, o BootOptions, q quirks) error
	// bootOverride reads the boot override back; ok is false where the
	// protocol cannot read it.
	bootOverride(ctx context.Context) (o BootOverride, ok bool, err error)
	// bootFlagsReadable is false where only the device reads back
	// reliably, not the persistent and UEFI flags.
	bootFlagsReadable() bool
}

// Client controls one node's BMC. Its methods may be called from several
// goroutines; calls to the BMC are made one at a time.
type Client struct {
	node string
	addr string
	ref  inventory.SecretRef
	cfg  Config
	log  *slog.Logger
	be   backend

	mu     sync.Mutex
	opened bool
	secret inventory.Secret // the resolved password, only to scrub it from error text
}

var _ Controller = (*Client)(nil)

// New returns a Client for node's BMC without connecting. It checks the BMC
// settings; the password reference is resolved later, by Open.
func New(node string, b inventory.BMC, cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	c := &Client{node: node, addr: b.Addr(), ref: b.Password, cfg: cfg}
	c.log = cfg.Log.With("node", node, "bmc", c.addr)
	if b.Host == "" {
		return nil, &OpError{Op: "connect", Node: node, BMC: c.addr, Err: errors.New("bmc host is empty (set bmc.url in the inventory)")}
	}
	proto := b.Protocol
	if proto == "" {
		switch {
		case strings.HasPrefix(b.URL, "ipmi://"):
			proto = inventory.ProtocolIPMI
		case strings.HasPrefix(b.URL, "redfish"):
			proto = inventory.ProtocolRedfish
		}
	}
	switch proto {
	case inventory.ProtocolRedfish:
		c.be = newRedfish(b, cfg, c.log)
	case inventory.ProtocolIPMI:
		c.be = newIPMI(b, cfg)
	default:
		return nil, &OpError{Op: "connect", Node: node, BMC: c.addr, Err: fmt.Errorf("unknown bmc protocol %q in %q: write redfish://, redfish+http:// or ipmi://", proto, b.URL)}
	}
	return c, nil
}

// Dial returns a Client for node's BMC with its connection open.
func Dial(ctx context.Context, node string, b inventory.BMC, cfg Config) (*Client, error) {
	c, err := New(node, b, cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Open(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Node returns the node name the Client was made for.
func (c *Client) Node() string { return c.node }

// Addr returns the BMC address, host:port.
func (c *Client) Addr() string { return c.addr }

// Info describes the BMC; it is complete once Open has returned.
func (c *Client) Info() Info { return c.be.info() }

// Open resolves the password reference and connects: for Redfish it reads
// the service root, logs in and reads the system (vendor, model, reset
// types); for IPMI it reads the power state once. It is bounded by
// Config.ConnectTimeout. On failure nothing stays open.
func (c *Client) Open(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opened {
		return nil
	}
	pw, err := c.ref.Resolve()
	if err != nil {
		return c.opErr("connect", fmt.Errorf("read password: %w", err))
	}
	c.secret = pw
	start := time.Now()
	err = c.call(ctx, c.cfg.ConnectTimeout, "connect", func(ctx context.Context) error { return c.be.open(ctx, pw) })
	if err != nil {
		c.closeLocked(ctx)
		return c.opErr("connect", err)
	}
	c.opened = true
	i := c.be.info()
	c.log.Debug("bmc connected", "protocol", i.Protocol, "vendor", i.Vendor, "model", i.Model, "quirks", strings.Join(i.Quirks, ","), "took", time.Since(start))
	return nil
}

// Close logs out (Redfish) and releases connections. It runs under a fresh
// bounded context when ctx is already done, so Ctrl-C still logs out.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.opened {
		return nil
	}
	c.opened = false
	if err := c.closeLocked(ctx); err != nil {
		return c.opErr("log out", err)
	}
	return nil
}

func (c *Client) closeLocked(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.ConnectTimeout)
	defer cancel()
	return c.be.close(ctx)
}

// PowerState returns the current power state.
func (c *Client) PowerState(ctx context.Context) (PowerState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(ctx, "power status"); err != nil {
		return PowerStateUnknown, err
	}
	st, err := c.powerState(ctx)
	if err != nil {
		return PowerStateUnknown, c.opErr("power status", err)
	}
	return st, nil
}

func (c *Client) powerState(ctx context.Context) (PowerState, error) {
	var st PowerState
	err := c.op(ctx, "read power state", func(ctx context.Context) error {
		var err error
		st, err = c.be.powerState(ctx)
		return err
	})
	return st, err
}

// SetPower performs a and returns once the BMC reports the state a ends in
// (on for on, cycle and reset; off for off and soft-off), polling with
// Config.Backoff for up to Config.VerifyTimeout. A BMC that acknowledges the
// action but never changes state is an error.
func (c *Client) SetPower(ctx context.Context, a PowerAction) error {
	op := "power " + string(a)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(ctx, op); err != nil {
		return err
	}
	if _, err := ParsePowerAction(string(a)); err != nil {
		return c.opErr(op, err)
	}
	if err := c.setPower(ctx, a); err != nil {
		return c.opErr(op, err)
	}
	c.log.Debug("power state set", "action", string(a), "state", string(a.target()))
	return nil
}

func (c *Client) setPower(ctx context.Context, a PowerAction) error {
	if a == ActionCycle {
		st, err := c.powerState(ctx)
		if err != nil {
			return err
		}
		if st == PowerOff {
			// Cycling a server that is off means turning it on; BMCs differ
			// in whether they accept a cycle there, so don't ask.
			a = ActionOn
		} else if c.be.quirks().noPowerCycle {
			if err := c.send(ctx, ActionOff); err != nil {
				return err
			}
			if err := c.waitPower(ctx, PowerOff); err != nil {
				return fmt.Errorf("cycle: %w", err)
			}
			a = ActionOn
		}
	}
	if err := c.send(ctx, a); err != nil {
		return err
	}
	return c.waitPower(ctx, a.target())
}

func (c *Client) send(ctx context.Context, a PowerAction) error {
	return c.op(ctx, "send power "+string(a), func(ctx context.Context) error {
		return c.be.setPower(ctx, a)
	})
}

// waitPower polls until the power state is want or VerifyTimeout passes.
func (c *Client) waitPower(ctx context.Context, want PowerState) error {
	deadline := time.Now().Add(c.cfg.VerifyTimeout)
	var last PowerState
	var lastErr error
	for i := 0; ; i++ {
		st, err := c.powerState(ctx)
		if err == nil && st == want {
			return nil
		}
		last, lastErr = st, err
		if ctx.Err() != nil {
			return fmt.Errorf("confirm power %s: %w", want, ctx.Err())
		}
		wait := c.cfg.Backoff[min(i, len(c.cfg.Backoff)-1)]
		if time.Now().Add(wait).After(deadline) {
			break
		}
		c.log.Debug("power state not yet reached", "want", string(want), "state", string(st), "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("confirm power %s: %w", want, ctx.Err())
		case <-t.C:
		}
	}
	if lastErr != nil {
		return fmt.Errorf("confirm power %s: %w", want, lastErr)
	}
	return fmt.Errorf("bmc acknowledged the request but power is still %s, not %s, after %s", last, want, c.cfg.VerifyTimeout)
}

// SetBootDevice sets the next boot device and, where the protocol can read
// it (Redfish), reads the override back and fails if it differs.
func (c *Client) SetBootDevice(ctx context.Context, d BootDevice, o BootOptions) error {
	op := "set boot device " + string(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(ctx, op); err != nil {
		return err
	}
	if _, err := ParseBootDevice(string(d)); err != nil {
		return c.opErr(op, err)
	}
	q := c.be.quirks()
	err := c.op(ctx, "set boot override", func(ctx context.Context) error {
		return c.be.setBoot(ctx, d, o, q)
	})
	if err != nil {
		return c.opErr(op, err)
	}
	got, ok, err := c.bootOverride(ctx)
	if err != nil {
		return c.opErr(op, fmt.Errorf("read back: %w", err))
	}
	if ok {
		want := BootOverride{Device: d, Persistent: o.Persistent, Legacy: o.Legacy}
		if q.noBootMode {
			got.Legacy = want.Legacy
		}
		if !c.be.bootFlagsReadable() {
			got.Persistent, got.Legacy = want.Persistent, want.Legacy
		}
		if got != want {
			return c.opErr(op, fmt.Errorf("bmc accepted the boot override but reads back %s, not %s", got, want))
		}
	}
	c.log.Debug("boot device set", "device", string(d), "persistent", o.Persistent, "legacy", o.Legacy, "verified", ok)
	return nil
}

// BootReadBack says what SetBootDevice verifies by reading the override
// back: the device (both protocols) and the persistent and UEFI flags
// (Redfish only; IPMI BMCs such as ipmi_sim do not keep them).
func (c *Client) BootReadBack() (device, flags bool) {
	return true, c.be.bootFlagsReadable()
}

// BootOverride reads the boot override back; over IPMI only its Device
// is reliable.
func (c *Client) BootOverride(ctx context.Context) (BootOverride, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(ctx, "read boot override"); err != nil {
		return BootOverride{}, err
	}
	o, _, err := c.bootOverride(ctx)
	if err != nil {
		return BootOverride{}, c.opErr("read boot override", err)
	}
	return o, nil
}

func (c *Client) bootOverride(ctx context.Context) (o BootOverride, ok bool, err error) {
	err = c.op(ctx, "read boot override", func(ctx context.Context) error {
		var err error
		o, ok, err = c.be.bootOverride(ctx)
		return err
	})
	return o, ok, err
}

// String formats an override as "pxe once uefi".
func (o BootOverride) String() string {
	d := string(o.Device)
	if d == "" {
		d = "none"
	}
	p, m := "once", "uefi"
	if o.Persistent {
		p = "persistent"
	}
	if o.Legacy {
		m = "legacy"
	}
	return d + " " + p + " " + m
}

// ready opens the connection if it is not open yet.
func (c *Client) ready(ctx context.Context, op string) error {
	if c.opened {
		return nil
	}
	c.mu.Unlock()
	err := c.Open(ctx)
	c.mu.Lock()
	if err != nil {
		var oe *OpError
		if errors.As(err, &oe) {
			oe.Op = op
		}
		return err
	}
	return nil
}

// op runs one BMC call under Config.OpTimeout. When the BMC answers 401 on
// an open connection (its session expired, or the BMC restarted), it logs in
// again once and repeats the call: a provisioning run can outlast a BMC's
// session timeout.
func (c *Client) op(ctx context.Context, what string, fn func(context.Context) error) error {
	err := c.call(ctx, c.cfg.OpTimeout, what, fn)
	var he *HTTPError
	if err == nil || !errors.As(err, &he) || he.Status != 401 {
		return err
	}
	c.log.Debug("bmc session refused, logging in again", "err", c.scrub(err))
	_ = c.closeLocked(ctx)
	pw, rerr := c.ref.Resolve()
	if rerr != nil {
		return fmt.Errorf("%s: log in again: read password: %w", what, rerr)
	}
	c.secret = pw
	if rerr := c.call(ctx, c.cfg.ConnectTimeout, "log in again", func(ctx context.Context) error { return c.be.open(ctx, pw) }); rerr != nil {
		return fmt.Errorf("%s: %w (after %w)", what, rerr, err)
	}
	return c.call(ctx, c.cfg.OpTimeout, what, fn)
}

// call runs fn under a deadline of timeout and turns what went wrong into a
// one-line cause that starts with what.
func (c *Client) call(ctx context.Context, timeout time.Duration, what string, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, cancelled(err))
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := fn(cctx)
	if err == nil {
		return nil
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", what, cancelled(ctx.Err()))
	case cctx.Err() != nil:
		return fmt.Errorf("%s: %w", what, &TimeoutError{After: timeout})
	}
	return fmt.Errorf("%s: %w", what, describe(err))
}

// TimeoutError is a BMC call that got no answer in time.
type TimeoutError struct {
	// After is the timeout that passed.
	After time.Duration
}

func (e *TimeoutError) Error() string { return fmt.Sprintf("no answer within %s", e.After) }

func cancelled(err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("cancelled: %w", err)
	}
	return err
}

// opErr wraps err as an OpError, scrubbing the password from its text in
// case a BMC or tool echoed it.
func (c *Client) opErr(op string, err error) error {
	return &OpError{Op: op, Node: c.node, BMC: c.addr, Err: c.scrub(err)}
}

// scrub returns err, or a copy of its text with the password replaced when
// a BMC or tool echoed it.
func (c *Client) scrub(err error) error {
	if pw := c.secret.Reveal(); pw != "" && strings.Contains(err.Error(), pw) {
		return &scrubbed{msg: strings.ReplaceAll(err.Error(), pw, "[redacted]"), err: err}
	}
	return err
}

// scrubbed replaces an error whose text held a secret. It drops the chain
// on purpose: an inner error would print the secret again.
type scrubbed struct {
	msg string
	err error
}

func (s *scrubbed) Error() string { return s.msg }
