package kubeadm

import (
	"net/netip"
	"testing"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// A node of a routed network reports its steps to the provisioner address
// its subnet reaches; a node of the provisioner's own network to
// PhoneHomeURL as given.
func TestRoutedNodePhonesHomeOnItsNetworksAddress(t *testing.T) {
	t.Parallel()
	inv := testInventory()
	inv.Networks = []inventory.ProvisioningNetwork{{Name: "r3", Subnet: netip.MustParsePrefix("10.79.0.0/24"),
		Relays: []netip.Addr{netip.MustParseAddr("10.79.0.1")}, ProvisionerAddress: netip.MustParseAddr("10.99.0.1")}}
	b, err := New(Config{Inventory: inv, PKI: newTestPKI(t), PhoneHomeURL: "http://10.77.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, w1 := testNodes()
	for _, tt := range []struct {
		network, want string
	}{
		{"", "http://10.77.0.1:8080"},
		{"r3", "http://10.99.0.1:8080"},
	} {
		n := w1
		n.Network = tt.network
		nc, err := b.NodeConfig(n, KindWorker, testToken(n.Name), false)
		if err != nil {
			t.Fatal(err)
		}
		if nc.PhoneHomeURL != tt.want {
			t.Errorf("NodeConfig(node on network %q).PhoneHomeURL = %q, want %q", tt.network, nc.PhoneHomeURL, tt.want)
		}
	}
}
