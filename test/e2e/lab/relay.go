//go:build e2e

package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// RelayConfig describes a routed segment behind a DHCP relay. A zero field
// means the documented default.
type RelayConfig struct {
	// Segment is the relay's address on its own segment and the segment's
	// subnet: the giaddr it writes and the gateway of the machines there
	// (default 10.78.0.1/24).
	Segment netip.Prefix
	// Segment6 is an IPv6 address and prefix on the segment, so router
	// advertisements can be sent there, as a leaf router does (default
	// fd78::1/64).
	Segment6 netip.Prefix
	// Uplink is the relay's address on the lab bridge (default
	// 10.77.0.254/24): the lab's routes to the segment go through it.
	Uplink netip.Prefix
	// Servers are the DHCP servers the relay forwards to (default: the
	// lab's server address).
	Servers []netip.Addr
}

// Relay is a router with Debian's ISC DHCP relay (dhcrelay) in a network
// namespace of its own: one leg, Uplink, on the lab bridge, the other a
// bridge of its own (the Segment, a routed rack's subnet) where VMs are
// attached with Segment().NewVM. It forwards IPv4 between the two, and
// the lab's namespace routes the segment's subnet through it, so a VM on
// the segment reaches the lab's servers only through this router, and its
// DHCP only through the relay, as on a site whose racks sit behind leaf
// switches. Lab.Stop (or Stop) removes it.
type Relay struct {
	lab  *Lab
	cfg  RelayConfig
	seg  *Lab // the segment: its bridge, taps and VMs live in the relay's namespace
	port string
	proc *Process
	stop sync.Once
}

// StartRelay creates the relay's namespace, its segment bridge and uplink,
// the routes both ways, and starts dhcrelay on it. The test binary must run
// in the lab's namespace ([Lab.InProcess]), which gets the route to the
// segment.
func (l *Lab) StartRelay(ctx context.Context, cfg RelayConfig) (*Relay, error) {
	if !l.InProcess() {
		return nil, fmt.Errorf("start relay: the test binary is not in the lab's netns (call lab.Main from TestMain)")
	}
	if !cfg.Segment.IsValid() {
		cfg.Segment = netip.MustParsePrefix("10.78.0.1/24")
	}
	if !cfg.Segment6.IsValid() {
		cfg.Segment6 = netip.MustParsePrefix("fd78::1/64")
	}
	if !cfg.Uplink.IsValid() {
		cfg.Uplink = netip.MustParsePrefix("10.77.0.254/24")
	}
	if len(cfg.Servers) == 0 {
		cfg.Servers = []netip.Addr{l.ServerAddr()}
	}
	ns, err := CreateNetns(ctx)
	if err != nil {
		return nil, fmt.Errorf("start relay: %w", err)
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		_ = DeleteNetns(ctx, ns)
		return nil, fmt.Errorf("start relay: random names: %w", err)
	}
	id := hex.EncodeToString(b)
	r := &Relay{
		lab: l, cfg: cfg, port: "u" + id,
		seg: &Lab{cfg: Config{Prefix: cfg.Segment, Prefix6: cfg.Segment6, Dir: l.cfg.Dir, Log: l.log}, netns: ns, owned: true, bridge: "br" + id, log: l.log.With("relay", ns)},
	}
	l.mu.Lock()
	l.closers = append(l.closers, r.Stop)
	l.mu.Unlock()
	if err := r.seg.startSegmentBridge(ctx); err != nil {
		r.Stop()
		return nil, fmt.Errorf("start relay: %w", err)
	}
	subnet := cfg.Segment.Masked().String()
	steps := [][]string{
		{"-n", l.netns, "link", "add", r.port, "type", "veth", "peer", "name", "uplink", "netns", ns},
		{"-n", l.netns, "link", "set", r.port, "master", l.bridge},
		{"-n", l.netns, "link", "set", r.port, "up"},
		{"-n", ns, "addr", "add", cfg.Uplink.String(), "dev", "uplink"},
		{"-n", ns, "link", "set", "uplink", "up"},
		// The lab's side (the provisioner's namespace) reaches the segment
		// through the relay's uplink address.
		{"-n", l.netns, "route", "add", subnet, "via", cfg.Uplink.Addr().String(), "dev", l.bridge},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			r.Stop()
			return nil, fmt.Errorf("start relay: %w", err)
		}
	}
	if out, err := r.seg.Command("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward").CombinedOutput(); err != nil {
		r.Stop()
		return nil, fmt.Errorf("start relay: enable forwarding in %s: %w: %s", ns, err, out)
	}
	// -d: foreground (its log goes to relay.log); --no-pid: no
	// /var/run/dhcrelay.pid shared with a system relay; -id/-iu: listen for
	// clients on the segment only, forward and take replies on the uplink.
	args := []string{"-4", "-d", "--no-pid", "-id", r.seg.bridge, "-iu", "uplink"}
	for _, s := range cfg.Servers {
		args = append(args, s.String())
	}
	p, err := r.seg.StartProcess("dhcrelay-"+id, r.seg.Command("dhcrelay", args...))
	if err != nil {
		r.Stop()
		return nil, fmt.Errorf("start relay: %w", err)
	}
	r.proc = p
	// dhcrelay exits at once on a bad interface or a taken port; it says
	// so on its log.
	select {
	case <-p.Done():
		r.Stop()
		return nil, fmt.Errorf("start relay: dhcrelay exited: %v: %s", p.Err(), r.Log())
	case <-time.After(500 * time.Millisecond):
	case <-ctx.Done():
		r.Stop()
		return nil, ctx.Err()
	}
	l.log.Info("relay started", "netns", ns, "segment", cfg.Segment, "uplink", cfg.Uplink.Addr(), "pid", p.PID())
	return r, nil
}

