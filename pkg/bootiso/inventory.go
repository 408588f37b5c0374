package bootiso

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// DefaultHTTPPort is the boot HTTP server's port when the inventory leaves
// network.httpPort unset.
const DefaultHTTPPort = 8080

// FromInventory describes inventory node n for Build: its MAC, its address
// in the provisioning subnet, the gateway and first DNS server, and its
// script on the provisioner's boot HTTP server
// (http://ADDRESS:PORT/boot/NAME.ipxe).
func FromInventory(inv *inventory.Inventory, n inventory.Node) (Node, error) {
	nw := inv.Network
	if !n.IP.IsValid() || !nw.Subnet.IsValid() || !nw.Address.IsValid() {
		return Node{}, fmt.Errorf("node %s: the cd needs the node's ip, network.subnet and network.provisioner.address", n.Name)
	}
	port := nw.HTTPPort
	if port == 0 {
		port = DefaultHTTPPort
	}
	out := Node{
		Name:      n.Name,
		MAC:       net.HardwareAddr(n.MAC),
		Address:   netip.PrefixFrom(n.IP, nw.Subnet.Bits()),
		Gateway:   nw.Gateway,
		ScriptURL: fmt.Sprintf("http://%s/boot/%s.ipxe", netip.AddrPortFrom(nw.Address, port), n.Name),
		UEFI:      n.Boot.Firmware != inventory.FirmwareBIOS,
	}
	if len(nw.DNSServers) > 0 {
		out.DNS = nw.DNSServers[0]
	}
	return out, nil
}
