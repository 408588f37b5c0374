//go:build e2e

package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
)

// Host is another machine on the lab's network: a namespace of its own with
// a veth port on the bridge, such as the site's DHCP server next to a
// provisioner in proxy mode. Lab.Stop removes it.
type Host struct {
	lab   *Lab
	name  string
	netns string
	dev   string // its interface, inside netns
	addr  netip.Prefix
}

// AddHost creates a host named name with address addr (such as
// 10.77.0.2/24) on the bridge.
func (l *Lab) AddHost(ctx context.Context, name string, addr netip.Prefix) (*Host, error) {
	ns, err := CreateNetns(ctx)
	if err != nil {
		return nil, fmt.Errorf("add host %s: %w", name, err)
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		_ = DeleteNetns(ctx, ns)
		return nil, fmt.Errorf("add host %s: random name: %w", name, err)
	}
	port, dev := "h"+hex.EncodeToString(b), "eth0"
	h := &Host{lab: l, name: name, netns: ns, dev: dev, addr: addr}
	l.mu.Lock()
	l.closers = append(l.closers, func() {
		_ = ip(context.Background(), "-n", l.netns, "link", "del", port)
		_ = DeleteNetns(context.Background(), ns)
	})
	l.mu.Unlock()
	for _, s := range [][]string{
		{"-n", l.netns, "link", "add", port, "type", "veth", "peer", "name", dev, "netns", ns},
		{"-n", l.netns, "link", "set", port, "master", l.bridge},
		{"-n", l.netns, "link", "set", port, "up"},
		{"-n", ns, "addr", "add", addr.String(), "dev", dev},
		{"-n", ns, "link", "set", dev, "up"},
	} {
		if err := ip(ctx, s...); err != nil {
			return nil, fmt.Errorf("add host %s: %w", name, err)
		}
	}
	l.log.Info("lab host added", "host", name, "netns", ns, "ip", addr.Addr())
	return h, nil
}

// Name returns the host's name.
func (h *Host) Name() string { return h.name }

// Addr returns the host's address on the lab network.
func (h *Host) Addr() netip.Addr { return h.addr.Addr() }

// Command returns a command that runs name with args inside the host.
// Start it with [Lab.StartProcess] so Lab.Stop kills it.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.netns, name}, args...)...)
}
