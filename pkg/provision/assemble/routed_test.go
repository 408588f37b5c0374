package assemble

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// A node of a routed network phones home on its network's provisioner
// address, in the report-only configuration as in the kubeadm one.
func TestReportOnlyRoutedPhoneHome(t *testing.T) {
	inv := &inventory.Inventory{
		Networks: []inventory.ProvisioningNetwork{{Name: "rack-b", ProvisionerAddress: netip.MustParseAddr("10.99.0.1")}},
		Nodes: []inventory.Node{
			{Name: "cp-1", Role: inventory.RoleControlPlane},
			{Name: "w-1", Role: inventory.RoleWorker, Network: "rack-b"},
		},
	}
	r := reportOnlyRenderer{inv: inv, baseURL: "http://10.77.0.1:8080"}
	for _, tt := range []struct{ node, want string }{
		{"cp-1", "PHONE_HOME=http://10.77.0.1:8080/phone-home/cp-1\n"},
		{"w-1", "PHONE_HOME=http://10.99.0.1:8080/phone-home/w-1\n"},
	} {
		n, _ := inv.Node(tt.node)
		b, err := r.Render(t.Context(), n)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), tt.want) {
			t.Errorf("report-only config of %s lacks %q:\n%s", tt.node, tt.want, b)
		}
	}
}
