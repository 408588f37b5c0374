package inventory

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"time"
)

// APIVersion is the only inventory schema version this build reads.
const APIVersion = "slipway.dev/v1alpha1"

// Kind is the kind every inventory document declares.
const Kind = "Inventory"

// Inventory is a loaded, defaulted and validated inventory: every node is
// resolved (ranges expanded, profile settings applied, node overrides on top).
type Inventory struct {
	// Cluster describes the Kubernetes cluster the nodes form.
	Cluster Cluster `json:"cluster"`
	// Network is the provisioner's own provisioning network, the one its
	// boot services listen on.
	Network Network `json:"network"`
	// Networks are the routed provisioning networks: subnets behind
	// routers whose DHCP requests arrive through relays (none by default).
	Networks []ProvisioningNetwork `json:"networks,omitempty"`
	// Profiles are the named profiles as written, for display.
	Profiles map[string]Profile `json:"profiles,omitempty"`
	// Nodes are all nodes, disabled ones included, in file then entry order.
	Nodes []Node `json:"nodes"`
	// Addons are manifest files and Helm charts (see Addon) applied in
	// order once the first control-plane node's API answers.
	Addons []Addon `json:"addons,omitempty"`
	// Sources are the files the inventory was loaded from, in load order.
	Sources []string `json:"sources"`
	// Warnings are problems that do not stop the inventory from being used,
	// each formatted like an error (FILE:LINE:COL: path: message).
	Warnings []string `json:"warnings,omitempty"`
}

// Cluster is the cluster-wide Kubernetes configuration.
type Cluster struct {
	// Name is the cluster name (DNS label).
	Name string `json:"name"`
	// KubernetesVersion is the normalised version, such as "v1.37.2".
	KubernetesVersion string `json:"kubernetesVersion"`
	// ControlPlaneEndpoint is host:port of the API server (VIP or the first
	// control-plane node's address); the port defaults to 6443.
	ControlPlaneEndpoint string `json:"controlPlaneEndpoint"`
	// PodSubnet is the pod network CIDR (default 10.244.0.0/16).
	PodSubnet netip.Prefix `json:"podSubnet"`
	// ServiceSubnet is the service network CIDR (default 10.96.0.0/12).
	ServiceSubnet netip.Prefix `json:"serviceSubnet"`
	// DNSDomain is the cluster DNS domain (default cluster.local).
	DNSDomain string `json:"dnsDomain"`
}

// DHCPMode selects how the provisioner takes part in DHCP.
type DHCPMode string

// DHCP modes.
const (
	// DHCPAuthoritative hands out addresses (the node's inventory IP) and boot information.
	DHCPAuthoritative DHCPMode = "authoritative"
	// DHCPProxy gives boot information only (proxyDHCP, ports 67 and 4011)
	// alongside a site DHCP server that hands out addresses.
	DHCPProxy DHCPMode = "proxy"
	// DHCPOff serves no DHCP: the site's DHCP server points nodes at the provisioner.
	DHCPOff DHCPMode = "off"
)

// DefaultNetworkName names the provisioner's own network when
// network.name is not given.
const DefaultNetworkName = "local"

// Network is the provisioner's own provisioning network: where the boot
// services listen, and the subnet they answer directly.
type Network struct {
	// Name names the network for nodes' network: field (default
	// DefaultNetworkName).
	Name string `json:"name"`
	// Interface is the provisioner's interface on the provisioning network.
	Interface string `json:"interface"`
	// Address is the provisioner's own address on that interface; boot
	// services listen on it and nodes fetch from it.
	Address netip.Addr `json:"address"`
	// HTTPPort is the boot HTTP server's port (default 8080).
	HTTPPort uint16 `json:"httpPort"`
	// Subnet is the provisioning subnet; every node IP must lie in it.
	Subnet netip.Prefix `json:"subnet"`
	// Gateway is the default router handed to nodes (optional).
	Gateway netip.Addr `json:"gateway,omitzero"`
	// DNSServers are the resolvers handed to nodes.
	DNSServers []netip.Addr `json:"dnsServers,omitempty"`
	// DomainName is the DNS search domain handed to nodes (optional).
	DomainName string `json:"domainName,omitempty"`
	// DHCPMode is authoritative (default), proxy or off.
	DHCPMode DHCPMode `json:"dhcpMode"`
	// LeaseTime is the DHCP lease time (default 1h).
	LeaseTime time.Duration `json:"leaseTime"`
	// RouterAdvertisements sends IPv6 router advertisements on Interface so
	// iPXE does not wait ~16 s for IPv6 autoconfiguration (default true).
	RouterAdvertisements bool `json:"routerAdvertisements"`
}

