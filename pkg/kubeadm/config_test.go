package kubeadm

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/pkg/inventory"

	goldenfile "github.com/slipway-dev/slipway/internal/golden"
)

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenfile.Check(t, filepath.Join("testdata", name), got)
}

func testCluster() inventory.Cluster {
	return inventory.Cluster{
		Name:                 "lab",
		KubernetesVersion:    "v1.37.2",
		ControlPlaneEndpoint: "10.77.0.10",
		PodSubnet:            netip.MustParsePrefix("10.244.0.0/16"),
		ServiceSubnet:        netip.MustParsePrefix("10.96.0.0/12"),
		DNSDomain:            "cluster.local",
	}
}

func testNodes() (cp1, cp2, w1 inventory.Node) {
	cp1 = inventory.Node{Name: "cp-01", Profile: "control", Role: inventory.RoleControlPlane, IP: netip.MustParseAddr("10.77.0.10"),
		Taints: []inventory.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: "NoSchedule"}}}
	cp2 = inventory.Node{Name: "cp-02", Profile: "control", Role: inventory.RoleControlPlane, IP: netip.MustParseAddr("10.77.0.11")}
	w1 = inventory.Node{Name: "gpu-01", Profile: "gpu", Role: inventory.RoleWorker, IP: netip.MustParseAddr("10.77.0.21"),
		Labels: map[string]string{"slipway.dev/gpu": "h100", "topology.kubernetes.io/zone": "rack-a"},
		Taints: []inventory.Taint{{Key: "nvidia.com/gpu", Value: "present", Effect: "NoSchedule"}}}
	return
}

func testToken(node string) Token {
	return Token{ID: "abcdef", Secret: inventory.NewSecret("0123456789abcdef"), Node: node,
		Expires: time.Date(2026, 11, 28, 12, 30, 0, 0, time.UTC), TTL: DefaultTokenTTL}
}

const testCAHash = "sha256:3b793efefe27a19f93b0fbe6e637e9c41d0dde8a377d6ab1c0f656bf1136dd8a"
const testCertKey = "6f3c1b3a2d5e4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"

func TestRenderKubeadmConfigs(t *testing.T) {
	t.Parallel()
	cp1, cp2, w1 := testNodes()
	c := testCluster()
	init, err := InitConfig(c, cp1, testToken(cp1.Name), testCertKey)
	if err != nil {
		t.Fatalf("InitConfig: %v", err)
	}
	golden(t, "init-cp-01.yaml.golden", init)
	join, err := JoinConfig(c, cp2, testToken(cp2.Name), testCAHash, testCertKey, JoinOptions{})
	if err != nil {
		t.Fatalf("JoinConfig(control plane): %v", err)
	}
	golden(t, "join-cp-02.yaml.golden", join)
	work, err := JoinConfig(c, w1, testToken(w1.Name), testCAHash, testCertKey, JoinOptions{DiscoveryTimeout: 2 * time.Minute})
	if err != nil {
		t.Fatalf("JoinConfig(worker): %v", err)
	}
	golden(t, "join-gpu-01.yaml.golden", work)
	if bytes.Contains(work, []byte(testCertKey)) || bytes.Contains(work, []byte("certificateKey")) {
		t.Errorf("worker JoinConfiguration carries the certificate key:\n%s", work)
	}
	if bytes.Contains(work, []byte("unsafeSkipCAVerification")) {
		t.Errorf("worker JoinConfiguration skips CA verification:\n%s", work)
	}
}

