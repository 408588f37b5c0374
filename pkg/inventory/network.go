package inventory

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// network resolves the provisioner's own network (the network section).
func (r *resolver) network(d *doc, rn *rawNetwork) {
	n := &r.inv.Network
	n.Name = DefaultNetworkName
	if rn.Name != "" {
		if !isDNSLabel(rn.Name) {
			r.errorf(d, "network.name", "%q is not a network name: use lowercase letters, digits and '-'", rn.Name)
		} else {
			n.Name = rn.Name
		}
	}
	if rn.Provisioner == nil {
		r.errorf(d, "network", "network.provisioner is missing: give the provisioner's address and interface on the provisioning network")
	} else {
		if rn.Provisioner.Address == "" {
			r.errorf(d, "network.provisioner", "network.provisioner.address is missing: the boot services listen on it")
		} else {
			n.Address = r.parseAddr(d, "network.provisioner.address", rn.Provisioner.Address)
		}
		n.Interface = rn.Provisioner.Interface
		if n.Interface == "" {
			r.errorf(d, "network.provisioner", "network.provisioner.interface is missing: name the interface on the provisioning network (for example eno1)")
		}
		n.HTTPPort = DefaultHTTPPort
		if rn.Provisioner.HTTPPort != nil {
			p := *rn.Provisioner.HTTPPort
			if p < 1 || p > 65535 {
				r.errorf(d, "network.provisioner.httpPort", "port %d is out of range 1-65535", p)
			} else {
				n.HTTPPort = uint16(p)
			}
		}
	}
	if rn.Subnet == "" {
		r.errorf(d, "network", "network.subnet is missing: give the provisioning subnet (for example 10.10.0.0/24)")
	} else {
		n.Subnet = r.parsePrefix(d, "network.subnet", rn.Subnet)
	}
	if n.Subnet.IsValid() && n.Address.IsValid() {
		if !n.Subnet.Contains(n.Address) {
			r.errorf(d, "network.provisioner.address", "address %s is outside network.subnet %s", n.Address, n.Subnet)
		} else if what := reservedAddr(n.Subnet, n.Address); what != "" {
			r.errorf(d, "network.provisioner.address", "address %s is the %s of network.subnet %s: give the provisioner a host address", n.Address, what, n.Subnet)
		}
	}
	if rn.Gateway != "" {
		n.Gateway = r.parseAddr(d, "network.gateway", rn.Gateway)
		r.checkGateway(d, "network.gateway", n.Gateway, n.Subnet, "network.subnet")
	}
	for i, s := range rn.DNSServers {
		if a := r.parseAddr(d, fmt.Sprintf("network.dnsServers[%d]", i), s); a.IsValid() {
			n.DNSServers = append(n.DNSServers, a)
		}
	}
	if rn.DomainName != "" && !isDNSName(rn.DomainName) {
		r.errorf(d, "network.domainName", "%q is not a DNS domain name", rn.DomainName)
	}
	n.DomainName = rn.DomainName
	n.DHCPMode = DHCPAuthoritative
	n.LeaseTime = DefaultLeaseTime
	if rn.DHCP != nil {
		switch m := DHCPMode(rn.DHCP.Mode); m {
		case "":
		case DHCPAuthoritative, DHCPProxy, DHCPOff:
			n.DHCPMode = m
		default:
			r.errorf(d, "network.dhcp.mode", "unknown DHCP mode %q: want authoritative (hand out addresses), proxy (boot information only, beside a site DHCP server) or off", rn.DHCP.Mode)
		}
		if rn.DHCP.LeaseTime != "" {
			lt, err := time.ParseDuration(rn.DHCP.LeaseTime)
			switch {
			case err != nil:
				r.errorf(d, "network.dhcp.leaseTime", "%q is not a duration (want for example 1h or 30m)", rn.DHCP.LeaseTime)
			case lt < time.Minute:
				r.errorf(d, "network.dhcp.leaseTime", "lease time %s is shorter than 1m: nodes would renew constantly", lt)
			default:
				n.LeaseTime = lt
			}
		}
	}
	n.RouterAdvertisements = true
	if rn.RouterAdvertisements != nil {
		n.RouterAdvertisements = *rn.RouterAdvertisements
	}
}

func (r *resolver) checkGateway(d *doc, path string, gw netip.Addr, subnet netip.Prefix, subnetPath string) {
	if !gw.IsValid() || !subnet.IsValid() {
		return
	}
	if !subnet.Contains(gw) {
		r.errorf(d, path, "gateway %s is outside %s %s", gw, subnetPath, subnet)
	} else if what := reservedAddr(subnet, gw); what != "" {
		r.errorf(d, path, "gateway %s is the %s of %s %s, not a router's address", gw, what, subnetPath, subnet)
	}
}