// ProvisioningNetwork is one provisioning subnet as its nodes see it:
// what DHCP hands them and the provisioner address they fetch from.
type ProvisioningNetwork struct {
	// Name is the network's name (network.name, or networks[].name).
	Name string `json:"name"`
	// Subnet is the network's subnet; its nodes' IPs lie in it.
	Subnet netip.Prefix `json:"subnet"`
	// Gateway is the default router handed to its nodes (optional on the
	// provisioner's own network).
	Gateway netip.Addr `json:"gateway,omitzero"`
	// DNSServers are the resolvers handed to its nodes (a routed network
	// inherits network.dnsServers when it names none).
	DNSServers []netip.Addr `json:"dnsServers,omitempty"`
	// DomainName is the search domain handed to its nodes (a routed network
	// inherits network.domainName when it names none).
	DomainName string `json:"domainName,omitempty"`
	// Relays are the DHCP relays (their address on this subnet, the giaddr
	// they write) whose requests are answered for this network; empty for
	// the provisioner's own network, whose requests arrive directly. A
	// routed network's relays default to its gateway.
	Relays []netip.Addr `json:"relays,omitempty"`
	// ProvisionerAddress is the provisioner's address as this network's
	// nodes reach it: boot URLs, TFTP next-server and the DHCP server
	// identifier use it (default network.provisioner.address).
	ProvisionerAddress netip.Addr `json:"provisionerAddress"`
}

// Routed reports whether the network is reached through relays rather
// than being the provisioner's own.
func (p ProvisioningNetwork) Routed() bool { return len(p.Relays) > 0 }

// Role is a node's role in the cluster.
type Role string

// Roles.
const (
	RoleControlPlane Role = "control-plane"
	RoleWorker       Role = "worker"
)

// Firmware is the boot firmware a node uses.
type Firmware string

// Firmware kinds.
const (
	FirmwareUEFI Firmware = "uefi"
	FirmwareBIOS Firmware = "bios"
)

// Boot says what a node network-boots.
type Boot struct {
	// Firmware is uefi (default) or bios.
	Firmware Firmware `json:"firmware"`
	// Kernel is the kernel's path in the asset directory (or an http(s) URL).
	Kernel string `json:"kernel"`
	// Initrd is the initrd's path in the asset directory (or an http(s) URL).
	Initrd string `json:"initrd"`
	// KernelArgs are extra kernel command-line arguments.
	KernelArgs string `json:"kernelArgs,omitempty"`
	// Method is how the node reaches its boot script: pxe (default, the
	// network's DHCP) or virtual-media (an iPXE CD the BMC inserts, for
	// segments without PXE; Redfish BMCs, bios firmware).
	Method BootMethod `json:"method,omitempty"`
	// ConfigFormat is the form of the node's one-time configuration: the
	// provisioner's default (empty), cloud-config (for images with
	// cloud-init, and Slipway's node image) or script (a POSIX shell
	// script, for stateless images without cloud-init).
	ConfigFormat ConfigFormat `json:"configFormat,omitempty"`
}

// ConfigFormat is the form a node's configuration is served in.
type ConfigFormat string

// Node configuration formats; the empty ConfigFormat means the
// provisioner's default (--node-config-format).
const (
	ConfigFormatCloudConfig ConfigFormat = "cloud-config"
	ConfigFormatScript      ConfigFormat = "script"
)