// Segment returns the relay's segment as a Lab: NewVM attaches VMs to its
// bridge, StartRouterAdvertisements sends RAs there, Command runs programs
// in the relay's namespace.
func (r *Relay) Segment() *Lab { return r.seg }

// Addr returns the relay's address on the segment: the giaddr of the
// requests it forwards, and the segment's gateway.
func (r *Relay) Addr() netip.Addr { return r.cfg.Segment.Addr() }

// Log returns what dhcrelay printed.
func (r *Relay) Log() string {
	if r.proc == nil {
		return ""
	}
	b, _ := os.ReadFile(filepath.Join(r.seg.cfg.Dir, r.proc.label+".log"))
	return strings.TrimSpace(string(b))
}

// Stop stops dhcrelay and the VMs on the segment and deletes the relay's
// namespace, its uplink and the lab's route to the segment. It is safe to
// call more than once.
func (r *Relay) Stop() {
	r.stop.Do(func() {
		ctx := context.Background()
		if r.lab.netns != "" {
			_ = ip(ctx, "-n", r.lab.netns, "route", "del", r.cfg.Segment.Masked().String())
			_ = ip(ctx, "-n", r.lab.netns, "link", "del", r.port)
		}
		r.seg.Stop()
	})
}

// startSegmentBridge makes the segment's bridge in its namespace, as Start
// does for the lab's: carrier from a veth, the relay's addresses, a usable
// IPv6 link-local address.
func (l *Lab) startSegmentBridge(ctx context.Context) error {
	br, va, vb := l.bridge, l.carrierVeth(), l.carrierVeth()+"p"
	for _, s := range [][]string{
		{"link", "add", br, "type", "bridge"},
		{"link", "set", br, "type", "bridge", "forward_delay", "0", "stp_state", "0"},
		{"link", "add", va, "type", "veth", "peer", "name", vb},
		{"link", "set", va, "master", br},
		{"addr", "add", l.cfg.Prefix.String(), "dev", br},
		{"addr", "add", l.cfg.Prefix6.String(), "dev", br, "nodad"},
	} {
		if err := ip(ctx, append([]string{"-n", l.netns}, s...)...); err != nil {
			return fmt.Errorf("segment bridge %s in netns %s: %w", br, l.netns, err)
		}
	}
	for _, kv := range [][2]string{{vb, "disable_ipv6=1"}, {br, "accept_dad=0"}} {
		k, v, _ := strings.Cut(kv[1], "=")
		path := "/proc/sys/net/ipv6/conf/" + kv[0] + "/" + k
		if out, err := l.Command("sh", "-c", "echo "+v+" > "+path).CombinedOutput(); err != nil {
			return fmt.Errorf("write %s in netns %s: %w: %s", path, l.netns, err, out)
		}
	}
	for _, dev := range []string{vb, va, br} {
		if err := ip(ctx, "-n", l.netns, "link", "set", dev, "up"); err != nil {
			return err
		}
	}
	return l.waitLinkLocal(ctx)
}
