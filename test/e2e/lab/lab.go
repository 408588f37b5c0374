//go:build e2e

package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Config describes a lab network. A zero field means the documented default.
type Config struct {
	// Prefix is the server's address and the lab subnet on the bridge
	// (default 10.77.0.1/24).
	Prefix netip.Prefix
	// Prefix6 is an IPv6 address and prefix on the bridge, so that router
	// advertisements can be sent there (default fd77::1/64).
	Prefix6 netip.Prefix
	// Dir holds console logs, firmware variables and peer configuration
	// (required; a test passes t.TempDir()).
	Dir string
	// Log receives the lab's progress (nil discards it).
	Log *slog.Logger
}

// Lab is one bridge in a network namespace, with the taps and QEMU virtual
// machines attached to it. Build it with [New], tear it down with Stop.
type Lab struct {
	cfg    Config
	netns  string
	owned  bool // the lab created netns and deletes it in Stop
	bridge string
	log    *slog.Logger

	mu      sync.Mutex
	taps    []string
	vms     []*VM
	procs   []*Process
	closers []func()
}

// New prepares a lab. When the process already runs inside the namespace
// [Main] created, the lab uses it; otherwise it creates a namespace of its
// own (then only programs the lab starts, not in-process servers, are on
// the bridge: see [Lab.InProcess]).
func New(cfg Config) (*Lab, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("new lab: Config.Dir is required")
	}
	if !cfg.Prefix.IsValid() {
		cfg.Prefix = netip.MustParsePrefix("10.77.0.1/24")
	}
	if !cfg.Prefix6.IsValid() {
		cfg.Prefix6 = netip.MustParsePrefix("fd77::1/64")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("new lab: random bridge name: %w", err)
	}
	return &Lab{cfg: cfg, bridge: "br" + hex.EncodeToString(b), log: log}, nil
}

// Start creates the namespace (unless the process runs in one [Main]
// created) and the bridge with the server's IPv4 and IPv6 addresses.
func (l *Lab) Start(ctx context.Context) error {
	if ns := os.Getenv(EnvNetns); ns != "" && inNetns(ns) {
		l.netns = ns
	} else {
		ns, err := CreateNetns(ctx)
		if err != nil {
			return fmt.Errorf("start lab: %w", err)
		}
		l.netns, l.owned = ns, true
	}
	br, va, vb := l.bridge, l.carrierVeth(), l.carrierVeth()+"p"
	steps := [][]string{
		{"link", "add", br, "type", "bridge"},
		// No STP and no forwarding delay: a tap forwards the moment QEMU opens it.
		{"link", "set", br, "type", "bridge", "forward_delay", "0", "stp_state", "0"},
		// A veth whose far end stays up gives the bridge carrier from the
		// start, like a cabled provisioning NIC; without it the bridge has no
		// carrier (and no IPv6 link-local address) until a VM opens its tap.
		{"link", "add", va, "type", "veth", "peer", "name", vb},
		{"link", "set", va, "master", br},
		{"addr", "add", l.cfg.Prefix.String(), "dev", br},
		{"addr", "add", l.cfg.Prefix6.String(), "dev", br, "nodad"},
	}
	for _, s := range steps {
		if err := ip(ctx, append([]string{"-n", l.netns}, s...)...); err != nil {
			l.Stop()
			return fmt.Errorf("start lab bridge %s in netns %s: %w", br, l.netns, err)
		}
	}
	// The far end must not take part in IPv6 (it would autoconfigure from
	// the lab's router advertisements), and the bridge's link-local address
	// is usable at once rather than after a second of duplicate detection.
	// Written to /proc/sys directly: sysctl(8) is in procps, which a
	// minimal Debian does not have.
	for _, kv := range [][2]string{{vb, "disable_ipv6=1"}, {br, "accept_dad=0"}} {
		k, v, _ := strings.Cut(kv[1], "=")
		path := "/proc/sys/net/ipv6/conf/" + kv[0] + "/" + k
		if out, err := l.Command("sh", "-c", "echo "+v+" > "+path).CombinedOutput(); err != nil {
			l.Stop()
			return fmt.Errorf("start lab: write %s: %w: %s", path, err, out)
		}
	}
	for _, dev := range []string{vb, va, br} {
		if err := ip(ctx, "-n", l.netns, "link", "set", dev, "up"); err != nil {
			l.Stop()
			return fmt.Errorf("start lab: %w", err)
		}
	}
	if err := l.waitLinkLocal(ctx); err != nil {
		l.Stop()
		return fmt.Errorf("start lab: %w", err)
	}
	l.log.Info("lab started", "netns", l.netns, "bridge", l.bridge, "ip", l.cfg.Prefix.Addr())
	return nil
}

