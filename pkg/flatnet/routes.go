package flatnet

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// RouteProto marks the routes the flat network owns (ip route ... proto
// 180), so it removes only its own when a node goes away.
const RouteProto = "180"

// Routes are the pod-CIDR routes of a node: destination → gateway.
type Routes map[netip.Prefix]netip.Addr

// Want returns the routes node self needs: every other node's pod CIDRs
// via that node's InternalIP of the same family. Nodes without a pod CIDR
// or an InternalIP yet are left out (they are picked up on a later pass).
func Want(nodes []corev1.Node, self string) Routes {
	want := Routes{}
	for _, n := range nodes {
		if n.Name == self {
			continue
		}
		for _, c := range podCIDRs(n) {
			for _, a := range n.Status.Addresses {
				if a.Type != corev1.NodeInternalIP {
					continue
				}
				ip, err := netip.ParseAddr(a.Address)
				if err == nil && ip.Is4() == c.Addr().Is4() {
					want[c.Masked()] = ip
					break
				}
			}
		}
	}
	return want
}

// podCIDRs returns a Node's pod CIDRs (spec.podCIDRs, or spec.podCIDR).
func podCIDRs(n corev1.Node) []netip.Prefix {
	list := n.Spec.PodCIDRs
	if len(list) == 0 && n.Spec.PodCIDR != "" {
		list = []string{n.Spec.PodCIDR}
	}
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// RouteTable is the node's routing table, as far as the flat network's
// routes go. The seam tests fake.
type RouteTable interface {
	// List returns the routes marked RouteProto.
	List(ctx context.Context) (Routes, error)
	// Replace adds or changes a route.
	Replace(ctx context.Context, dst netip.Prefix, via netip.Addr) error
	// Delete removes a route.
	Delete(ctx context.Context, dst netip.Prefix) error
}

// Sync makes table hold exactly want, and returns what it changed as
// lines for the log.
func Sync(ctx context.Context, table RouteTable, want Routes) ([]string, error) {
	have, err := table.List(ctx)
	if err != nil {
		return nil, err
	}
	var changes []string
	for _, dst := range sortedKeys(want) {
		if via, ok := have[dst]; ok && via == want[dst] {
			continue
		}
		if err := table.Replace(ctx, dst, want[dst]); err != nil {
			return changes, err
		}
		changes = append(changes, fmt.Sprintf("route %s via %s", dst, want[dst]))
	}
	for _, dst := range sortedKeys(have) {
		if _, ok := want[dst]; ok {
			continue
		}
		if err := table.Delete(ctx, dst); err != nil {
			return changes, err
		}
		changes = append(changes, fmt.Sprintf("route %s removed", dst))
	}
	return changes, nil
}

func sortedKeys(r Routes) []netip.Prefix {
	keys := make([]netip.Prefix, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	return keys
}

// IPRoute is the node's routing table through ip(8).
type IPRoute struct{}

// List parses `ip route show proto 180` (IPv4 and IPv6).
func (IPRoute) List(ctx context.Context) (Routes, error) {
	out := Routes{}
	for _, fam := range []string{"-4", "-6"} {
		b, err := exec.CommandContext(ctx, "ip", fam, "route", "show", "proto", RouteProto).Output()
		if err != nil {
			return nil, fmt.Errorf("ip %s route show proto %s: %w", fam, RouteProto, err)
		}
		for r, via := range ParseRoutes(string(b)) {
			out[r] = via
		}
	}
	return out, nil
}

// ParseRoutes reads `ip route show` lines of the form "DST via GW ...".
func ParseRoutes(s string) Routes {
	out := Routes{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[1] != "via" {
			continue
		}
		dst, err1 := netip.ParsePrefix(f[0])
		via, err2 := netip.ParseAddr(f[2])
		if err1 == nil && err2 == nil {
			out[dst] = via
		}
	}
	return out
}

// Replace runs ip route replace DST via VIA proto 180.
func (IPRoute) Replace(ctx context.Context, dst netip.Prefix, via netip.Addr) error {
	return ipCmd(ctx, "route", "replace", dst.String(), "via", via.String(), "proto", RouteProto)
}

// Delete runs ip route del DST proto 180.
func (IPRoute) Delete(ctx context.Context, dst netip.Prefix) error {
	return ipCmd(ctx, "route", "del", dst.String(), "proto", RouteProto)
}

func ipCmd(ctx context.Context, args ...string) error {
	if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
