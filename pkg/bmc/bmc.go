package bmc

import (
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
	// BootCD is the (virtual) CD drive; with virtual media it boots the
	// image inserted by InsertMedia.
	BootCD BootDevice = "cd"
)

// ParseBootDevice parses pxe, disk or cd.
func ParseBootDevice(s string) (BootDevice, error) {
	switch d := BootDevice(s); d {
	case BootPXE, BootDisk, BootCD:
		return d, nil
	}
	return "", fmt.Errorf("unknown boot device %q: want pxe, disk or cd", s)
}

// BootOptions qualify a boot device.
type BootOptions struct {
	// Persistent keeps the device for every following boot; otherwise it
	// applies to the next boot only.
	Persistent bool
	// Legacy asks for a BIOS (legacy) boot; otherwise UEFI.
	Legacy bool
}

// mode is the boot mode o asks for.
func (o BootOptions) mode() BootMode {
	if o.Legacy {
		return ModeLegacy
	}
	return ModeUEFI
}

// BootMode is the firmware mode of a boot override.
type BootMode string

// Boot modes. An empty BootMode means the BMC does not report one.
const (
	ModeUEFI   BootMode = "uefi"
	ModeLegacy BootMode = "legacy"
)

// BootOverride is a boot override as read back from a BMC: never what was
// requested, always what the BMC holds.
type BootOverride struct {
	// Device is the override target ("" when none is set).
	Device BootDevice
	// Persistent is true for every boot, false for the next one only.
	Persistent bool
	// Mode is the boot mode the BMC holds, "" when it reports none.
	Mode BootMode
	// FlagsRead is false where only Device could be read back (IPMI BMCs
	// such as ipmi_sim keep the device but not the persistent and mode
	// flags); Persistent and Mode then mean nothing.
	FlagsRead bool
	// Pending is true when the override waits in the BMC's settings object
	// (@Redfish.Settings) and applies at the next power-on or reset.
	Pending bool
}

// String formats an override as "pxe once uefi", "none", "pxe (device
// only: ...)" or "pxe once uefi, pending until the next power-on or reset".
func (o BootOverride) String() string {
	var s string
	switch {
	case o.Device == "":
		s = "none"
	case !o.FlagsRead:
		s = string(o.Device) + " (device only: once/persistent and mode not readable)"
	default:
		p := "once"
		if o.Persistent {
			p = "persistent"
		}
		m := string(o.Mode)
		if m == "" {
			m = "mode not reported"
		}
		s = string(o.Device) + " " + p + " " + m
	}
	if o.Pending {
		s += ", pending until the next power-on or reset"
	}
	return s
}

// Media is a virtual CD as read back from a BMC.
type Media struct {
	// Image is the inserted image's URL ("" when none).
	Image string
	// Inserted is true while an image is inserted.
	Inserted bool
}

// Info describes the BMC a Client is connected to.
type Info struct {
	// Protocol is "redfish" or "ipmi".
	Protocol string
	// Vendor and Model are the Redfish Manufacturer and Model of the
	// ComputerSystem; over IPMI what "mc info" says, if anything.
	Vendor string
	Model  string
	// Quirks are the deviations the Client works around on this BMC, each a
	// short phrase such as "no PowerCycle"; those learned from the BMC's
	// answers during this connection are added as they are met.
	Quirks []string
}

// Config tunes Clients. A zero field means the documented default.
type Config struct {
	// ConnectTimeout bounds opening a connection: TCP and TLS, the Redfish
	// service root, the login and reading the system (default 5 s).
	ConnectTimeout time.Duration
	// OpTimeout bounds each single BMC call after the connection is open
	// (default 30 s).
	OpTimeout time.Duration
	// VerifyTimeout is how long to keep reading back the result of a
	// change (the power state an action ends in, evidence of a restart, a
	// boot override that some BMCs apply seconds after accepting it)
	// before calling it failed (default 60 s).
	VerifyTimeout time.Duration
	// Backoff are the waits between read-backs; the last repeats (default
	// 1, 2, 2, 4, 6 s).
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
