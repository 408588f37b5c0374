package inventory

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	goldenfile "github.com/slipway-dev/slipway/internal/golden"
)

// golden compares got with testdata/NAME.golden (or rewrites it with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	goldenfile.Check(t, filepath.Join("testdata", name+".golden"), []byte(got))
}

func TestLoadGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			inv, err := Load(f)
			switch {
			case strings.HasPrefix(name, "valid-"):
				if err != nil {
					t.Fatalf("Load(%q) failed:\n%v", f, err)
				}
				b, err := json.MarshalIndent(inv, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				golden(t, name, string(b)+"\n")
			case strings.HasPrefix(name, "invalid-"):
				if err == nil {
					t.Fatalf("Load(%q) = nil error, want problems reported", f)
				}
				golden(t, name, err.Error()+"\n")
			default:
				t.Fatalf("fixture %s must start with valid- or invalid-", f)
			}
		})
	}
}

// Every problem line names the file, line and column, then the field path.
func TestErrorsCarryPositions(t *testing.T) {
	for _, f := range []string{"testdata/invalid-malformed.yaml", "testdata/invalid-types.yaml", "testdata/invalid-duplicates.yaml"} {
		_, err := Load(f)
		if err == nil {
			t.Fatalf("Load(%q) = nil error", f)
		}
		lines := strings.Split(err.Error(), "\n")
		for _, l := range lines {
			var line, col int
			var rest string
			if n, _ := fmt.Sscanf(strings.TrimPrefix(l, f+":"), "%d:%d: %s", &line, &col, &rest); n != 3 || line == 0 || col == 0 {
				t.Errorf("Load(%q): problem %q does not start with %s:LINE:COL: PATH", f, l, f)
			}
		}
		if len(lines) < 4 {
			t.Errorf("Load(%q) reported %d problems, want all of them (at least 4)", f, len(lines))
		}
	}
}

func TestInlineSecretNeverEchoed(t *testing.T) {
	_, err := Load("testdata/invalid-inline-secrets.yaml")
	if err == nil {
		t.Fatal("Load(invalid-inline-secrets.yaml) = nil error, want the inline password refused")
	}
	msg := err.Error()
	if strings.Contains(msg, "Hunter2") {
		t.Errorf("error output leaks the inline secret:\n%s", msg)
	}
	for _, want := range []string{"nodes[0].bmc.password", "env:", "file:", "bmcPassword", "token"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error output lacks %q:\n%s", want, msg)
		}
	}
}

func TestLoadDirectoryMergesInNameOrder(t *testing.T) {
	inv, err := Load("testdata/split")
	if err != nil {
		t.Fatalf("Load(testdata/split): %v", err)
	}
	var got []string
	for _, n := range inv.Nodes {
		got = append(got, fmt.Sprintf("%s %s %s %s", n.Name, n.Role, n.IP, n.BMC.Addr()))
	}
	want := []string{
		"cp1 control-plane 10.0.0.11 10.1.0.1:443",
		"cp2 control-plane 10.0.0.12 10.1.0.2:443",
		"cp3 control-plane 10.0.0.13 10.1.0.3:443",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load(testdata/split) nodes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"testdata/split/00-cluster.yaml", "testdata/split/10-nodes.yaml"}, inv.Sources); diff != "" {
		t.Errorf("Load(testdata/split) sources (-want +got):\n%s", diff)
	}
	if inv.Cluster.KubernetesVersion != "v1.36.4" || inv.Cluster.ControlPlaneEndpoint != "10.0.0.11:6443" {
		t.Errorf("cluster = %+v, want version v1.36.4 and endpoint defaulted to cp1's 10.0.0.11:6443", inv.Cluster)
	}
}

func TestEvenControlPlaneIsAWarning(t *testing.T) {
	inv, err := Load("testdata/valid-even-control-plane.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Warnings) != 1 || !strings.Contains(inv.Warnings[0], "2 control-plane nodes") {
		t.Errorf("Warnings = %q, want one about 2 control-plane nodes", inv.Warnings)
	}
}

