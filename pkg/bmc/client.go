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
	// snapshot reads the power state and whatever evidence of a restart
	// the BMC reports.
	snapshot(ctx context.Context) (snapshot, error)
	// canCycle is true where a native power cycle may be sent (the BMC
	// advertises it).
	canCycle() bool
	// send sends the action without waiting for its effect.
	send(ctx context.Context, a PowerAction) error
	// setBoot sends the boot override; what the BMC holds is read back
	// with bootOverride.
	setBoot(ctx context.Context, d BootDevice, o BootOptions) (bootSet, error)
	// bootOverride reads the override back, from the settings object when
	// pending.
	bootOverride(ctx context.Context, pending bool) (BootOverride, error)
	readMedia(ctx context.Context) (Media, error)
	insertMedia(ctx context.Context, image string) error
	ejectMedia(ctx context.Context) error
}

// snapshot is the power state and the reboot evidence a BMC reports.
type snapshot struct {
	Power PowerState
	// LastResetTime is when the system last came out of reset ("" when
	// the BMC does not say).
	LastResetTime string
	// ProgressState and ProgressTime are BootProgress.LastState and
	// LastStateTime ("" when the BMC does not say).
	ProgressState string
	ProgressTime  string
}

// hasEvidence is true when the BMC reports anything that changes when the
// host restarts.
func (s snapshot) hasEvidence() bool { return s.LastResetTime != "" || s.ProgressTime != "" }

// bootSet is how a boot override was sent.
type bootSet struct {
	// pending: it went to the settings object and applies at the next reset.
	pending bool
	// modeRefused says why the mode was not set, when it was not: the
	// BMC's answer refusing BootSourceOverrideMode, or the quirk table's
	// hint that it would.
	modeRefused string
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
	s, err := c.snapshot(ctx)
	if err != nil {
		return PowerStateUnknown, c.opErr("power status", err)
	}
	return s.Power, nil
}

func (c *Client) snapshot(ctx context.Context) (snapshot, error) {
	var s snapshot
	err := c.op(ctx, "read power state", func(ctx context.Context) error {
		var err error
		s, err = c.be.snapshot(ctx)
		return err
	})
	return s, err
}

// ErrPoweredOff is the cause of a reset refused because the node is off,
// on every protocol.
var ErrPoweredOff = errors.New("the node is powered off: reset restarts a running node; use power on (or power cycle, which turns an off node on)")

// NotVerifiedError is a power action the BMC accepted whose effect cannot
// be observed: a reset on a BMC that reports no LastResetTime or
// BootProgress. Nothing says the node restarted; nothing says it did not.
type NotVerifiedError struct {
	// Action is the action sent.
	Action PowerAction
	// Why says what evidence is missing.
	Why string
}

func (e *NotVerifiedError) Error() string {
	return fmt.Sprintf("%s sent, not verifiable: %s", e.Action, e.Why)
}

// PowerResult is what a power action did, as read back from the BMC.
type PowerResult struct {
	// State is the power state read last.
	State PowerState
	// Verified is true when the BMC showed the action's effect.
	Verified bool
	// Evidence says what showed it, such as "read back on" or
	// "LastResetTime moved", or, when not Verified, what is missing.
	Evidence string
	// Already is true when the node was in the state on, off or soft-off
	// asks for, so nothing was sent: a power on of a node that is on did
	// not boot it.
	Already bool
}

// SetPower performs a and returns once its effect is observed: the state a
// ends in read back (on, off, soft-off), or a restart seen (cycle, reset).
// A reset whose effect the BMC gives no way to observe returns a
// *NotVerifiedError; a reset of a node that is off returns ErrPoweredOff
// without sending anything. See Power.
func (c *Client) SetPower(ctx context.Context, a PowerAction) error {
	res, err := c.Power(ctx, a)
	if err != nil {
		return err
	}
	if !res.Verified {
		return c.opErr("power "+string(a), &NotVerifiedError{Action: a, Why: res.Evidence})
	}
	return nil
}