// Stop powers off every VM, kills every process the lab started, deletes
// the taps and the bridge, and the namespace when the lab created it. It is
// safe to call more than once.
func (l *Lab) Stop() {
	l.mu.Lock()
	vms, procs, taps, closers := l.vms, l.procs, l.taps, l.closers
	l.vms, l.procs, l.taps, l.closers = nil, nil, nil, nil
	l.mu.Unlock()
	for _, c := range closers {
		c()
	}
	for _, vm := range vms {
		vm.PowerOff()
	}
	for _, p := range procs {
		p.Stop()
	}
	if l.netns == "" {
		return
	}
	ctx := context.Background()
	for _, t := range taps {
		_ = ip(ctx, "-n", l.netns, "link", "del", t)
	}
	_ = ip(ctx, "-n", l.netns, "link", "del", l.carrierVeth())
	_ = ip(ctx, "-n", l.netns, "link", "del", l.bridge)
	if l.owned {
		if err := DeleteNetns(ctx, l.netns); err != nil {
			l.log.Warn("lab netns not deleted", "netns", l.netns, "err", err)
		}
	}
	l.log.Info("lab stopped", "netns", l.netns, "bridge", l.bridge)
	l.netns = ""
}

// carrierVeth names the veth that gives the bridge carrier.
func (l *Lab) carrierVeth() string { return "v" + strings.TrimPrefix(l.bridge, "br") }

// waitLinkLocal waits up to 5 s for the bridge's IPv6 link-local address
// to be usable (present and not tentative), which router advertisements
// are sent from.
func (l *Lab) waitLinkLocal(ctx context.Context) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, "ip", "-n", l.netns, "-6", "-o", "addr", "show", "dev", l.bridge, "scope", "link").Output()
		if err == nil && strings.Contains(string(out), "fe80:") && !strings.Contains(string(out), "tentative") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bridge %s: no usable IPv6 link-local address after 5 s: %s", l.bridge, strings.TrimSpace(string(out)))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Netns returns the namespace's name.
func (l *Lab) Netns() string { return l.netns }

// Bridge returns the bridge's name; servers bind to it.
func (l *Lab) Bridge() string { return l.bridge }

// ServerAddr returns the server's IPv4 address on the bridge (10.77.0.1).
func (l *Lab) ServerAddr() netip.Addr { return l.cfg.Prefix.Addr() }

// Prefix returns the server's address with the lab subnet's length.
func (l *Lab) Prefix() netip.Prefix { return l.cfg.Prefix }

// Dir returns the lab's working directory.
func (l *Lab) Dir() string { return l.cfg.Dir }

// InProcess reports whether this process itself runs in the lab's
// namespace, so Go servers it starts are reachable from the VMs.
func (l *Lab) InProcess() bool { return !l.owned && l.netns != "" }

// addTap creates a tap attached to the bridge and returns its name.
func (l *Lab) addTap(ctx context.Context) (string, error) {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("add tap: random name: %w", err)
	}
	name := "tap" + hex.EncodeToString(b)
	for _, s := range [][]string{
		{"tuntap", "add", "dev", name, "mode", "tap"},
		{"link", "set", name, "master", l.bridge},
		{"link", "set", name, "up"},
	} {
		if err := ip(ctx, append([]string{"-n", l.netns}, s...)...); err != nil {
			_ = ip(ctx, "-n", l.netns, "link", "del", name)
			return "", fmt.Errorf("add tap %s to %s: %w", name, l.bridge, err)
		}
	}
	l.mu.Lock()
	l.taps = append(l.taps, name)
	l.mu.Unlock()
	return name, nil
}

// Command returns a command that runs name with args inside the lab's
// namespace. Start it with [Lab.StartProcess] so Stop kills it.
func (l *Lab) Command(name string, args ...string) *exec.Cmd {
	if inNetns(l.netns) {
		return exec.Command(name, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", l.netns, name}, args...)...)
}

// StartProcess starts cmd (from [Lab.Command]) in a process group of its
// own, with its output appended to Dir/<label>.log, and registers it so
// Stop kills it by PID.
func (l *Lab) StartProcess(label string, cmd *exec.Cmd) (*Process, error) {
	p, err := startProcess(label, cmd, filepath.Join(l.cfg.Dir, label+".log"))
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	l.log.Debug("process started", "label", label, "pid", p.PID())
	return p, nil
}