// routedDef is one networks[] entry and where it was written.
type routedDef struct {
	d    *doc
	path string
	raw  rawRoutedNetwork
}

// routedNetworks resolves the networks[] entries of every file, after the
// provisioner's own network.
func (r *resolver) routedNetworks(defs []routedDef) {
	local := r.inv.Network
	names := map[string]string{local.Name: "network.name"}
	if r.networkDoc != nil {
		names[local.Name] = r.networkDoc.at("network").String()
	}
	for _, def := range defs {
		d, path, rn := def.d, def.path, def.raw
		p := ProvisioningNetwork{Name: rn.Name, ProvisionerAddress: local.Address}
		switch {
		case rn.Name == "":
			r.errorf(d, path, "network has no name: give it one (such as rack-r02), nodes name it in network:")
		case !isDNSLabel(rn.Name):
			r.errorf(d, path+".name", "%q is not a network name: use lowercase letters, digits and '-'", rn.Name)
		default:
			if prev, ok := names[rn.Name]; ok {
				r.errorf(d, path+".name", "network %q is already defined at %s", rn.Name, prev)
			}
			names[rn.Name] = d.at(path).String()
		}
		if rn.Subnet == "" {
			r.errorf(d, path, "network %s has no subnet: give its provisioning subnet (for example 10.40.8.0/24)", rn.Name)
		} else {
			p.Subnet = r.parsePrefix(d, path+".subnet", rn.Subnet)
		}
		if rn.Gateway != "" {
			p.Gateway = r.parseAddr(d, path+".gateway", rn.Gateway)
			r.checkGateway(d, path+".gateway", p.Gateway, p.Subnet, "the network's subnet")
		} else if local.DHCPMode == DHCPAuthoritative {
			r.errorf(d, path, "network %s has no gateway: its nodes reach the provisioner through a router, so DHCP must hand them one (gateway: the router's address on %s)", rn.Name, rn.Subnet)
		}
		for i, s := range rn.DNSServers {
			if a := r.parseAddr(d, fmt.Sprintf("%s.dnsServers[%d]", path, i), s); a.IsValid() {
				p.DNSServers = append(p.DNSServers, a)
			}
		}
		if rn.DNSServers == nil {
			p.DNSServers = local.DNSServers
		}
		p.DomainName = rn.DomainName
		if rn.DomainName == "" {
			p.DomainName = local.DomainName
		} else if !isDNSName(rn.DomainName) {
			r.errorf(d, path+".domainName", "%q is not a DNS domain name", rn.DomainName)
		}
		for i, s := range rn.Relays {
			rp := fmt.Sprintf("%s.relays[%d]", path, i)
			a := r.parseAddr(d, rp, s)
			if !a.IsValid() {
				continue
			}
			switch {
			case p.Subnet.IsValid() && !p.Subnet.Contains(a):
				r.errorf(d, rp, "relay %s is outside the network's subnet %s: list the address the relay has on this subnet (the giaddr it writes into relayed requests, usually the gateway)", a, p.Subnet)
			case slices.Contains(p.Relays, a):
				r.errorf(d, rp, "relay %s is listed twice", a)
			default:
				p.Relays = append(p.Relays, a)
			}
		}
		if len(rn.Relays) == 0 {
			if p.Gateway.IsValid() {
				p.Relays = []netip.Addr{p.Gateway}
			} else if local.DHCPMode == DHCPProxy {
				r.errorf(d, path, "network %s has neither relays nor a gateway: list the DHCP relays that forward its requests (relays: [ADDRESS]), usually the gateway", rn.Name)
			}
		}
		if rn.ProvisionerAddress != "" {
			p.ProvisionerAddress = r.parseAddr(d, path+".provisionerAddress", rn.ProvisionerAddress)
		}
		if a := p.ProvisionerAddress; a.IsValid() {
			ap := path + ".provisionerAddress"
			if rn.ProvisionerAddress == "" {
				ap = path
			}
			switch {
			case a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast():
				r.errorf(d, ap, "provisioner address %s cannot be reached from another subnet: give an address routed to the provisioner", a)
			case p.Subnet.IsValid() && p.Subnet.Contains(a):
				r.errorf(d, ap, "provisioner address %s lies inside routed network %s (%s): a provisioner on that subnet would hear its nodes directly; describe the subnet as network: instead, or give an address reached through the router", a, rn.Name, p.Subnet)
			case p.Subnet.IsValid() && a.Is4() != p.Subnet.Addr().Is4():
				r.errorf(d, ap, "provisioner address %s and subnet %s are of different IP versions", a, p.Subnet)
			}
		}
		// Overlaps with the provisioner's network and the networks before.
		if p.Subnet.IsValid() {
			if local.Subnet.IsValid() && local.Subnet.Overlaps(p.Subnet) {
				r.errorf(d, path+".subnet", "subnet %s of network %s overlaps network.subnet %s: every provisioning network needs its own subnet", p.Subnet, rn.Name, local.Subnet)
			}
			for _, q := range r.inv.Networks {
				if q.Subnet.IsValid() && q.Subnet.Overlaps(p.Subnet) {
					r.errorf(d, path+".subnet", "subnet %s of network %s overlaps subnet %s of network %s", p.Subnet, rn.Name, q.Subnet, q.Name)
				}
			}
		}
		r.inv.Networks = append(r.inv.Networks, p)
	}
}

