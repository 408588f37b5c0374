//go:build cgo && linux

package devices

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/devices/nvmlmock"
)

// dgxGPUs are the fixture's GPUs: bus and minor, in NVML index order.
var dgxGPUs = func() []struct{ bus, minor int } {
	var out []struct{ bus, minor int }
	for _, g := range nvmlmock.GPUs {
		out = append(out, struct{ bus, minor int }{g.Bus, g.Minor})
	}
	return out
}()

func dgxUUID(bus, minor int) string { return nvmlmock.UUID(bus, minor) }

// mockNVML is nvmlmock's DGX H100, which matches the dgx-h100 fixture.
type mockNVML struct {
	*nvmlmock.DGX
	srv *server.Server
}

func newMockNVML(t testing.TB) *mockNVML {
	t.Helper()
	d := nvmlmock.NewDGXH100()
	return &mockNVML{DGX: d, srv: d.Server}
}

// xid injects an XID on GPU index i (-1: no device, all GPUs).
func (m *mockNVML) xid(i int, code uint64) { m.XID(i, code) }

func TestDiscoverNVML(t *testing.T) {
	m := newMockNVML(t)
	m.srv.Devices[2].(*server.Device).SetMigModeFunc(nvml.DEVICE_MIG_ENABLE)
	devs, err := Discover(context.Background(), Config{Root: fixture("dgx-h100"), NVML: NVMLOn, NVMLLib: FromNVML(m.srv)})
	if err != nil {
		t.Fatalf("Discover(dgx-h100, mock nvml): %v", err)
	}
	type gpu struct {
		ID, Model, Mem, MIG, Node string
		Healthy                   bool
	}
	var got []gpu
	for _, d := range devs {
		if d.Kind == KindGPU {
			got = append(got, gpu{d.ID, d.Model, d.Attributes["memory_mib"], d.Attributes["mig_mode"], d.DeviceNodes[0].Path, d.Healthy})
		}
	}
	var want []gpu
	for i, g := range dgxGPUs {
		mig := "disabled"
		if i == 2 {
			mig = "enabled"
		}
		want = append(want, gpu{dgxUUID(g.bus, g.minor), "NVIDIA H100 80GB HBM3", "81920", mig, fmt.Sprintf("/dev/nvidia%d", g.minor), true})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Discover(dgx-h100, mock nvml) GPUs (-want +got):\n%s", diff)
	}
}

func TestDiscoverNVMLFailures(t *testing.T) {
	tests := []struct {
		name        string
		mode        NVMLMode
		breakIt     func(m *mockNVML)
		wantErr     bool
		wantHealthy int    // healthy GPUs
		wantReason  string // in every unhealthy GPU's reason
	}{
		{
			name:    "init fails, nvml on",
			mode:    NVMLOn,
			breakIt: func(m *mockNVML) { m.srv.InitFunc = func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED } },
			wantErr: true,
		},
		{
			name:        "library not found, auto",
			mode:        NVMLAuto,
			breakIt:     func(m *mockNVML) { m.srv.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND } },
			wantHealthy: 8,
		},
		{
			name:        "init fails, auto",
			mode:        NVMLAuto,
			breakIt:     func(m *mockNVML) { m.srv.InitFunc = func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED } },
			wantReason:  "nvml init",
			wantHealthy: 0,
		},
		{
			name: "device count fails",
			mode: NVMLOn,
			breakIt: func(m *mockNVML) {
				m.srv.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_UNKNOWN }
			},
			wantReason: "get device count",
		},
		{
			name: "one gpu's uuid fails",
			mode: NVMLOn,
			breakIt: func(m *mockNVML) {
				m.srv.Devices[5].(*server.Device).GetUUIDFunc = func() (string, nvml.Return) { return "", nvml.ERROR_GPU_IS_LOST }
			},
			wantHealthy: 7,
			wantReason:  "get uuid",
		},
		{
			name: "one gpu's pci info fails",
			mode: NVMLOn,
			breakIt: func(m *mockNVML) {
				m.srv.Devices[0].(*server.Device).GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) { return nvml.PciInfo{}, nvml.ERROR_UNKNOWN }
			},
			wantHealthy: 7,
			wantReason:  "not visible to nvml",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := newMockNVML(t)
			tc.breakIt(m)
			devs, err := Discover(context.Background(), Config{Root: fixture("dgx-h100"), NVML: tc.mode, NVMLLib: FromNVML(m.srv), Log: discardLog()})
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Discover(%s) = nil error, want one", tc.name)
				}
				return
			}
			if err != nil {
				t.Fatalf("Discover(%s): %v", tc.name, err)
			}
			healthy, gpus := 0, 0
			for _, d := range devs {
				if d.Kind != KindGPU {
					continue
				}
				gpus++
				if d.Healthy {
					healthy++
				} else if !strings.Contains(d.HealthReason, tc.wantReason) {
					t.Errorf("Discover(%s): GPU %s reason %q, want it to contain %q", tc.name, d.ID, d.HealthReason, tc.wantReason)
				}
			}
			if gpus != 8 || healthy != tc.wantHealthy {
				t.Errorf("Discover(%s) = %d GPUs, %d healthy; want 8, %d", tc.name, gpus, healthy, tc.wantHealthy)
			}
		})
	}
}

