package pxe

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/pxe/ra"
)

// checkProvisionerAddresses refuses a routed network whose
// provisionerAddress is another address of this machine: the boot services
// listen on network.provisioner.address only, so its nodes would be handed
// URLs and a TFTP next-server where nothing answers. An address that is
// not this machine's is a VIP or NAT in front of it, which is logged.
func checkProvisionerAddresses(inv *inventory.Inventory, local func() ([]net.Addr, error), log *slog.Logger) error {
	own := inv.Network.Address
	var mine map[netip.Addr]bool
	for _, p := range inv.Networks {
		a := p.ProvisionerAddress
		if !a.IsValid() || a == own {
			continue
		}
		if mine == nil {
			addrs, err := local()
			if err != nil {
				return fmt.Errorf("boot services: this machine's addresses: %w", err)
			}
			mine = map[netip.Addr]bool{}
			for _, x := range addrs {
				if pn, ok := x.(*net.IPNet); ok {
					if ip, ok := netip.AddrFromSlice(pn.IP); ok {
						mine[ip.Unmap()] = true
					}
				}
			}
		}
		if mine[a] {
			return fmt.Errorf("boot services: network %s's provisionerAddress %s is an address of this machine, but the boot services listen only on network.provisioner.address %s, so its nodes would get no answer: leave provisionerAddress out (they then reach %s through their router), or forward %s to %s (NAT) instead of assigning it here",
				p.Name, a, own, own, a, own)
		}
		log.Info("routed network reaches the boot services through another address", "network", p.Name, "provisioner_address", a.String(), "listening_on", own.String(),
			"note", "it must forward to the listening address (VIP or NAT)")
	}
	return nil
}

// RouterAdvertisements says whether IPv6 router advertisements are on,
// waiting for the interface's link-local address, or off (disabled in the
// inventory, or refused by the system).
func (s *Services) RouterAdvertisements() string {
	if s.ra == nil {
		return "off (network.routerAdvertisements: false)"
	}
	switch st := s.ra.Status(); st {
	case ra.StatusWaiting:
		return "waiting for a usable IPv6 link-local address"
	case ra.StatusOff:
		return "off (no CAP_NET_RAW)"
	default:
		return string(st)
	}
}

// logReady logs one line once every service listens, saying what runs
// where, router advertisements included.
func (s *Services) logReady(ctx context.Context, inv *inventory.Inventory) {
	select {
	case <-s.Ready():
	case <-ctx.Done():
		return
	}
	nw := inv.Network
	dhcpMode := string(inventory.DHCPOff)
	if s.dhcp != nil {
		dhcpMode = string(nw.DHCPMode)
	}
	routed := make([]string, 0, len(inv.Networks))
	for _, p := range inv.Networks {
		routed = append(routed, p.Name)
	}
	attrs := []any{"interface", nw.Interface, "address", nw.Address.String(), "nodes", len(inv.Enabled()),
		"dhcp", dhcpMode, "http", s.http.Addr().String(), "tftp", s.tftp.Addr().String(),
		"router_advertisements", s.RouterAdvertisements()}
	if len(routed) > 0 {
		attrs = append(attrs, "routed_networks", strings.Join(routed, ","))
	}
	s.log.Info("boot services ready", attrs...)
}
