package deviceplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	oci "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/slipway-dev/slipway/pkg/devices"

	goldenfile "github.com/slipway-dev/slipway/internal/golden"
)

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenfile.Check(t, filepath.Join("testdata", name), got)
}

type goldenPreferred struct {
	Available   []string `json:"available"`
	MustInclude []string `json:"mustInclude,omitempty"`
	Size        int32    `json:"size"`
	Preferred   []string `json:"preferred"`
}

type goldenAllocate struct {
	DeviceIDs []string                             `json:"deviceIDs"`
	Response  *pluginapi.ContainerAllocateResponse `json:"response,omitempty"`
	Error     string                               `json:"error,omitempty"`
}

// goldenDevice spells out NUMA node 0, which protobuf's JSON tags omit.
type goldenDevice struct {
	ID     string  `json:"id"`
	Health string  `json:"health"`
	NUMA   []int64 `json:"numa"`
}

type goldenResource struct {
	Resource     string            `json:"resource"`
	ListAndWatch []goldenDevice    `json:"listAndWatch"`
	Preferred    []goldenPreferred `json:"preferred"`
	Allocate     []goldenAllocate  `json:"allocate"`
}

// TestGolden renders what the kubelet would receive for each fixture (the
// device lists, preferred allocations for a range of sizes with and
// without must-include devices, allocations and refusals) and the CDI
// specs written, and compares them with testdata/*.golden.
func TestGolden(t *testing.T) {
	t.Parallel()
	pair := PairConfig{Name: "slipway.dev/gpu-hca-pair", GPUResource: devices.ResourceGPU, HCAResource: devices.ResourceHCA}
	fromJSON := func(name string) func(t *testing.T) []devices.Device {
		return func(t *testing.T) []devices.Device { return loadFixture(t, name) }
	}
	// The sysfs trees of pkg/devices, through real discovery (NVML off).
	tree := func(name string) func(t *testing.T) []devices.Device {
		return func(t *testing.T) []devices.Device {
			devs, err := devices.Discover(context.Background(), devices.Config{Root: filepath.Join("..", "devices", "testdata", name), NVML: devices.NVMLOff})
			if err != nil {
				t.Fatalf("Discover(%s): %v", name, err)
			}
			return devs
		}
	}
	for _, tc := range []struct {
		golden string
		devs   func(t *testing.T) []devices.Device
		opts   BuildOptions
	}{
		{"dgx-h100", fromJSON("dgx-h100"), BuildOptions{}},
		{"dgx-h100-pairs", fromJSON("dgx-h100"), BuildOptions{Pairs: pair}},
		{"fpga", fromJSON("fpga"), BuildOptions{}},
		{"broken", fromJSON("broken"), BuildOptions{}},
		{"tree-dgx-h100-pairs", tree("dgx-h100"), BuildOptions{Pairs: pair}},
		{"tree-fpga-node", tree("fpga-node"), BuildOptions{}},
		{"tree-broken-node", tree("broken-node"), BuildOptions{}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			t.Parallel()
			rs := BuildResources(byKind(tc.devs(t)), tc.opts)
			h := startHarness(t, Config{CDI: true}, rs)
			ctx := h.waitCtx(t)
			var out []goldenResource
			for _, r := range rs {
				p, list, err := h.stub.WaitPlugin(ctx, r.Name)
				if err != nil {
					t.Fatal(err)
				}
				gr := goldenResource{Resource: r.Name}
				var ids, healthy []string
				for _, d := range list {
					gd := goldenDevice{ID: d.GetID(), Health: d.GetHealth()}
					for _, n := range d.GetTopology().GetNodes() {
						gd.NUMA = append(gd.NUMA, n.GetID())
					}
					gr.ListAndWatch = append(gr.ListAndWatch, gd)
					ids = append(ids, d.GetID())
					if d.GetHealth() == pluginapi.Healthy {
						healthy = append(healthy, d.GetID())
					}
				}
				var reqs []*pluginapi.ContainerPreferredAllocationRequest
				for _, size := range []int{1, 2, 4, len(healthy)} {
					if size <= len(healthy) {
						reqs = append(reqs, &pluginapi.ContainerPreferredAllocationRequest{AvailableDeviceIDs: healthy, AllocationSize: int32(size)})
					}
				}
				if len(healthy) >= 2 {
					last := healthy[len(healthy)-1]
					reqs = append(reqs, &pluginapi.ContainerPreferredAllocationRequest{AvailableDeviceIDs: healthy, MustIncludeDeviceIDs: []string{last}, AllocationSize: 2})
				}
				reqs = append(reqs, &pluginapi.ContainerPreferredAllocationRequest{AvailableDeviceIDs: append(slices.Clone(healthy), "not-advertised"), AllocationSize: 1})
				resp, err := p.Client.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{ContainerRequests: reqs})
				if err != nil {
					t.Fatalf("GetPreferredAllocation(%s): %v, want no error ever", r.Name, err)
				}
				for i, cr := range resp.GetContainerResponses() {
					gr.Preferred = append(gr.Preferred, goldenPreferred{
						Available: reqs[i].AvailableDeviceIDs, MustInclude: reqs[i].MustIncludeDeviceIDs,
						Size: reqs[i].AllocationSize, Preferred: cr.GetDeviceIDs(),
					})
				}
				var allocs [][]string
				if len(healthy) > 0 {
					allocs = append(allocs, healthy[:min(2, len(healthy))])
				}
				if len(healthy) > 2 {
					allocs = append(allocs, healthy)
				}
				for _, id := range ids {
					if !slices.Contains(healthy, id) {
						allocs = append(allocs, []string{id})
						break
					}
				}
				allocs = append(allocs, []string{"not-advertised"})
				for _, a := range allocs {
					resp, err := p.Client.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: a}}})
					ga := goldenAllocate{DeviceIDs: a}
					if err != nil {
						ga.Error = status.Convert(err).Message()
					} else {
						ga.Response = resp.GetContainerResponses()[0]
					}
					gr.Allocate = append(gr.Allocate, ga)
				}
				out = append(out, gr)
			}
			b, err := json.MarshalIndent(out, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden+".golden", append(b, '\n'))
			// The CDI specs, as written.
			ents, err := os.ReadDir(filepath.Join(h.dir, "cdi"))
			if err != nil {
				t.Fatal(err)
			}
			var specs bytes.Buffer
			for _, e := range ents {
				b, err := os.ReadFile(filepath.Join(h.dir, "cdi", e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				specs.WriteString("# " + e.Name() + "\n")
				specs.Write(b)
			}
			golden(t, tc.golden+".cdi.golden", specs.Bytes())
		})
	}
}

