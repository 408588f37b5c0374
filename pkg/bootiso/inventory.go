package bootiso

import (
	"bytes"
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

// CD is one node's virtual-media boot CD.
type CD struct {
	// Node is the node's name; ScriptURL the boot script its iPXE chains to.
	Node, ScriptURL string
	// Image is the ISO 9660 image.
	Image []byte
}

// BuildNodes builds the CD of every node named, in order, with the boot
// HTTP port as FromInventory takes it. Every CD is built before it returns,
// so a bad node (unknown, or one a CD cannot boot) yields no CD at all and
// the caller writes nothing.
func BuildNodes(inv *inventory.Inventory, names []string, httpPort uint16, cfg Config) ([]CD, error) {
	cds := make([]CD, 0, len(names))
	for _, name := range names {
		n, ok := inv.Node(name)
		if !ok {
			return nil, fmt.Errorf("unknown node %q: it is not in the inventory", name)
		}
		bn, err := FromInventory(inv, n, httpPort)
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if err := Build(&buf, cfg, bn); err != nil {
			return nil, err
		}
		cds = append(cds, CD{Node: name, ScriptURL: bn.ScriptURL, Image: buf.Bytes()})
	}
	return cds, nil
}
