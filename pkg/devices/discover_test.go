package devices

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func discoverOff(t *testing.T, root string) ([]Device, string) {
	t.Helper()
	log, lb := newTestLog()
	devs, err := Discover(context.Background(), Config{Root: root, NVML: NVMLOff, Log: log})
	if err != nil {
		t.Fatalf("Discover(%s, nvml off): %v", root, err)
	}
	return devs, lb.String()
}

func TestDiscoverGolden(t *testing.T) {
	for _, name := range []string{"dgx-h100", "fpga-node", "broken-node", "empty-node"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			devs, _ := discoverOff(t, fixture(name))
			checkGolden(t, name, devs)
		})
	}
}

// summary is what a person checks first in discover's output.
type summary struct {
	ID, Kind, PCI string
	NUMA          int
	Healthy       bool
}

func summarize(devs []Device) []summary {
	var out []summary
	for _, d := range devs {
		out = append(out, summary{d.ID, string(d.Kind), d.PCIAddress, d.NUMANode, d.Healthy})
	}
	return out
}

func TestDiscoverDGX(t *testing.T) {
	devs, logs := discoverOff(t, fixture("dgx-h100"))
	gpu := func(bus, minor, numa int) summary {
		return summary{fmt.Sprintf("GPU-%08x-1111-2222-3333-4444%08x", bus, minor), "gpu", fmt.Sprintf("0000:%02x:00.0", bus), numa, true}
	}
	hca := func(name string, bus, numa int) summary {
		return summary{name, "hca", fmt.Sprintf("0000:%02x:00.0", bus), numa, true}
	}
	roce := func(name string, bus, fn, numa int) summary {
		return summary{name, "hca", fmt.Sprintf("0000:%02x:00.%d", bus, fn), numa, true}
	}
	want := []summary{
		gpu(0x1b, 0, 0), gpu(0x43, 1, 0), gpu(0x52, 3, 0), gpu(0x61, 2, 0),
		gpu(0x9d, 4, 1), gpu(0xc3, 5, 1), gpu(0xd1, 6, 1), gpu(0xdf, 7, 1),
		hca("mlx5_0", 0x18, 0), roce("mlx5_1", 0x29, 0, 0), roce("mlx5_2", 0x29, 1, 0),
		hca("mlx5_3", 0x40, 0), hca("mlx5_4", 0x4f, 0), hca("mlx5_5", 0x5e, 0),
		hca("mlx5_6", 0x9a, 1), roce("mlx5_7", 0xaa, 0, 1), roce("mlx5_8", 0xaa, 1, 1),
		hca("mlx5_9", 0xc0, 1), hca("mlx5_10", 0xce, 1), hca("mlx5_11", 0xdc, 1),
	}
	if diff := cmp.Diff(want, summarize(devs)); diff != "" {
		t.Fatalf("Discover(dgx-h100) devices (-want +got):\n%s", diff)
	}
	// The storage NICs are RoCE: their one port is Ethernet. Neither they
	// nor anything else is worth a warning on this healthy host.
	for _, d := range devs {
		if strings.HasPrefix(d.PCIAddress, "0000:29:") || strings.HasPrefix(d.PCIAddress, "0000:aa:") {
			if len(d.Ports) != 1 || d.Ports[0].LinkLayer != LinkLayerEthernet {
				t.Errorf("storage NIC %s ports = %+v, want one Ethernet port", d.ID, d.Ports)
			}
		}
	}
	if strings.Contains(logs, "level=WARN") {
		t.Errorf("Discover(dgx-h100), a healthy host with abi_version files in the RDMA classes, logged warnings:\n%s", logs)
	}

	// Each GPU is paired with exactly one HCA under its PCIe switch.
	topo := NewTopology(devs)
	for _, g := range devs[:8] {
		var pix []string
		for _, h := range devs[8:] {
			if h.Ports[0].LinkLayer != LinkLayerInfiniBand {
				continue
			}
			if topo.Locality(g.ID, h.ID) == LocalitySwitch {
				pix = append(pix, h.ID)
			}
		}
		if len(pix) != 1 {
			t.Errorf("GPU %s (%s) shares a switch with HCAs %v, want exactly one", g.ID, g.PCIAddress, pix)
		}
	}

	// GPU 0000:52:00.0 has minor 3 (the driver's, not its index 2).
	d := byID(devs)["GPU-00000052-1111-2222-3333-444400000003"]
	if got := d.DeviceNodes[0].Path; got != "/dev/nvidia3" {
		t.Errorf("GPU 0000:52:00.0 first device node = %s, want /dev/nvidia3 (minor from the driver's information file)", got)
	}
}