// Power performs a and reports what was observed, polling with
// Config.Backoff for up to Config.VerifyTimeout:
//   - on, off, soft-off: until the power state reads what a ends in.
//   - cycle: an off node is powered on. On a BMC that advertises PowerCycle
//     and reports reboot evidence (LastResetTime or BootProgress), one
//     PowerCycle, then until the evidence changes (or off and on are
//     observed) and the state reads on; otherwise off, confirm off, on,
//     confirm on.
//   - reset: refused with ErrPoweredOff on a node that is off; otherwise
//     ForceRestart, then until the evidence changes. Without evidence the
//     result is not Verified ("sent, not verifiable"), never ok.
//
// A BMC that accepts an action but never shows its effect is an error.
func (c *Client) Power(ctx context.Context, a PowerAction) (PowerResult, error) {
	op := "power " + string(a)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(ctx, op); err != nil {
		return PowerResult{State: PowerStateUnknown}, err
	}
	if _, err := ParsePowerAction(string(a)); err != nil {
		return PowerResult{}, c.opErr(op, err)
	}
	res, err := c.power(ctx, a)
	if err != nil {
		return res, c.opErr(op, err)
	}
	c.log.Debug("power action done", "action", string(a), "state", string(res.State), "verified", res.Verified, "evidence", res.Evidence)
	return res, nil
}

func (c *Client) power(ctx context.Context, a PowerAction) (PowerResult, error) {
	before, err := c.snapshot(ctx)
	if err != nil {
		return PowerResult{State: PowerStateUnknown}, err
	}
	switch a {
	case ActionOn, ActionOff, ActionSoftOff:
		if before.Power == a.target() {
			return PowerResult{State: before.Power, Verified: true, Evidence: "already " + string(before.Power), Already: true}, nil
		}
		if err := c.send(ctx, a); err != nil {
			return PowerResult{State: before.Power}, err
		}
		return c.waitPower(ctx, a.target())
	case ActionReset:
		if before.Power == PowerOff {
			return PowerResult{State: PowerOff}, ErrPoweredOff
		}
		if err := c.send(ctx, ActionReset); err != nil {
			return PowerResult{State: before.Power}, err
		}
		if !before.hasEvidence() {
			res := PowerResult{State: before.Power, Evidence: "the bmc reports no LastResetTime or BootProgress, so a restart cannot be observed"}
			if s, err := c.snapshot(ctx); err == nil {
				res.State = s.Power
			}
			return res, nil
		}
		return c.waitRestart(ctx, "ForceRestart", before)
	case ActionCycle:
		if before.Power == PowerOff {
			if err := c.send(ctx, ActionOn); err != nil {
				return PowerResult{State: PowerOff}, err
			}
			res, err := c.waitPower(ctx, PowerOn)
			if err == nil {
				res.Evidence = "was off; read back on"
			}
			return res, err
		}
		if c.be.canCycle() && before.hasEvidence() {
			if err := c.send(ctx, ActionCycle); err != nil {
				return PowerResult{State: before.Power}, err
			}
			res, err := c.waitRestart(ctx, "PowerCycle", before)
			if err != nil {
				return res, err
			}
			if res.State != PowerOn {
				on, err := c.waitPower(ctx, PowerOn)
				on.Evidence = res.Evidence + "; read back on"
				return on, err
			}
			return res, nil
		}
		// No native cycle, or nothing would show that it happened: cycle
		// by hand, which the power state proves.
		if err := c.send(ctx, ActionOff); err != nil {
			return PowerResult{State: before.Power}, err
		}
		if res, err := c.waitPower(ctx, PowerOff); err != nil {
			return res, fmt.Errorf("cycle: %w", err)
		}
		if err := c.send(ctx, ActionOn); err != nil {
			return PowerResult{State: PowerOff}, err
		}
		res, err := c.waitPower(ctx, PowerOn)
		if err == nil {
			res.Evidence = "off then on read back"
		}
		return res, err
	}
	return PowerResult{}, fmt.Errorf("unknown power action %q", a)
}