// TestCDISpecsValidate writes the specs of every fixture and loads them
// with the CDI library: no spec errors, every device the plugin would name
// resolvable, files readable by runtimes, stale kinds removed.
func TestCDISpecsValidate(t *testing.T) {
	t.Parallel()
	for _, fixture := range []string{"dgx-h100", "fpga", "broken", "tree:dgx-h100", "tree:fpga-node", "tree:broken-node"} {
		t.Run(fixture, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var devs []devices.Device
			if name, ok := strings.CutPrefix(fixture, "tree:"); ok {
				var err error
				devs, err = devices.Discover(context.Background(), devices.Config{Root: filepath.Join("..", "devices", "testdata", name), NVML: devices.NVMLOff})
				if err != nil {
					t.Fatal(err)
				}
			} else {
				devs = loadFixture(t, fixture)
			}
			rs := BuildResources(byKind(devs), BuildOptions{})
			if err := WriteCDISpecs(dir, rs); err != nil {
				t.Fatalf("WriteCDISpecs: %v", err)
			}
			cache, err := cdi.NewCache(cdi.WithSpecDirs(dir), cdi.WithAutoRefresh(false))
			if err != nil {
				t.Fatal(err)
			}
			if errs := cache.GetErrors(); len(errs) > 0 {
				t.Fatalf("CDI cache errors for %s specs: %v", fixture, errs)
			}
			var want []string
			for _, d := range devs {
				if len(d.DeviceNodes) > 0 {
					want = append(want, CDIName(d))
				}
			}
			slices.Sort(want)
			got := cache.ListDevices()
			slices.Sort(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("CDI devices of %s mismatch (-want +got):\n%s", fixture, diff)
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				fi, err := e.Info()
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o644 {
					t.Errorf("CDI spec %s mode %v, want 0644", e.Name(), fi.Mode().Perm())
				}
			}
		})
	}
	// A kind that disappears takes its spec with it.
	dir := t.TempDir()
	rs := BuildResources(byKind(loadFixture(t, "dgx-h100")), BuildOptions{})
	if err := WriteCDISpecs(dir, rs); err != nil {
		t.Fatal(err)
	}
	if err := WriteCDISpecs(dir, rs[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "slipway.dev-hca.yaml")); err == nil {
		t.Errorf("slipway.dev-hca.yaml still exists after the HCAs went away")
	}
}

// TestCDIInject injects the written devices into an OCI spec with the CDI
// library, as a container runtime does, using device nodes that exist here.
func TestCDIInject(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mk := func(id, node string) devices.Device {
		return devices.Device{ID: id, Kind: devices.KindGPU, PCIAddress: "0000:00:00.0", NUMANode: 0,
			DeviceNodes: []devices.DeviceNode{{Path: node, Permissions: "rw"}, {Path: "/dev/full", Permissions: "rw"}}}
	}
	rs := []Resource{{Name: "nvidia.com/gpu", Devices: []Device{Single(mk("GPU-a", "/dev/null")), Single(mk("GPU-b", "/dev/zero"))}}}
	if err := WriteCDISpecs(dir, rs); err != nil {
		t.Fatal(err)
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(dir), cdi.WithAutoRefresh(false))
	if err != nil {
		t.Fatal(err)
	}
	spec := &oci.Spec{Linux: &oci.Linux{}}
	resp := containerResponse(rs[0].Devices[1:], true)
	var names []string
	for _, c := range resp.GetCdiDevices() {
		names = append(names, c.GetName())
	}
	if unresolved, err := cache.InjectDevices(spec, names...); err != nil {
		t.Fatalf("InjectDevices(%v) = %v, %v", names, unresolved, err)
	}
	var got []string
	for _, d := range spec.Linux.Devices {
		got = append(got, d.Path)
	}
	slices.Sort(got)
	if diff := cmp.Diff([]string{"/dev/full", "/dev/zero"}, got); diff != "" {
		t.Errorf("device nodes injected for %v mismatch (-want +got):\n%s", names, diff)
	}
}
