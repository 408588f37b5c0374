//go:build cgo && linux

package devices

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/google/go-cmp/cmp"
)

// dgxGPUs are the fixture's GPUs: bus and minor, in NVML index order.
var dgxGPUs = []struct{ bus, minor int }{
	{0x1b, 0}, {0x43, 1}, {0x52, 3}, {0x61, 2}, {0x9d, 4}, {0xc3, 5}, {0xd1, 6}, {0xdf, 7},
}

func dgxUUID(bus, minor int) string {
	return fmt.Sprintf("GPU-%08x-1111-2222-3333-4444%08x", bus, minor)
}

// mockNVML is go-nvml's mock DGX H100 made to match the dgx-h100 fixture,
// with XID events injected through its event set.
type mockNVML struct {
	srv    *server.Server
	events chan nvml.EventData
	// waitErr, when set, is returned by the event set's Wait.
	waitErr atomic.Int32
	// created counts event sets created.
	created atomic.Int32
}

func newMockNVML(t testing.TB) *mockNVML {
	t.Helper()
	m := &mockNVML{srv: dgxh100.New(), events: make(chan nvml.EventData, 16)}
	for i, d := range m.srv.Devices {
		dev := d.(*server.Device)
		g := dgxGPUs[i]
		dev.UUID = dgxUUID(g.bus, g.minor)
		dev.Minor = g.minor
		dev.PciBusID = fmt.Sprintf("00000000:%02X:00.0", g.bus)
		busID := dev.PciBusID
		dev.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
			var p nvml.PciInfo
			for j, c := range busID {
				p.BusId[j] = int8(c)
			}
			p.PciDeviceId = dev.Config.PciDeviceId
			return p, nvml.SUCCESS
		}
		dev.GetNvLinkStateFunc = func(int) (nvml.EnableState, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
		dev.GetSupportedEventTypesFunc = func() (uint64, nvml.Return) {
			return nvml.EventTypeXidCriticalError | nvml.EventTypeSingleBitEccError, nvml.SUCCESS
		}
		dev.RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS }
	}
	m.srv.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		m.created.Add(1)
		return &mock.EventSet{
			WaitFunc: func(ms uint32) (nvml.EventData, nvml.Return) {
				if r := m.waitErr.Load(); r != 0 {
					return nvml.EventData{}, nvml.Return(r)
				}
				select {
				case ev := <-m.events:
					return ev, nvml.SUCCESS
				case <-time.After(time.Duration(ms) * time.Millisecond):
					return nvml.EventData{}, nvml.ERROR_TIMEOUT
				}
			},
			FreeFunc: func() nvml.Return { return nvml.SUCCESS },
		}, nvml.SUCCESS
	}
	return m
}

// xid injects an XID on GPU index i (-1: no device, all GPUs).
func (m *mockNVML) xid(i int, code uint64) {
	ev := nvml.EventData{EventType: nvml.EventTypeXidCriticalError, EventData: code}
	if i >= 0 {
		ev.Device = m.srv.Devices[i]
	}
	m.events <- ev
}

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