func TestDiscoverIPoIBDefaultRoute(t *testing.T) {
	t.Parallel()
	// The host's default route over IPoIB (ibp24s0 of mlx5_0) does not make
	// an InfiniBand HCA a host NIC.
	root := copyTree(t, "dgx-h100", "proc")
	must(t, os.WriteFile(filepath.Join(root, "proc", "net", "route"),
		[]byte("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"+
			"ibp24s0\t00000000\t0101000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"), 0o644))
	devs, _ := discoverOff(t, root)
	if _, ok := byID(devs)["mlx5_0"]; !ok {
		t.Errorf("Discover with the default route on ibp24s0 lacks mlx5_0; an InfiniBand HCA is never a host NIC")
	}
}

// TestDiscoverHostNICs: a RoCE device whose interface carries the default
// route or is a bond member is the host's own NIC and is left out (unless
// IncludeHostNICs); the others are reported.
func TestDiscoverHostNICs(t *testing.T) {
	t.Parallel()
	root := copyTree(t, "dgx-h100")
	// mlx5_1's port carries the default route; mlx5_2's is in bond0.
	must(t, os.WriteFile(filepath.Join(root, "proc", "net", "route"),
		[]byte("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"+
			"enp41s0f0np0\t00000000\t0101000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(root, "sys", "devices", "virtual", "net", "bond0"), 0o755))
	must(t, os.Symlink("../../../../../virtual/net/bond0",
		filepath.Join(root, "sys", "devices", "pci0000:28", "0000:28:01.0", "0000:29:00.1", "net", "enp41s0f1np1", "master")))
	for _, tc := range []struct {
		include bool
		want    map[string]bool
	}{
		{false, map[string]bool{"mlx5_1": false, "mlx5_2": false, "mlx5_7": true, "mlx5_8": true}},
		{true, map[string]bool{"mlx5_1": true, "mlx5_2": true, "mlx5_7": true, "mlx5_8": true}},
	} {
		devs, err := Discover(context.Background(), Config{Root: root, NVML: NVMLOff, IncludeHostNICs: tc.include, Log: discardLog()})
		must(t, err)
		m := byID(devs)
		got := map[string]bool{}
		for id := range tc.want {
			_, got[id] = m[id]
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Discover(IncludeHostNICs=%v) storage NICs reported (-want +got):\n%s", tc.include, diff)
		}
	}
}

// TestDiscoverFPGANode is issue 14's defect 4 on the discovery side: an
// Alveo's shell name and serial come from the management function's
// rom.m.*/xmc.m.* (XRT), and its interface ID is interface_uuids, not the
// logic UUID of what is loaded.
func TestDiscoverFPGANode(t *testing.T) {
	devs, _ := discoverOff(t, fixture("fpga-node"))
	type fpga struct {
		ID, Model, Iface, Logic, AFU, Shell, Serial, Mgmt string
		Nodes                                             []string
		Healthy                                           bool
	}
	var got []fpga
	for _, d := range devs {
		var nodes []string
		for _, n := range d.DeviceNodes {
			nodes = append(nodes, n.Path)
		}
		a := d.Attributes
		got = append(got, fpga{d.ID, d.Model, a["interface_id"], a["logic_uuid"], a["afu_id"], a["shell"], a["serial"], a["mgmt_pf"], nodes, d.Healthy})
	}
	const shell = "xilinx_u250_gen3x16_xdma_shell_4_1"
	want := []fpga{
		{"0000:17:00.1", "Alveo U250", "15bd0a5d0c6e4ba4b7c0d3e0f4a8c1e2", "a2b2c4b5e8d1f7e4a9c0b1d2e3f40516", "", shell, "21330621T000", "0000:17:00.0",
			[]string{"/dev/dri/renderD128", "/dev/xclmgmt256"}, true},
		{"0000:65:00.1", "Alveo U250", "15bd0a5d0c6e4ba4b7c0d3e0f4a8c1e2", "a2b2c4b5e8d1f7e4a9c0b1d2e3f40516", "", shell, "21330621T001", "0000:65:00.0",
			[]string{"/dev/dri/renderD129", "/dev/xclmgmt257"}, true},
		{"0000:b1:00.0", "FPGA SmartNIC N6001", "3f54a1a5b3f0445b8f8cf0b0c7a02d8b", "", "9aeffe5f84570612c72e0a2e8f5e3c1a", "", "", "",
			[]string{"/dev/dfl-port.0"}, true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Discover(fpga-node) FPGAs (-want +got):\n%s", diff)
	}
}

func TestDiscoverBrokenNode(t *testing.T) {
	devs, logs := discoverOff(t, fixture("broken-node"))
	type row struct {
		ID      string
		NUMA    int
		Healthy bool
		Reason  string
	}
	var got []row
	for _, d := range devs {
		got = append(got, row{d.ID, d.NUMANode, d.Healthy, d.HealthReason})
	}
	want := []row{
		// garbage numa_node: reported without NUMA.
		{"GPU-0badc0de-0000-0000-0000-000000000001", NoNUMA, true, ""},
		// no information file: no invented minor, unhealthy.
		{"0000:02:00.0", 0, false, "device minor unknown"},
		// one of two ports down: usable, the port listed.
		{"mlx5_0", 0, true, ""},
		{"mlx5_1", 0, false, "port 1 DOWN (Polling)"},
		{"0000:06:00.0", NoNUMA, false, "afu_id all f"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Discover(broken-node) (-want +got):\n%s", diff)
	}
	if got := byID(devs)["mlx5_0"].Attributes["ports_down"]; got != "2" {
		t.Errorf("mlx5_0 ports_down = %q, want \"2\"", got)
	}
	if _, ok := byID(devs)["mlx5_0"].Attributes["node_guid"]; ok {
		t.Errorf("mlx5_0 has a node_guid attribute, but its node_guid file is missing")
	}
	for _, want := range []string{
		`msg="numa node unknown" pci_addr=0000:01:00.0`,
		`msg="pci device skipped" pci_addr=0000:03:00.0`, // no class file
		`msg="pci device skipped" pci_addr=0000:04:00.0`, // empty vendor
		`msg="pci device skipped" pci_addr=0000:09:00.0`, // dangling symlink
		`msg="pci entry skipped: not a pci address"`,     // README in the list
		`msg="gpu driver information unreadable" pci_addr=0000:02:00.0`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("Discover(broken-node) logs lack %q; logs:\n%s", want, logs)
		}
	}
}

func TestDiscoverBadTrees(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		break_  func(t *testing.T, root string)
		wantErr bool
		wantIDs []string
		wantLog string
	}{
		{
			name:    "no pci bus",
			break_:  func(t *testing.T, root string) { must(t, os.RemoveAll(filepath.Join(root, "sys", "bus"))) },
			wantErr: true,
		},
		{
			name: "symlink loop in the pci list",
			break_: func(t *testing.T, root string) {
				l := filepath.Join(root, "sys", "bus", "pci", "devices", "0000:77:00.0")
				must(t, os.Symlink("0000:77:00.0", l))
			},
			wantIDs: []string{"GPU-00000052-1111-2222-3333-444400000003", "mlx5_4"},
			wantLog: `msg="pci device skipped" pci_addr=0000:77:00.0`,
		},
		{
			name: "infiniband class is not a directory",
			break_: func(t *testing.T, root string) {
				d := filepath.Join(root, "sys", "class", "infiniband")
				must(t, os.RemoveAll(d))
				must(t, os.WriteFile(d, []byte("x"), 0o644))
			},
			wantIDs: []string{"GPU-00000052-1111-2222-3333-444400000003"},
			wantLog: `msg="infiniband devices unreadable"`,
		},
		{
			name: "gpu vendor file garbage",
			break_: func(t *testing.T, root string) {
				must(t, os.WriteFile(filepath.Join(root, "sys", "bus", "pci", "devices", "0000:52:00.0", "vendor"), []byte("nvidia\n"), 0o644))
			},
			wantIDs: []string{"mlx5_4"},
			wantLog: `msg="pci device skipped" pci_addr=0000:52:00.0`,
		},
		{
			name: "numa_node is a fifo",
			break_: func(t *testing.T, root string) {
				p := filepath.Join(root, "sys", "bus", "pci", "devices", "0000:52:00.0", "numa_node")
				must(t, os.Remove(p))
				must(t, syscall.Mkfifo(p, 0o644))
			},
			wantIDs: []string{"GPU-00000052-1111-2222-3333-444400000003"},
			wantLog: `msg="numa node unknown" pci_addr=0000:52:00.0`,
		},
		{
			name: "gpu information file is a fifo",
			break_: func(t *testing.T, root string) {
				p := filepath.Join(root, "proc", "driver", "nvidia", "gpus", "0000:52:00.0", "information")
				must(t, os.Remove(p))
				must(t, syscall.Mkfifo(p, 0o644))
			},
			// No UUID, no minor: the PCI address, unhealthy.
			wantIDs: []string{"0000:52:00.0"},
			wantLog: `msg="gpu driver information unreadable" pci_addr=0000:52:00.0`,
		},
		{
			name: "hca ports directory missing",
			break_: func(t *testing.T, root string) {
				must(t, os.RemoveAll(filepath.Join(root, "sys", "class", "infiniband", "mlx5_4", "ports")))
			},
			wantIDs: []string{"GPU-00000052-1111-2222-3333-444400000003", "mlx5_4"},
			wantLog: `msg="hca ports unreadable" device_id=mlx5_4`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := copyTree(t, "dgx-h100")
			tc.break_(t, root)
			log, lb := newTestLog()
			devs, err := Discover(context.Background(), Config{Root: root, NVML: NVMLOff, Log: log})
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Discover(%s) = %d devices, want an error", tc.name, len(devs))
				}
				return
			}
			if err != nil {
				t.Fatalf("Discover(%s): %v", tc.name, err)
			}
			m := byID(devs)
			for _, id := range tc.wantIDs {
				if _, ok := m[id]; !ok {
					t.Errorf("Discover(%s) lacks %s", tc.name, id)
				}
			}
			if tc.name == "gpu vendor file garbage" {
				if _, ok := m["GPU-00000052-1111-2222-3333-444400000003"]; ok {
					t.Errorf("Discover(%s) reports the GPU whose vendor is unreadable", tc.name)
				}
			}
			if tc.name == "hca ports directory missing" && m["mlx5_4"].Healthy {
				t.Errorf("Discover(%s): mlx5_4 healthy without ports", tc.name)
			}
			if !strings.Contains(lb.String(), tc.wantLog) {
				t.Errorf("Discover(%s) logs lack %q; logs:\n%s", tc.name, tc.wantLog, lb.String())
			}
		})
	}
}

func TestDiscoverUnreadableDir(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Skip("root reads directories whatever their mode; TestDiscoverBadTrees covers a directory that cannot be listed")
	}
	root := copyTree(t, "dgx-h100")
	dir := filepath.Join(root, "sys", "class", "infiniband")
	must(t, os.Chmod(dir, 0))
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	devs, _ := discoverOff(t, root)
	if len(devs) != 8 {
		t.Errorf("Discover with unreadable %s = %d devices, want the 8 GPUs", dir, len(devs))
	}
}

func TestDiscoverCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Discover(ctx, Config{Root: fixture("dgx-h100"), NVML: NVMLOff}); err == nil {
		t.Errorf("Discover(cancelled ctx) = nil error, want context.Canceled")
	}
}

func TestParseNVMLMode(t *testing.T) {
	for in, want := range map[string]NVMLMode{"": NVMLAuto, "auto": NVMLAuto, "on": NVMLOn, "off": NVMLOff, "yes": ""} {
		got, err := ParseNVMLMode(in)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("ParseNVMLMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