func TestRenderKubeadmConfigRefuses(t *testing.T) {
	t.Parallel()
	cp1, _, w1 := testNodes()
	tests := []struct {
		name   string
		render func() error
		want   string
	}{
		{"unknown kubernetes version", func() error {
			c := testCluster()
			c.KubernetesVersion = "v1.40.0"
			_, err := InitConfig(c, cp1, testToken("cp-01"), testCertKey)
			return err
		}, "deploys v1.36.x and v1.37.x only"},
		{"malformed kubernetes version", func() error {
			c := testCluster()
			c.KubernetesVersion = "1.37"
			_, err := JoinConfig(c, w1, testToken("gpu-01"), testCAHash, "", JoinOptions{})
			return err
		}, "want v1.MINOR.PATCH"},
		{"overlapping subnets", func() error {
			c := testCluster()
			c.ServiceSubnet = netip.MustParsePrefix("10.244.128.0/20")
			_, err := InitConfig(c, cp1, testToken("cp-01"), testCertKey)
			return err
		}, "overlaps service subnet"},
		{"restricted label", func() error {
			n := w1
			n.Labels = map[string]string{"node-role.kubernetes.io/worker": ""}
			_, err := JoinConfig(testCluster(), n, testToken("gpu-01"), testCAHash, "", JoinOptions{})
			return err
		}, `label "node-role.kubernetes.io/worker"`},
		{"init on a worker", func() error {
			_, err := InitConfig(testCluster(), w1, testToken("gpu-01"), testCertKey)
			return err
		}, "want control-plane"},
		{"control-plane join without certificate key", func() error {
			_, err := JoinConfig(testCluster(), cp1, testToken("cp-01"), testCAHash, "", JoinOptions{})
			return err
		}, "no certificate key"},
		{"loopback control plane", func() error {
			n := cp1
			n.IP = netip.MustParseAddr("127.0.0.1")
			_, err := InitConfig(testCluster(), n, testToken("cp-01"), testCertKey)
			return err
		}, "cannot be the API server's advertise address"},
		{"ca hash not pinned", func() error {
			_, err := JoinConfig(testCluster(), w1, testToken("gpu-01"), "", "", JoinOptions{})
			return err
		}, "is not sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.render()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("render with %s = %v, want an error containing %q", tt.name, err, tt.want)
			}
		})
	}
}

func TestEndpointDefaultsPort(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"10.0.0.1": "10.0.0.1:6443", "api.lab:8443": "api.lab:8443", "fd00::1": "[fd00::1]:6443", "[fd00::1]:443": "[fd00::1]:443"} {
		c := testCluster()
		c.ControlPlaneEndpoint = in
		if got := endpoint(c); got != want {
			t.Errorf("endpoint(%q) = %q, want %q", in, got, want)
		}
	}
}

// A node's topology reaches the kubelet's --node-labels in both the init
// and the join configuration, beside its own labels, so the Node carries
// its rack and block from the moment it registers.
func TestTopologyLabelsRegistered(t *testing.T) {
	t.Parallel()
	cp1, cp2, w1 := testNodes()
	w1.Labels = map[string]string{"slipway.dev/gpu": "h100"}
	w1.Topology = []inventory.TopologyLevel{{Level: "zone", Value: "hall-a"}, {Level: "block", Value: "b1"}, {Level: "rack", Value: "r02"}}
	cp1.Topology = []inventory.TopologyLevel{{Level: "rack", Value: "r01"}}
	cp2.Topology = []inventory.TopologyLevel{{Level: "rack", Value: "r01"}}
	c := testCluster()
	render := map[string]func() ([]byte, error){
		"init cp-01": func() ([]byte, error) { return InitConfig(c, cp1, testToken(cp1.Name), testCertKey) },
		"join cp-02": func() ([]byte, error) {
			return JoinConfig(c, cp2, testToken(cp2.Name), testCAHash, testCertKey, JoinOptions{})
		},
		"join gpu-01": func() ([]byte, error) { return JoinConfig(c, w1, testToken(w1.Name), testCAHash, "", JoinOptions{}) },
	}
	want := map[string]string{
		"init cp-01":  "topology.slipway.dev/rack=r01",
		"join cp-02":  "topology.slipway.dev/rack=r01",
		"join gpu-01": "slipway.dev/gpu=h100,topology.kubernetes.io/zone=hall-a,topology.slipway.dev/block=b1,topology.slipway.dev/rack=r02,topology.slipway.dev/zone=hall-a",
	}
	for name, fn := range render {
		b, err := fn()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := ""
		for _, doc := range strings.Split(string(b), "\n---\n") {
			var d struct {
				NodeRegistration nodeRegistration `json:"nodeRegistration"`
			}
			if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for _, a := range d.NodeRegistration.KubeletExtraArgs {
				if a.Name == "node-labels" {
					got = a.Value
				}
			}
		}
		if got != want[name] {
			t.Errorf("%s: node-labels = %q, want %q", name, got, want[name])
		}
	}
}