// BootMethod is how a node reaches its boot script.
type BootMethod string

// Boot methods; the empty BootMethod means pxe.
const (
	BootMethodPXE          BootMethod = "pxe"
	BootMethodVirtualMedia BootMethod = "virtual-media"
)

// Taint is a Kubernetes node taint.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

// Protocol is the BMC management protocol.
type Protocol string

// BMC protocols.
const (
	ProtocolRedfish Protocol = "redfish"
	ProtocolIPMI    Protocol = "ipmi"
)

// BMC is how the provisioner reaches a node's baseboard management controller.
type BMC struct {
	// URL is the BMC URL as written: redfish://host[:port] (HTTPS),
	// redfish+http://host[:port], or ipmi://host[:port].
	URL string `json:"url"`
	// Protocol is derived from the URL scheme.
	Protocol Protocol `json:"protocol"`
	// Scheme is "https" or "http" for Redfish; empty for IPMI.
	Scheme string `json:"scheme,omitempty"`
	// Host is the BMC host name or IP address.
	Host string `json:"host"`
	// Port is the BMC port (default 443 for redfish, 80 for redfish+http, 623 for ipmi).
	Port uint16 `json:"port"`
	// Username is the BMC user name.
	Username string `json:"username"`
	// Password is a reference to the BMC password, never the password itself.
	Password SecretRef `json:"password"`
	// CAFile is a PEM bundle to verify the BMC's TLS certificate (optional).
	CAFile string `json:"caFile,omitempty"`
	// InsecureSkipVerify disables TLS verification; it must be set explicitly.
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// Addr returns host:port of the BMC.
func (b BMC) Addr() string { return net.JoinHostPort(b.Host, fmt.Sprint(b.Port)) }

// NIC is a node's additional network interface, keyed by MAC.
type NIC struct {
	// Name is the interface's role or name, such as "ib0" or "data0".
	Name string `json:"name,omitempty"`
	// MAC is the interface's hardware address.
	MAC HardwareAddr `json:"mac"`
	// IP is the interface's address, if it has a fixed one.
	IP netip.Addr `json:"ip,omitzero"`
}

// Pos is a position in an inventory file.
type Pos struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Col  int    `json:"col"`
}

// String returns FILE:LINE:COL.
func (p Pos) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col) }

// Node is one resolved server.
type Node struct {
	// Name is the node name, which is also its hostname and Kubernetes node name.
	Name string `json:"name"`
	// Profile is the name of the profile the node inherits from.
	Profile string `json:"profile"`
	// Role is control-plane or worker.
	Role Role `json:"role"`
	// Rack and Slot locate the server physically (optional).
	Rack string `json:"rack,omitempty"`
	Slot int    `json:"slot,omitempty"`
	// Serial is the chassis serial number (optional).
	Serial string `json:"serial,omitempty"`
	// Topology says where the node sits, broadest level first (rack
	// included when set); each level becomes a node label (TopologyLabels).
	Topology []TopologyLevel `json:"topology,omitempty"`
	// Network is the name of the node's provisioning network.
	Network string `json:"network"`
	// MAC is the boot NIC's hardware address; DHCP answers only known MACs.
	MAC HardwareAddr `json:"mac"`
	// IP is the node's address on the provisioning network.
	IP netip.Addr `json:"ip"`
	// NICs are the node's other interfaces.
	NICs []NIC `json:"nics,omitempty"`
	// BMC is how to reach the node's BMC.
	BMC BMC `json:"bmc"`
	// Boot says what the node network-boots.
	Boot Boot `json:"boot"`
	// Labels are Kubernetes node labels.
	Labels map[string]string `json:"labels,omitempty"`
	// Taints are Kubernetes node taints.
	Taints []Taint `json:"taints,omitempty"`
	// Disabled nodes are validated but never touched.
	Disabled bool `json:"disabled,omitempty"`
	// Source is where the node (or its range) is defined.
	Source Pos `json:"source"`
}