func TestDiscoverNVLinkPeers(t *testing.T) {
	m := newMockNVML(t)
	// GPU 0 has links 0 and 2 up to two NVSwitches, link 1 down.
	dev := m.srv.Devices[0].(*server.Device)
	peers := map[int]string{0: "00000000:05:00.0", 2: "00000000:06:00.0"}
	dev.GetNvLinkStateFunc = func(link int) (nvml.EnableState, nvml.Return) {
		if link > 2 {
			return 0, nvml.ERROR_INVALID_ARGUMENT
		}
		if _, ok := peers[link]; ok {
			return nvml.FEATURE_ENABLED, nvml.SUCCESS
		}
		return nvml.FEATURE_DISABLED, nvml.SUCCESS
	}
	dev.GetNvLinkRemotePciInfoFunc = func(link int) (nvml.PciInfo, nvml.Return) {
		var p nvml.PciInfo
		for j, c := range peers[link] {
			p.BusId[j] = int8(c)
		}
		return p, nvml.SUCCESS
	}
	devs, err := Discover(context.Background(), Config{Root: fixture("dgx-h100"), NVML: NVMLOn, NVMLLib: FromNVML(m.srv)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := devs[0].Attributes["nvlink_peers"], "0000:05:00.0,0000:06:00.0"; got != want {
		t.Errorf("GPU 0 nvlink_peers = %q, want %q", got, want)
	}
	if got := devs[1].Attributes["nvlink_peers"]; got != "" {
		t.Errorf("GPU 1 nvlink_peers = %q, want none (NVLink not supported)", got)
	}
}

func TestRealNVMLWithoutLibrary(t *testing.T) {
	lib := loadNVML()
	err := lib.Init()
	if err == nil {
		lib.Shutdown()
		t.Skip("libnvidia-ml is installed here; this test is for machines without it")
	}
	if !errors.Is(err, ErrNVMLNotFound) {
		t.Errorf("real NVML Init without libnvidia-ml = %v, want an error wrapping ErrNVMLNotFound", err)
	}
	// auto falls back to sysfs, on fails.
	if _, err := Discover(context.Background(), Config{Root: fixture("dgx-h100")}); err != nil {
		t.Errorf("Discover(nvml auto, no library) = %v, want sysfs discovery", err)
	}
	if _, err := Discover(context.Background(), Config{Root: fixture("dgx-h100"), NVML: NVMLOn}); err == nil {
		t.Errorf("Discover(nvml on, no library) = nil error, want one")
	}
}

func TestNormalizeBusID(t *testing.T) {
	for in, want := range map[string]string{
		"00000000:1B:00.0": "0000:1b:00.0",
		"0000:1b:00.0":     "0000:1b:00.0",
		"1b:00.0":          "",
		"garbage":          "",
	} {
		got, ok := normalizeBusID(in)
		if got != want || ok != (want != "") {
			t.Errorf("normalizeBusID(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// TestRealNVML runs discovery with the real libnvidia-ml on this host
// ("/"), where there is one: every GPU NVML sees is reported with its UUID,
// memory, MIG mode and /dev/nvidiaN, matching the driver's information
// file, and healthy. It skips where libnvidia-ml is not installed (the
// mock covers the rest there).
func TestRealNVML(t *testing.T) {
	lib := loadNVML()
	if err := lib.Init(); err != nil {
		if errors.Is(err, ErrNVMLNotFound) {
			t.Skip("libnvidia-ml is not installed here")
		}
		t.Fatalf("real NVML Init: %v", err)
	}
	nv, err := lib.GPUs()
	lib.Shutdown()
	if err != nil {
		t.Fatal(err)
	}
	devs, err := Discover(context.Background(), Config{Root: "/", NVML: NVMLOn, Log: discardLog()})
	if err != nil {
		t.Fatalf("Discover(/, nvml on): %v", err)
	}
	gpus := map[string]Device{}
	for _, d := range devs {
		if d.Kind == KindGPU {
			gpus[d.PCIAddress] = d
		}
		t.Logf("%s %s %s numa=%d root=%s healthy=%v %q nodes=%v attrs=%v", d.Kind, d.ID, d.PCIAddress, d.NUMANode, d.PCIeRoot, d.Healthy, d.HealthReason, d.DeviceNodes, d.Attributes)
	}
	if len(nv) == 0 || len(gpus) != len(nv) {
		t.Fatalf("NVML sees %d GPUs, discovery reports %d", len(nv), len(gpus))
	}
	for _, g := range nv {
		d, ok := gpus[g.PCIAddress]
		switch {
		case !ok:
			t.Errorf("NVML GPU %s at %s not reported", g.UUID, g.PCIAddress)
		case d.ID != g.UUID || !validGPUUUID(d.ID):
			t.Errorf("GPU at %s: ID %q, NVML UUID %q", g.PCIAddress, d.ID, g.UUID)
		case !d.Healthy:
			t.Errorf("GPU %s unhealthy: %s", d.ID, d.HealthReason)
		case d.Attributes["memory_mib"] == "" || d.Attributes["minor"] != fmt.Sprint(g.Minor):
			t.Errorf("GPU %s attributes %v, want memory and minor %d", d.ID, d.Attributes, g.Minor)
		case d.DeviceNodes[0].Path != fmt.Sprintf("/dev/nvidia%d", g.Minor):
			t.Errorf("GPU %s first device node %s, want /dev/nvidia%d", d.ID, d.DeviceNodes[0].Path, g.Minor)
		}
		info, err := newNode("/", nil).readDriverInfo(g.PCIAddress)
		if err != nil || info.uuid != g.UUID || info.minor != g.Minor {
			t.Errorf("driver information of %s: %+v, %v; NVML says %s minor %d", g.PCIAddress, info, err, g.UUID, g.Minor)
		}
	}
}
