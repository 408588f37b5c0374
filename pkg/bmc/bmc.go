package bmc

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// PowerState is a server's power state as the BMC reports it.
type PowerState string

// Power states.
const (
	PowerOn           PowerState = "on"
	PowerOff          PowerState = "off"
	PowerPoweringOn   PowerState = "powering-on"
	PowerPoweringOff  PowerState = "powering-off"
	PowerStateUnknown PowerState = "unknown"
)

// PowerAction is a requested power change.
type PowerAction string

// Power actions.
const (
	// ActionOn powers the server on; it is a no-op when it is on.
	ActionOn PowerAction = "on"
	// ActionOff cuts power immediately (Redfish ForceOff, IPMI power off).
	ActionOff PowerAction = "off"
	// ActionSoftOff asks the OS to shut down (Redfish GracefulShutdown, IPMI
	// power soft); the server is off once the OS has stopped.
	ActionSoftOff PowerAction = "soft-off"
	// ActionCycle turns power off and on again (Redfish PowerCycle, IPMI
	// power cycle); a server that is off is powered on. Where the BMC has no
	// PowerCycle the Client does off, confirm off, on, confirm on itself.
	ActionCycle PowerAction = "cycle"
	// ActionReset restarts a running server without removing power (Redfish
	// ForceRestart, IPMI power reset).
	ActionReset PowerAction = "reset"
)

// ParsePowerAction parses on, off, soft-off, cycle or reset.
func ParsePowerAction(s string) (PowerAction, error) {
	switch a := PowerAction(s); a {
	case ActionOn, ActionOff, ActionSoftOff, ActionCycle, ActionReset:
		return a, nil
	}
	return "", fmt.Errorf("unknown power action %q: want on, off, soft-off, cycle or reset", s)
}

// target is the power state an action ends in.
func (a PowerAction) target() PowerState {
	if a == ActionOff || a == ActionSoftOff {
		return PowerOff
	}
	return PowerOn
}

// BootDevice is a next-boot device.
type BootDevice string

// Boot devices.
const (
	BootPXE  BootDevice = "pxe"
	BootDisk BootDevice = "disk"
)

// ParseBootDevice parses pxe or disk.
func ParseBootDevice(s string) (BootDevice, error) {
	switch d := BootDevice(s); d {
	case BootPXE, BootDisk:
		return d, nil
	}
	return "", fmt.Errorf("unknown boot device %q: want pxe or disk", s)
}

// BootOptions qualify a boot device.
type BootOptions struct {
	// Persistent keeps the device for every following boot; otherwise it
	// applies to the next boot only.
	Persistent bool
	// Legacy asks for a BIOS (legacy) boot; otherwise UEFI.
	Legacy bool
}

// BootOverride is a boot override read back from a BMC.
type BootOverride struct {
	// Device is the override target ("" when none is set).
	Device BootDevice
	// Persistent is true for every boot, false for the next one only.
	Persistent bool
	// Legacy is true for a BIOS boot, false for UEFI.
	Legacy bool
}

// Info describes the BMC a Client is connected to.
type Info struct {
	// Protocol is "redfish" or "ipmi".
	Protocol string
	// Vendor and Model are the Redfish Manufacturer and Model of the
	// ComputerSystem; empty over IPMI.
	Vendor string
	Model  string
	// Quirks are the deviations the Client works around on this BMC, each a
	// short phrase such as "no PowerCycle".
	Quirks []string
}

// Controller is what callers need of a BMC; *Client implements it, and so
// does bmcfake.BMC.
type Controller interface {
	// PowerState returns the current power state.
	PowerState(ctx context.Context) (PowerState, error)
	// SetPower performs the action and returns once the BMC reports the
	// state the action ends in.
	SetPower(ctx context.Context, a PowerAction) error
	// SetBootDevice sets the next boot device and reads it back where the
	// protocol allows.
	SetBootDevice(ctx context.Context, d BootDevice, o BootOptions) error
	// Close releases the connection (a Redfish session is logged out).
	Close(ctx context.Context) error
}

// Config tunes Clients. A zero field means the documented default.
type Config struct {
	// ConnectTimeout bounds opening a connection: TCP and TLS, the Redfish
	// service root, the login and reading the system (default 5 s).
	ConnectTimeout time.Duration
	// OpTimeout bounds each single BMC call after the connection is open
	// (default 30 s).
	OpTimeout time.Duration
	// VerifyTimeout is how long to keep polling for the power state a
	// power action ends in (default 60 s).
	VerifyTimeout time.Duration
	// Backoff are the waits between power-state polls; the last repeats
	// (default 1, 2, 2, 4, 6 s).
	Backoff []time.Duration
	// Quirks is the vendor quirk table; nil means DefaultQuirks().
	Quirks []Quirk
	// IpmitoolPath is the ipmitool binary (default: ipmitool on PATH).
	IpmitoolPath string
	// Log receives debug lines about calls; nil discards. Secrets never
	// reach it.
	Log *slog.Logger
}

// Defaults.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultOpTimeout      = 30 * time.Second
	DefaultVerifyTimeout  = 60 * time.Second
)

// DefaultBackoff are the waits between power-state polls.
func DefaultBackoff() []time.Duration {
	return []time.Duration{1 * time.Second, 2 * time.Second, 2 * time.Second, 4 * time.Second, 6 * time.Second}
}

func (c Config) withDefaults() Config {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = DefaultOpTimeout
	}
	if c.VerifyTimeout <= 0 {
		c.VerifyTimeout = DefaultVerifyTimeout
	}
	if len(c.Backoff) == 0 {
		c.Backoff = DefaultBackoff()
	}
	if c.Quirks == nil {
		c.Quirks = DefaultQuirks()
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// OpError is a failed BMC operation on one node. Its text is one line that
// names the operation, the node, the BMC address and the cause:
// "power on gpu-07 (bmc 10.0.1.7:443): log in: credentials refused (HTTP 401)".
type OpError struct {
	// Op is the operation, such as "power on" or "set boot device pxe".
	Op string
	// Node is the node name.
	Node string
	// BMC is the BMC address, host:port.
	BMC string
	// Err is the cause.
	Err error
}

func (e *OpError) Error() string {
	return fmt.Sprintf("%s %s (bmc %s): %v", e.Op, e.Node, e.BMC, e.Err)
}

func (e *OpError) Unwrap() error { return e.Err }
