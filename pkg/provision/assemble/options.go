package assemble

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/kubeadm"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/pxe"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
	"github.com/slipway-dev/slipway/pkg/pxe/tftp"
)

// DefaultTFTPRoot is where Debian's ipxe package installs the iPXE binaries.
const DefaultTFTPRoot = tftp.DefaultRoot

// Join says what a node's configuration does and how the provisioner learns
// that the node is Ready.
type Join string

// Join modes.
const (
	// JoinKubeadm (the default): each node receives its kubeadm
	// configuration with its own bootstrap token, and is Ready when its
	// Node object in the cluster is.
	JoinKubeadm Join = "kubeadm"
	// JoinReportOnly: there is no Kubernetes API (the demo, the QEMU lab).
	// Each node receives a script that reports the kubeadm step it would
	// run (kubeadm-init on the first control plane, kubeadm-join on the
	// others) without running it, and counts as Ready once it reported
	// that step succeeded.
	JoinReportOnly Join = "report-only"
)

// Options is everything `up`, `demo` and the end-to-end tests decide. A
// zero field means the documented default.
type Options struct {
	// Inventory is the loaded inventory. Its enabled nodes are provisioned.
	// Required.
	Inventory *inventory.Inventory
	// StateDir holds the cluster PKI, the journal and the lock. Required.
	StateDir string
	// Command names the state directory's lock holder (default
	// "provisioner up").
	Command string

	// Boot configures the boot services.
	Boot Boot
	// Media configures the server of the virtual-media CDs (used only when
	// an enabled node's boot.method is virtual-media).
	Media Media
	// Join says what nodes run and how readiness is judged (default
	// JoinKubeadm).
	Join Join
	// NodeConfigFormat is the form of a kubeadm node configuration
	// (default kubeadm.FormatCloudConfig).
	NodeConfigFormat kubeadm.Format
	// ReportDelay is how long a report-only node config waits between its
	// "started" and "ok" reports, as kubeadm would take (default 0).
	ReportDelay time.Duration

	// BMC configures the BMC clients (zero: package bmc's defaults); its
	// Log defaults to Log.
	BMC bmc.Config
	// Parallel bounds the nodes in flight at once (default 64).
	Parallel int
	// MaxAttempts is how many power cycles a node gets per run (default 3).
	MaxAttempts int
	// Timeouts bound each phase and each call (zero fields: the
	// orchestrator's defaults).
	Timeouts provision.Timeouts
	// EarlyNetboot lets later nodes netboot while the control plane comes
	// up; their config request is held until their turn.
	EarlyNetboot bool
	// ReadyPoll is how often the cluster is asked which nodes are Ready
	// (default 2 s).
	ReadyPoll time.Duration
	// BMCTries is how many times one BMC call is tried, and Backoff the
	// first wait between tries (defaults: the orchestrator's, 3 and 2 s).
	BMCTries int
	Backoff  time.Duration

	// Progress receives every change of every node (nil: none).
	Progress func(provision.Update)
	// Bus receives every boot event (nil: a bus of its own).
	Bus *bootevent.Bus
	// Beside are functions run beside the boot services under the same
	// errgroup, with a context that ends when provisioning ends (the
	// demo's simulated rack). An error from one stops the run.
	Beside []func(ctx context.Context) error
	// Log receives operational logs (nil: discard).
	Log *slog.Logger
	// ServiceLog receives the boot services' logs, one line per boot event
	// at info (nil: Log).
	ServiceLog *slog.Logger
}

// Boot configures the boot services; `serve` and `up` fill it from the
// same flags.
type Boot struct {
	// TFTPRoot holds the iPXE binaries (default DefaultTFTPRoot).
	TFTPRoot string
	// AssetDir holds the kernels and initrds the profiles name.
	AssetDir string
	// ScriptTemplate replaces the built-in iPXE script template (the
	// template's text; empty: built-in).
	ScriptTemplate string
	// HTTPPort, DHCPPort, DHCPClientPort and TFTPPort override the ports
	// (defaults: the inventory's network.provisioner.httpPort, 67, 68, 69).
	HTTPPort, DHCPPort, DHCPClientPort, TFTPPort uint16
	// DHCPListenAddr is the address the DHCP socket binds (default 0.0.0.0).
	DHCPListenAddr netip.Addr
	// Listeners are sockets bound by the caller and handed to the services
	// (bind first: the demo and the tests).
	Listeners pxe.Listeners
	// SkipInterfaceCheck skips checking the provisioning interface (loopback).
	SkipInterfaceCheck bool
	// NextAction answers a node's phone-home (default "ok").
	NextAction func(node inventory.Node) string
}

// pxeConfig returns the boot services' configuration, without renderer.
func (b Boot) pxeConfig(inv *inventory.Inventory, bus *bootevent.Bus, log *slog.Logger) pxe.Config {
	return pxe.Config{
		Inventory: inv, TFTPRoot: b.TFTPRoot, AssetDir: b.AssetDir, ScriptTemplate: b.ScriptTemplate,
		NextAction: b.NextAction, HTTPPort: b.HTTPPort, DHCPPort: b.DHCPPort, DHCPClientPort: b.DHCPClientPort,
		TFTPPort: b.TFTPPort, DHCPListenAddr: b.DHCPListenAddr, Listeners: b.Listeners,
		SkipInterfaceCheck: b.SkipInterfaceCheck, Bus: bus, Log: log,
	}
}

func (o *Options) check() error {
	var errs []error
	if o.Inventory == nil {
		errs = append(errs, errors.New("no inventory"))
	}
	if o.StateDir == "" {
		errs = append(errs, errors.New("no state directory"))
	}
	switch o.Join {
	case "":
		o.Join = JoinKubeadm
	case JoinKubeadm, JoinReportOnly:
	default:
		errs = append(errs, fmt.Errorf("join mode %q: want %s or %s", o.Join, JoinKubeadm, JoinReportOnly))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("assemble provisioner: %w", err)
	}
	if o.Command == "" {
		o.Command = "provisioner up"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.ServiceLog == nil {
		o.ServiceLog = o.Log
	}
	if o.BMC.Log == nil {
		o.BMC.Log = o.Log
	}
	if o.Bus == nil {
		o.Bus = bootevent.NewBus()
	}
	return nil
}