// HardwareAddr is a MAC address that prints and marshals in the usual
// colon-separated lowercase form.
type HardwareAddr net.HardwareAddr

// String returns aa:bb:cc:dd:ee:ff.
func (h HardwareAddr) String() string { return net.HardwareAddr(h).String() }

// MarshalText implements encoding.TextMarshaler.
func (h HardwareAddr) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// Profile is a set of node settings that nodes inherit and may override.
type Profile struct {
	Role   Role              `json:"role,omitempty"`
	Boot   Boot              `json:"boot,omitzero"`
	Labels map[string]string `json:"labels,omitempty"`
	// Topology holds topology levels the profile's nodes share (node levels
	// override them).
	Topology []TopologyLevel `json:"topology,omitempty"`
	Taints   []Taint         `json:"taints,omitempty"`
	// BMC holds BMC defaults (credentials, TLS); the URL is per node.
	BMC BMC `json:"bmc,omitzero"`
}

// Enabled returns the nodes that are not disabled.
func (inv *Inventory) Enabled() []Node {
	var out []Node
	for _, n := range inv.Nodes {
		if !n.Disabled {
			out = append(out, n)
		}
	}
	return out
}

// Node returns the node called name.
func (inv *Inventory) Node(name string) (Node, bool) {
	for _, n := range inv.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// Local returns the provisioner's own network as a ProvisioningNetwork.
func (inv *Inventory) Local() ProvisioningNetwork {
	n := inv.Network
	return ProvisioningNetwork{Name: n.Name, Subnet: n.Subnet, Gateway: n.Gateway, DNSServers: n.DNSServers,
		DomainName: n.DomainName, ProvisionerAddress: n.Address}
}

// NetworkOf returns the provisioning network of node n: a routed network
// when n.Network names one, else the provisioner's own.
func (inv *Inventory) NetworkOf(n Node) ProvisioningNetwork {
	for _, p := range inv.Networks {
		if p.Name == n.Network {
			return p
		}
	}
	return inv.Local()
}

// NodeByMAC returns the node whose boot NIC has the given MAC.
func (inv *Inventory) NodeByMAC(mac net.HardwareAddr) (Node, bool) {
	s := mac.String()
	for _, n := range inv.Nodes {
		if n.MAC.String() == s {
			return n, true
		}
	}
	return Node{}, false
}

// MarshalText returns FILE:LINE:COL.
func (p Pos) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// MarshalJSON writes LeaseTime as a duration string ("1h0m0s") rather than
// nanoseconds, so `inventory show` reads as the inventory was written.
func (n Network) MarshalJSON() ([]byte, error) {
	type plain Network
	return json.Marshal(struct {
		plain
		LeaseTime string `json:"leaseTime"`
	}{plain(n), n.LeaseTime.String()})
}

// BootURL returns base, the boot server's URL on the provisioner's own
// network (such as http://10.40.0.2:8080), as this network's nodes reach
// it: the host replaced by ProvisionerAddress, scheme, port and path kept.
// base comes back unchanged when it does not parse or p has no address.
func (p ProvisioningNetwork) BootURL(base string) string {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || !p.ProvisionerAddress.IsValid() {
		return base
	}
	if port := u.Port(); port != "" {
		u.Host = net.JoinHostPort(p.ProvisionerAddress.String(), port)
	} else if p.ProvisionerAddress.Is6() {
		u.Host = "[" + p.ProvisionerAddress.String() + "]"
	} else {
		u.Host = p.ProvisionerAddress.String()
	}
	return u.String()
}

// NodeBootURL returns base (the boot server's URL on the provisioner's own
// network) as node n reaches it: unchanged for a node of the provisioner's
// own network, on its network's provisioner address for a routed one.
func (inv *Inventory) NodeBootURL(n Node, base string) string {
	for _, p := range inv.Networks {
		if p.Name == n.Network {
			return p.BootURL(base)
		}
	}
	return base
}
