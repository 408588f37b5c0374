package inventory

import (
	"net/netip"
	"strings"
	"testing"
)

func TestReservedAddr(t *testing.T) {
	for _, tt := range []struct{ subnet, addr, want string }{
		{"10.0.0.0/24", "10.0.0.0", "network address"},
		{"10.0.0.0/24", "10.0.0.255", "broadcast address"},
		{"10.0.0.0/24", "10.0.0.1", ""},
		{"10.0.0.0/22", "10.0.3.255", "broadcast address"},
		{"10.0.0.0/22", "10.0.1.255", ""},
		{"10.0.0.0/30", "10.0.0.3", "broadcast address"},
		{"10.0.0.0/31", "10.0.0.0", ""}, // RFC 3021: both addresses are hosts
		{"10.0.0.0/31", "10.0.0.1", ""},
		{"10.0.0.0/32", "10.0.0.0", ""},
		{"fd00::/64", "fd00::", ""},
		{"10.0.0.0/24", "10.0.1.0", ""}, // outside: reported elsewhere
	} {
		got := reservedAddr(netip.MustParsePrefix(tt.subnet), netip.MustParseAddr(tt.addr))
		if got != tt.want {
			t.Errorf("reservedAddr(%s, %s) = %q, want %q", tt.subnet, tt.addr, got, tt.want)
		}
	}
}

// A directory holding two inventories gets one problem that says so, not
// a cascade of duplicates.
func TestTwoInventoriesOneProblem(t *testing.T) {
	_, err := Load("../../inventory/rack-gpu.yaml", "../../inventory/lab-qemu.yaml")
	if err == nil {
		t.Fatal("Load(two inventories) = nil error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 1 {
		t.Fatalf("Load(two inventories) reported %d problems, want exactly one:\n%v", len(lines), err)
	}
	for _, want := range []string{`cluster "hpc-a" (../../inventory/rack-gpu.yaml:`, `cluster "lab" (../../inventory/lab-qemu.yaml:`, "2 inventories", "-f ../../inventory/rack-gpu.yaml"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Load(two inventories) = %q, want it to contain %q", err, want)
		}
	}
}

func TestNetworkOf(t *testing.T) {
	inv, err := Load("testdata/valid-routed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ node, network, provisioner, gateway string }{
		{"cp1", "mgmt", "10.40.0.2", "10.40.0.1"},
		{"gpu01", "rack-r02", "10.40.0.2", "10.40.2.1"},
		{"gpu04", "rack-r03", "10.99.0.2", "10.40.3.1"},
	} {
		n, _ := inv.Node(tt.node)
		p := inv.NetworkOf(n)
		if p.Name != tt.network || p.ProvisionerAddress.String() != tt.provisioner || p.Gateway.String() != tt.gateway {
			t.Errorf("NetworkOf(%s) = %s via %s, provisioner %s; want %s via %s, provisioner %s", tt.node, p.Name, p.Gateway, p.ProvisionerAddress, tt.network, tt.gateway, tt.provisioner)
		}
	}
}

func TestBootURL(t *testing.T) {
	p := ProvisioningNetwork{Name: "r3", ProvisionerAddress: netip.MustParseAddr("10.99.0.1")}
	for base, want := range map[string]string{
		"http://10.77.0.1:8080":       "http://10.99.0.1:8080",
		"http://10.77.0.1:8080/x?y=1": "http://10.99.0.1:8080/x?y=1",
		"http://boot.example":         "http://10.99.0.1",
		"::not a url":                 "::not a url",
	} {
		if got := p.BootURL(base); got != want {
			t.Errorf("BootURL(%q) = %q, want %q", base, got, want)
		}
	}
	inv := &Inventory{Networks: []ProvisioningNetwork{p}}
	if got := inv.NodeBootURL(Node{Network: "local"}, "http://10.77.0.1:8080"); got != "http://10.77.0.1:8080" {
		t.Errorf("NodeBootURL(node of the provisioner's network) = %q, want the base unchanged", got)
	}
	if got := inv.NodeBootURL(Node{Network: "r3"}, "http://10.77.0.1:8080"); got != "http://10.99.0.1:8080" {
		t.Errorf("NodeBootURL(node of r3) = %q, want http://10.99.0.1:8080", got)
	}
}