func (c *Client) send(ctx context.Context, a PowerAction) error {
	return c.op(ctx, "send power "+string(a), func(ctx context.Context) error {
		return c.be.send(ctx, a)
	})
}

// poll calls check until it reports done, waiting Config.Backoff between
// calls, for up to Config.VerifyTimeout. It returns errNotYet when the time
// ran out, or the check's last error.
func (c *Client) poll(ctx context.Context, what string, check func() (done bool, err error)) error {
	deadline := time.Now().Add(c.cfg.VerifyTimeout)
	for i := 0; ; i++ {
		done, err := check()
		if done {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, cancelled(ctx.Err()))
		}
		wait := c.cfg.Backoff[min(i, len(c.cfg.Backoff)-1)]
		if time.Now().Add(wait).After(deadline) {
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return errNotYet
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w", what, cancelled(ctx.Err()))
		case <-t.C:
		}
	}
}

var errNotYet = errors.New("not yet")

// waitPower polls until the power state is want.
func (c *Client) waitPower(ctx context.Context, want PowerState) (PowerResult, error) {
	last := PowerStateUnknown
	err := c.poll(ctx, "confirm power "+string(want), func() (bool, error) {
		s, err := c.snapshot(ctx)
		if err != nil {
			return false, err
		}
		last = s.Power
		return s.Power == want, nil
	})
	if errors.Is(err, errNotYet) {
		return PowerResult{State: last}, fmt.Errorf("bmc acknowledged the request but power is still %s, not %s, after %s", last, want, c.cfg.VerifyTimeout)
	}
	if err != nil {
		return PowerResult{State: last}, err
	}
	return PowerResult{State: want, Verified: true, Evidence: "read back " + string(want)}, nil
}

