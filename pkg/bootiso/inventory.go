package bootiso

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// FromInventory describes inventory node n for Build: its MAC, its address
// in its provisioning network's subnet (a routed network's when the node is
// on one), that network's gateway and first DNS server, and its script on
// the provisioner's boot HTTP server as that network reaches it
// (http://ADDRESS:PORT/boot/NAME.ipxe). httpPort is the port the boot HTTP
// server really listens on (serve and up --http-port); 0 means the
// inventory's network.provisioner.httpPort.
func FromInventory(inv *inventory.Inventory, n inventory.Node, httpPort uint16) (Node, error) {
	nw := inv.NetworkOf(n)
	if !n.IP.IsValid() || !nw.Subnet.IsValid() || !nw.ProvisionerAddress.IsValid() {
		return Node{}, fmt.Errorf("node %s: the cd needs the node's ip, its network's subnet and the provisioner's address", n.Name)
	}
	port := cmp.Or(httpPort, inv.Network.HTTPPort, inventory.DefaultHTTPPort)
	out := Node{
		Name:      n.Name,
		MAC:       net.HardwareAddr(n.MAC),
		Address:   netip.PrefixFrom(n.IP, nw.Subnet.Bits()),
		Gateway:   nw.Gateway,
		ScriptURL: fmt.Sprintf("http://%s/boot/%s.ipxe", netip.AddrPortFrom(nw.ProvisionerAddress, port), n.Name),
		UEFI:      n.Boot.Firmware != inventory.FirmwareBIOS,
	}
	if len(nw.DNSServers) > 0 {
		out.DNS = nw.DNSServers[0]
	}
	return out, nil
}