// provisioningNetworks returns every provisioning network, the
// provisioner's own first.
func (r *resolver) provisioningNetworks() []ProvisioningNetwork {
	return append([]ProvisioningNetwork{r.inv.Local()}, r.inv.Networks...)
}

// nodeNetwork picks the network of a node entry: the one it names, or the
// one whose subnet holds its (first) IP. It reports false, with the problem
// recorded, when there is none.
func (r *resolver) nodeNetwork(d *doc, path, label, name string, ip netip.Addr) (ProvisioningNetwork, bool) {
	all := r.provisioningNetworks()
	if name != "" {
		for _, p := range all {
			if p.Name == name {
				return p, true
			}
		}
		names := make([]string, len(all))
		for i, p := range all {
			names[i] = p.Name
		}
		msg := fmt.Sprintf("node %s: unknown network %q", label, name)
		if s := closest(name, names); s != "" {
			msg += fmt.Sprintf(", did you mean %q?", s)
		} else {
			msg += "; defined networks: " + strings.Join(names, ", ")
		}
		r.errorf(d, path+".network", "%s", msg)
		return ProvisioningNetwork{}, false
	}
	if !ip.IsValid() {
		return ProvisioningNetwork{}, false
	}
	for _, p := range all {
		if p.Subnet.IsValid() && p.Subnet.Contains(ip) {
			return p, true
		}
	}
	if len(all) == 1 {
		if all[0].Subnet.IsValid() {
			r.errorf(d, path+".ip", "node %s: ip %s is outside the provisioning subnet %s", label, ip, all[0].Subnet)
		}
		return ProvisioningNetwork{}, false
	}
	var subnets []string
	for _, p := range all {
		if p.Subnet.IsValid() {
			subnets = append(subnets, p.Name+" "+p.Subnet.String())
		}
	}
	r.errorf(d, path+".ip", "node %s: ip %s is in no provisioning network (%s): fix the address or add its network under networks:", label, ip, strings.Join(subnets, ", "))
	return ProvisioningNetwork{}, false
}

// checkNodeIP says what is wrong with a as the address of a node on network
// p, and the kind of problem (so a range reports each kind once), or ""
// when nothing is.
func checkNodeIP(p ProvisioningNetwork, local Network, a netip.Addr) (kind, problem string) {
	switch {
	case p.Subnet.IsValid() && !p.Subnet.Contains(a):
		if p.Name == local.Name {
			return "outside", fmt.Sprintf("ip %s is outside the provisioning subnet %s", a, p.Subnet)
		}
		return "outside", fmt.Sprintf("ip %s is outside network %s (%s)", a, p.Name, p.Subnet)
	case a == p.ProvisionerAddress || a == local.Address || a == p.Gateway:
		return "taken", fmt.Sprintf("ip %s is the provisioner's or the gateway's address", a)
	case slices.Contains(p.Relays, a):
		return "taken", fmt.Sprintf("ip %s is the address of a DHCP relay of network %s", a, p.Name)
	}
	if what := reservedAddr(p.Subnet, a); what != "" {
		return "reserved", fmt.Sprintf("ip %s is the %s of %s: give the node a host address", a, what, p.Subnet)
	}
	return "", ""
}

// reservedAddr names what a is when it is the network or broadcast address
// of an IPv4 subnet of at most /30 (a /31 or /32 has neither, RFC 3021), or
// returns "".
func reservedAddr(subnet netip.Prefix, a netip.Addr) string {
	if !subnet.IsValid() || !a.Is4() || !subnet.Addr().Is4() || subnet.Bits() > 30 || !subnet.Contains(a) {
		return ""
	}
	if a == subnet.Masked().Addr() {
		return "network address"
	}
	b := subnet.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= 1<<(32-subnet.Bits()) - 1
	if a == netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}) {
		return "broadcast address"
	}
	return ""
}