// waitRestart polls until the BMC shows that the host restarted after
// before: LastResetTime or BootProgress.LastStateTime changed, or a power
// transition (off, powering off or on) was seen and the state is on again.
func (c *Client) waitRestart(ctx context.Context, sent string, before snapshot) (PowerResult, error) {
	var last snapshot
	var how string
	sawDown := false
	err := c.poll(ctx, "confirm restart", func() (bool, error) {
		s, err := c.snapshot(ctx)
		if err != nil {
			return false, err
		}
		last = s
		switch {
		case s.LastResetTime != "" && s.LastResetTime != before.LastResetTime:
			how = "LastResetTime moved to " + s.LastResetTime
		case s.ProgressTime != "" && s.ProgressTime != before.ProgressTime:
			how = "BootProgress " + s.ProgressState + " at " + s.ProgressTime
		case s.Power == PowerOff || s.Power == PowerPoweringOff || s.Power == PowerPoweringOn:
			sawDown = true
			return false, nil
		case sawDown && s.Power == PowerOn:
			how = "off then on observed"
		default:
			return false, nil
		}
		return true, nil
	})
	if errors.Is(err, errNotYet) {
		seen := "LastResetTime still " + dashIfEmpty(last.LastResetTime)
		if before.LastResetTime == "" {
			seen = "BootProgress still " + dashIfEmpty(last.ProgressState) + " at " + dashIfEmpty(last.ProgressTime)
		}
		return PowerResult{State: last.Power}, fmt.Errorf("bmc accepted %s but shows no restart after %s (%s, power %s): the node may not have restarted", sent, c.cfg.VerifyTimeout, seen, last.Power)
	}
	if err != nil {
		return PowerResult{State: last.Power}, err
	}
	return PowerResult{State: last.Power, Verified: true, Evidence: how}, nil
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// SetBootDevice sets the next boot device and checks what the BMC holds
// afterwards; see SetBoot.
func (c *Client) SetBootDevice(ctx context.Context, d BootDevice, o BootOptions) error {
	_, err := c.SetBoot(ctx, d, o)
	return err
}

// SetBoot sets the next boot device and returns the override read back.
// It polls the read-back (some BMCs apply a PATCH seconds after accepting
// it) for up to Config.VerifyTimeout and fails when the BMC does not hold
// the device and persistence asked for, or holds another boot mode than
// asked (a BMC that refuses BootSourceOverrideMode keeps the BIOS's mode):
// the error says what to change. Where the BMC takes boot settings only
// through @Redfish.Settings the override is read back from the settings
// object and marked Pending until the next power-on or reset.
func (c *Client) SetBoot(ctx context.Context, d BootDevice, o BootOptions) (BootOverride, error) {
	op := "set boot device " + string(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(ctx, op); err != nil {
		return BootOverride{}, err
	}
	if _, err := ParseBootDevice(string(d)); err != nil {
		return BootOverride{}, c.opErr(op, err)
	}
	var set bootSet
	err := c.op(ctx, "set boot override", func(ctx context.Context) error {
		var err error
		set, err = c.be.setBoot(ctx, d, o)
		return err
	})
	if err != nil {
		return BootOverride{}, c.opErr(op, err)
	}
	want := o.mode()
	var got BootOverride
	matches := func(g BootOverride) bool {
		if g.Device != d {
			return false
		}
		return !g.FlagsRead || (g.Persistent == o.Persistent && (g.Mode == want || g.Mode == ""))
	}
	err = c.poll(ctx, "read back", func() (bool, error) {
		var err error
		got, err = c.bootOverride(ctx, set.pending)
		if err != nil {
			return false, err
		}
		if matches(got) {
			return true, nil
		}
		// A refused mode will not change by waiting.
		return set.modeRefused != "" && got.Device == d && got.Persistent == o.Persistent, nil
	})
	switch {
	case errors.Is(err, errNotYet):
		return got, c.opErr(op, fmt.Errorf("bmc accepted the boot override but reads back %s, not %s, after %s", got, BootOverride{Device: d, Persistent: o.Persistent, Mode: want, FlagsRead: true}, c.cfg.VerifyTimeout))
	case err != nil:
		return got, c.opErr(op, err)
	}
	if got.FlagsRead && got.Mode != want && (got.Mode != "" || set.modeRefused != "") {
		return got, c.opErr(op, modeError(want, got.Mode, set.modeRefused))
	}
	c.log.Debug("boot device set", "device", string(d), "read_back", got.String())
	return got, nil
}

// modeError says that the BMC holds another boot mode than asked, and what
// to do about it.
func modeError(want, got BootMode, refusal string) error {
	held := "holds " + string(got)
	if got == "" {
		held = "does not report the mode"
	}
	why := ""
	if refusal != "" {
		why = " (" + refusal + ")"
	}
	fix := "set the boot mode to UEFI in the server's BIOS setup, or boot this node in legacy mode (--legacy; inventory boot.firmware: bios)"
	if want == ModeLegacy {
		fix = "enable Legacy/CSM boot in the server's BIOS setup, or boot this node in UEFI mode (--efi; inventory boot.firmware: uefi)"
	}
	return fmt.Errorf("asked for a %s boot but the bmc %s%s, so the node would not boot as asked: %s", want, held, why, fix)
}

// BootOverride reads the boot override back from the system; over IPMI
// only its Device is read (FlagsRead is false).
func (c *Client) BootOverride(ctx context.Context) (BootOverride, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(ctx, "read boot override"); err != nil {
		return BootOverride{}, err
	}
	o, err := c.bootOverride(ctx, false)
	if err != nil {
		return BootOverride{}, c.opErr("read boot override", err)
	}
	return o, nil
}

func (c *Client) bootOverride(ctx context.Context, pending bool) (BootOverride, error) {
	var o BootOverride
	err := c.op(ctx, "read boot override", func(ctx context.Context) error {
		var err error
		o, err = c.be.bootOverride(ctx, pending)
		return err
	})
	return o, err
}

// InsertMedia connects the BMC's virtual CD to the image at url (http or
// https, reachable from the BMC) and returns the media read back. An image
// already inserted is ejected first (BMCs refuse a second one); the same
// image is left as it is. Redfish only.
func (c *Client) InsertMedia(ctx context.Context, url string) (Media, error) {
	m, _, err := c.insertMedia(ctx, url)
	return m, err
}

// insertMedia is InsertMedia that also says whether m was read from the
// BMC: false when the virtual CD could not be read at all, so nothing is
// known of it. After a failed eject, m is the image read before it.
func (c *Client) insertMedia(ctx context.Context, url string) (m Media, read bool, err error) {
	op := "insert virtual media"
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(ctx, op); err != nil {
		return Media{}, false, err
	}
	m, err = c.readMedia(ctx)
	if err != nil {
		return Media{}, false, c.opErr(op, err)
	}
	if m.Inserted && m.Image == url {
		return m, true, nil
	}
	if m.Inserted {
		c.log.Debug("ejecting the image in the virtual cd", "image", m.Image)
		ej, ejRead, err := c.ejectMedia(ctx)
		if ejRead {
			m = ej
		}
		if err != nil {
			return m, true, c.opErr(op, fmt.Errorf("eject %s first: %w", m.Image, err))
		}
	}
	if err := c.op(ctx, "insert "+url, func(ctx context.Context) error { return c.be.insertMedia(ctx, url) }); err != nil {
		return m, true, c.opErr(op, err)
	}
	err = c.poll(ctx, "read back", func() (bool, error) {
		got, err := c.readMedia(ctx)
		if err != nil {
			return false, err
		}
		m = got
		return m.Inserted && m.Image == url, nil
	})
	if errors.Is(err, errNotYet) {
		return m, true, c.opErr(op, fmt.Errorf("bmc accepted InsertMedia but the virtual cd reads back %s after %s", m, c.cfg.VerifyTimeout))
	}
	if err != nil {
		return m, true, c.opErr(op, err)
	}
	return m, true, nil
}

// EjectMedia empties the BMC's virtual CD and returns it read back.
func (c *Client) EjectMedia(ctx context.Context) (Media, error) {
	m, _, err := c.ejectMediaOp(ctx)
	return m, err
}

// ejectMediaOp is EjectMedia that also says whether m was read from the BMC.
func (c *Client) ejectMediaOp(ctx context.Context) (Media, bool, error) {
	op := "eject virtual media"
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(ctx, op); err != nil {
		return Media{}, false, err
	}
	m, read, err := c.ejectMedia(ctx)
	if err != nil {
		return m, read, c.opErr(op, err)
	}
	return m, read, nil
}

// ejectMedia ejects and reads the virtual CD back until it is empty. read
// is false when the CD was not read after the eject (the eject failed, or
// no read-back succeeded).
func (c *Client) ejectMedia(ctx context.Context) (m Media, read bool, err error) {
	if err := c.op(ctx, "eject", c.be.ejectMedia); err != nil {
		return Media{}, false, err
	}
	err = c.poll(ctx, "read back", func() (bool, error) {
		got, err := c.readMedia(ctx)
		if err != nil {
			return false, err
		}
		m, read = got, true
		return !m.Inserted, nil
	})
	if errors.Is(err, errNotYet) {
		return m, read, fmt.Errorf("bmc accepted EjectMedia but the virtual cd still reads %s after %s", m, c.cfg.VerifyTimeout)
	}
	return m, read, err
}

func (c *Client) readMedia(ctx context.Context) (Media, error) {
	var m Media
	err := c.op(ctx, "read virtual media", func(ctx context.Context) error {
		var err error
		m, err = c.be.readMedia(ctx)
		return err
	})
	return m, err
}

// String formats media as "empty" or the image URL.
func (m Media) String() string {
	if !m.Inserted {
		return "empty"
	}
	return m.Image
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
	// The deadline is compared with the clock, not only cctx.Err(): on a
	// loaded machine an inner timer of the same length (the login's) can
	// fire before cctx's own.
	dl, _ := cctx.Deadline()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", what, cancelled(ctx.Err()))
	case cctx.Err() != nil || !time.Now().Before(dl):
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
