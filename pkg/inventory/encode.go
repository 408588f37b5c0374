package inventory

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"strings"

	"go.yaml.in/yaml/v3"
)

// EncodeYAML writes inv as one inventory document that Load reads back to
// the same inventory: every node written out (ranges expanded, {index}
// filled in, profile settings it overrides on the node), networks and
// defaults explicit, secrets as references. A comment names the files it
// came from.
func (inv *Inventory) EncodeYAML() ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# The resolved inventory of %s:\n# profiles and ranges applied, defaults written out. It validates as it is.\n", strings.Join(inv.Sources, ", "))
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(inv.document()); err != nil {
		return nil, fmt.Errorf("encode inventory: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode inventory: %w", err)
	}
	return b.Bytes(), nil
}

// EncodeJSON writes the document EncodeYAML writes, as indented JSON (which
// Load reads too).
func (inv *Inventory) EncodeJSON() ([]byte, error) {
	b, err := json.MarshalIndent(inv.document(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode inventory: %w", err)
	}
	return append(b, '\n'), nil
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func addrStrings(as []netip.Addr) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.String())
	}
	return out
}

func boolPtr(b bool) *bool { return &b }

func topologyMap(ls []TopologyLevel) orderedMap {
	var m orderedMap
	for _, l := range ls {
		m = append(m, mapItem{l.Level, l.Value})
	}
	return m
}

func rawTaints(ts []Taint) []rawTaint {
	var out []rawTaint
	for _, t := range ts {
		out = append(out, rawTaint(t))
	}
	return out
}

// document returns inv in the schema Load reads.
func (inv *Inventory) document() rawDoc {
	doc := rawDoc{APIVersion: APIVersion, Kind: Kind, Addons: rawAddons(inv.Addons)}
	c := inv.Cluster
	doc.Cluster = &rawCluster{Name: c.Name, KubernetesVersion: c.KubernetesVersion, ControlPlaneEndpoint: c.ControlPlaneEndpoint,
		PodSubnet: c.PodSubnet.String(), ServiceSubnet: c.ServiceSubnet.String(), DNSDomain: c.DNSDomain}
	n := inv.Network
	port := int(n.HTTPPort)
	doc.Network = &rawNetwork{
		Provisioner:          &rawProvisioner{Interface: n.Interface, Address: addrString(n.Address), HTTPPort: &port},
		Subnet:               n.Subnet.String(),
		Gateway:              addrString(n.Gateway),
		DNSServers:           addrStrings(n.DNSServers),
		DomainName:           n.DomainName,
		DHCP:                 &rawDHCP{Mode: string(n.DHCPMode), LeaseTime: n.LeaseTime.String()},
		RouterAdvertisements: boolPtr(n.RouterAdvertisements),
	}
	if n.Name != DefaultNetworkName {
		doc.Network.Name = n.Name
	}
	for _, p := range inv.Networks {
		doc.Networks = append(doc.Networks, rawRoutedNetwork{
			Name: p.Name, Subnet: p.Subnet.String(), Gateway: addrString(p.Gateway), DNSServers: addrStrings(p.DNSServers),
			DomainName: p.DomainName, Relays: addrStrings(p.Relays), ProvisionerAddress: addrString(p.ProvisionerAddress),
		})
	}
	if len(inv.Profiles) > 0 {
		doc.Profiles = map[string]*rawProfile{}
	}
	for name, p := range inv.Profiles {
		rp := &rawProfile{Role: string(p.Role), Labels: p.Labels, Topology: topologyMap(p.Topology), Taints: rawTaints(p.Taints)}
		if p.Boot != (Boot{}) {
			rp.Boot = &rawBoot{Firmware: string(p.Boot.Firmware), Kernel: p.Boot.Kernel, Initrd: p.Boot.Initrd, KernelArgs: p.Boot.KernelArgs, Method: string(p.Boot.Method), ConfigFormat: string(p.Boot.ConfigFormat)}
		}
		if p.BMC != (BMC{}) {
			rp.BMC = &rawBMC{Username: p.BMC.Username, Password: p.BMC.Password.String(), CAFile: p.BMC.CAFile}
			if p.BMC.InsecureSkipVerify {
				rp.BMC.InsecureSkipVerify = boolPtr(true)
			}
		}
		doc.Profiles[name] = rp
	}
	for _, n := range inv.Nodes {
		doc.Nodes = append(doc.Nodes, inv.rawNode(n))
	}
	return doc
}

// rawNode writes n out in full, leaving out what its profile gives it.
func (inv *Inventory) rawNode(n Node) rawNode {
	p := inv.Profiles[n.Profile]
	rn := rawNode{Name: n.Name, Profile: n.Profile, Serial: n.Serial, MAC: n.MAC.String(), IP: addrString(n.IP)}
	if n.Role != p.Role {
		rn.Role = string(n.Role)
	}
	if n.Slot != 0 {
		rn.Slot = &n.Slot
	}
	// The rack is one of the topology levels, in its place.
	rn.Topology = topologyMap(n.Topology)
	if len(inv.Networks) > 0 {
		rn.Network = n.Network
	}
	for _, nic := range n.NICs {
		rn.NICs = append(rn.NICs, rawNIC{Name: nic.Name, MAC: nic.MAC.String(), IP: addrString(nic.IP)})
	}
	b := &rawBMC{URL: n.BMC.URL}
	if n.BMC.Username != p.BMC.Username {
		b.Username = n.BMC.Username
	}
	if n.BMC.Password != p.BMC.Password {
		b.Password = n.BMC.Password.String()
	}
	if n.BMC.CAFile != p.BMC.CAFile {
		b.CAFile = n.BMC.CAFile
	}
	if n.BMC.InsecureSkipVerify != p.BMC.InsecureSkipVerify {
		b.InsecureSkipVerify = boolPtr(n.BMC.InsecureSkipVerify)
	}
	rn.BMC = b
	var boot rawBoot
	if n.Boot.Firmware != p.Boot.Firmware {
		boot.Firmware = string(n.Boot.Firmware)
	}
	if n.Boot.Kernel != p.Boot.Kernel {
		boot.Kernel = n.Boot.Kernel
	}
	if n.Boot.Initrd != p.Boot.Initrd {
		boot.Initrd = n.Boot.Initrd
	}
	if n.Boot.KernelArgs != p.Boot.KernelArgs {
		boot.KernelArgs = n.Boot.KernelArgs
	}
	if n.Boot.Method != p.Boot.Method {
		boot.Method = string(n.Boot.Method)
	}
	if n.Boot.ConfigFormat != p.Boot.ConfigFormat {
		boot.ConfigFormat = string(n.Boot.ConfigFormat)
	}
	if boot != (rawBoot{}) {
		rn.Boot = &boot
	}
	labels := maps.Clone(n.Labels)
	maps.DeleteFunc(labels, func(k, v string) bool { pv, ok := p.Labels[k]; return ok && pv == v })
	if len(labels) > 0 {
		rn.Labels = labels
	}
	var own []Taint
	for _, t := range n.Taints {
		if !containsTaint(p.Taints, t) {
			own = append(own, t)
		}
	}
	rn.Taints = rawTaints(own)
	if n.Disabled {
		rn.Disabled = boolPtr(true)
	}
	return rn
}