// The example rack must resolve to exactly the nodes the file describes.
func TestRackGPUExample(t *testing.T) {
	inv, err := Load("../../inventory/rack-gpu.yaml")
	if err != nil {
		t.Fatalf("Load(rack-gpu.yaml):\n%v", err)
	}
	type row struct {
		Name, Role, Rack string
		Slot             int
		MAC, IP, BMC     string
		Firmware         Firmware
		Password         string
	}
	var got []row
	for _, n := range inv.Nodes {
		got = append(got, row{n.Name, string(n.Role), n.Rack, n.Slot, n.MAC.String(), n.IP.String(), n.BMC.URL, n.Boot.Firmware, n.BMC.Password.String()})
	}
	want := []row{
		{"cp01", "control-plane", "r01", 1, "7c:c2:55:10:00:01", "10.40.0.11", "redfish://10.41.0.11", "uefi", "env:CP_BMC_PASSWORD"},
		{"cp02", "control-plane", "r01", 2, "7c:c2:55:10:00:02", "10.40.0.12", "redfish://10.41.0.12", "uefi", "env:CP_BMC_PASSWORD"},
		{"cp03", "control-plane", "r01", 3, "7c:c2:55:10:00:03", "10.40.0.13", "redfish://10.41.0.13", "uefi", "env:CP_BMC_PASSWORD"},
	}
	macs := []string{"01:10", "07:3c", "02:e8", "09:04", "0c:52", "03:9a", "0f:16", "05:c0", "11:28", "0a:7e", "14:44", "06:b2", "12:0e", "08:d6", "16:30", "0d:62"}
	for i := range 16 {
		want = append(want, row{fmt.Sprintf("gpu%02d", i+1), "worker", "r02", i + 1, "b8:3f:d2:a0:" + macs[i],
			fmt.Sprintf("10.40.1.%d", i+1), fmt.Sprintf("redfish://10.41.1.%d", i+1), "uefi", "env:RACK_BMC_PASSWORD"})
	}
	want = append(want,
		row{"fpga01", "worker", "r03", 1, "ac:1f:6b:20:00:01", "10.40.2.1", "ipmi://10.41.2.1", "bios", "file:/etc/slipway/secrets/fpga-bmc"},
		row{"fpga02", "worker", "r03", 2, "ac:1f:6b:20:00:02", "10.40.2.2", "ipmi://10.41.2.2", "bios", "file:/etc/slipway/secrets/fpga-bmc"},
	)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rack-gpu.yaml nodes (-want +got):\n%s", diff)
	}
	gpu16, _ := inv.Node("gpu16")
	if gpu16.Serial != "SGH-GPU-16" || gpu16.NICs[0].MAC.String() != "0c:42:a1:5e:00:10" || gpu16.NICs[0].IP != netip.MustParseAddr("10.42.1.16") {
		t.Errorf("gpu16 = serial %q nics %v, want SGH-GPU-16 and data0 0c:42:a1:5e:00:10 10.42.1.16", gpu16.Serial, gpu16.NICs)
	}
	if gpu16.Taints[0].Key != "nvidia.com/gpu" || gpu16.Labels["node.slipway.dev/fabric"] != "infiniband-ndr" {
		t.Errorf("gpu16 labels/taints from profile missing: %v %v", gpu16.Labels, gpu16.Taints)
	}
}

func TestLabExample(t *testing.T) {
	inv, err := Load("../../inventory/lab-qemu.yaml")
	if err != nil {
		t.Fatalf("Load(lab-qemu.yaml):\n%v", err)
	}
	vm1, _ := inv.Node("vm1")
	vm2, _ := inv.Node("vm2")
	got := []string{string(vm1.BMC.Protocol), vm1.BMC.Addr(), string(vm1.Boot.Firmware), string(vm2.BMC.Protocol), vm2.BMC.Scheme, vm2.BMC.Addr(), string(vm2.Boot.Firmware)}
	want := []string{"ipmi", "127.0.0.1:9623", "bios", "redfish", "http", "127.0.0.1:8443", "uefi"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lab-qemu.yaml BMCs (-want +got):\n%s", diff)
	}
}

func TestSecretRef(t *testing.T) {
	t.Setenv("SLIPWAY_TEST_SECRET", "s3cr3t")
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "env:SLIPWAY_TEST_SECRET", want: "s3cr3t"},
		{in: "file:" + file, want: "from-file"},
		{in: "env:SLIPWAY_TEST_UNSET_VARIABLE", wantErr: "environment variable SLIPWAY_TEST_UNSET_VARIABLE is not set"},
		{in: "file:" + filepath.Join(dir, "missing"), wantErr: "no such file"},
		{in: "hunter2", wantErr: "inline secrets are not allowed"},
		{in: "env:", wantErr: "inline secrets are not allowed"},
	}
	for _, tt := range tests {
		ref, err := ParseSecretRef(tt.in)
		var s Secret
		if err == nil {
			s, err = ref.Resolve()
		}
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("resolve %q: err = %v, want it to contain %q", tt.in, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("resolve %q: error leaks the value: %v", tt.in, err)
			}
			continue
		}
		if err != nil || s.Reveal() != tt.want {
			t.Errorf("resolve %q = %q, %v; want %q", tt.in, s.Reveal(), err, tt.want)
		}
		for _, out := range []string{s.String(), fmt.Sprintf("%v %+v %#v %s", s, s, s, s)} {
			if strings.Contains(out, tt.want) {
				t.Errorf("formatting a Secret leaks it: %q", out)
			}
		}
	}
}

// FuzzResolve feeds arbitrary bytes to the loader: it must never panic and
// must either succeed or return an error.
func FuzzResolve(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("&a [*a]"))
	f.Add([]byte("nodes: {name: x[1-99999999999999999999]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := Resolve(File{Name: "fuzz.yaml", Data: data})
		if err == nil && inv == nil {
			t.Fatal("Resolve returned neither an inventory nor an error")
		}
	})
}

// A Secret inside an unexported field is printed by reflection, without
// String; it must still not show.
func TestSecretInUnexportedField(t *testing.T) {
	type holder struct {
		name string
		pw   Secret
	}
	h := holder{name: "bmc", pw: NewSecret("Hunter2-hidden")}
	for _, format := range []string{"%v", "%+v", "%#v"} {
		if out := fmt.Sprintf(format, h); strings.Contains(out, "Hunter2") {
			t.Errorf("Sprintf(%q, struct with a Secret field) = %q leaks the secret", format, out)
		}
	}
}
