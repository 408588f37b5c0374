//go:build cgo && linux

package devices

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

func discoverMock(t *testing.T, m *mockNVML) []Device {
	t.Helper()
	devs, err := Discover(context.Background(), Config{Root: fixture("dgx-h100"), NVML: NVMLOn, NVMLLib: FromNVML(m.srv)})
	if err != nil {
		t.Fatal(err)
	}
	return devs
}

func TestMonitorXID(t *testing.T) {
	m := newMockNVML(t)
	devs := discoverMock(t, m)
	ev := runMonitor(t, MonitorConfig{Root: fixture("dgx-h100"), NVML: NVMLOn, NVMLLib: FromNVML(m.srv), RecoveryPeriod: 200 * time.Millisecond}, devs)
	gpu3 := dgxUUID(0x61, 2)
	m.xid(3, 13) // application error: ignored by default
	m.xid(3, 79) // fallen off the bus
	evs := ev.waitFor(t, "GPU 3 unhealthy after xid 79", func(evs []HealthEvent) bool { return has(evs, gpu3, false, "xid 79") })
	if has(evs, gpu3, false, "xid 13") {
		t.Errorf("xid 13 marked %s unhealthy; it is ignored by default", gpu3)
	}
	ev.waitFor(t, "GPU 3 healthy after a clean recovery period", func(evs []HealthEvent) bool { return has(evs, gpu3, true, "recovered") })
	evs = ev.waitFor(t, "", func([]HealthEvent) bool { return true })
	for _, e := range evs {
		if e.DeviceID != gpu3 {
			t.Errorf("event for %s, want events only for %s: %+v", e.DeviceID, gpu3, e)
		}
	}
}

func TestMonitorXIDConfigured(t *testing.T) {
	m := newMockNVML(t)
	devs := discoverMock(t, m)
	// No ignored XIDs: 13 counts; an event without a device hits every GPU.
	ev := runMonitor(t, MonitorConfig{Root: fixture("dgx-h100"), NVML: NVMLOn, NVMLLib: FromNVML(m.srv), IgnoredXIDs: []uint64{}, RecoveryPeriod: time.Hour}, devs)
	m.xid(0, 13)
	ev.waitFor(t, "GPU 0 unhealthy after xid 13 with no ignored XIDs", func(evs []HealthEvent) bool {
		return has(evs, dgxUUID(0x1b, 0), false, "xid 13")
	})
	m.xid(-1, 48)
	ev.waitFor(t, "every GPU unhealthy after an xid without a device", func(evs []HealthEvent) bool {
		for _, g := range dgxGPUs[1:] {
			if !has(evs, dgxUUID(g.bus, g.minor), false, "xid 48") {
				return false
			}
		}
		return true
	})
}

func TestMonitorNVMLFailsMidRun(t *testing.T) {
	m := newMockNVML(t)
	devs := discoverMock(t, m)
	ev := runMonitor(t, MonitorConfig{Root: fixture("dgx-h100"), NVML: NVMLOn, NVMLLib: FromNVML(m.srv), RecoveryPeriod: 200 * time.Millisecond}, devs)
	m.WaitErr.Store(int32(nvml.ERROR_UNKNOWN))
	allGPUs := func(healthy bool, reason string) func([]HealthEvent) bool {
		return func(evs []HealthEvent) bool {
			for _, g := range dgxGPUs {
				if !has(evs, dgxUUID(g.bus, g.minor), healthy, reason) {
					return false
				}
			}
			return true
		}
	}
	evs := ev.waitFor(t, "every GPU unhealthy after the NVML event wait failed", allGPUs(false, "nvml"))
	for _, e := range evs {
		if !strings.HasPrefix(e.DeviceID, "GPU-") {
			t.Errorf("non-GPU event %+v after an NVML failure", e)
		}
	}
	m.WaitErr.Store(0)
	ev.waitFor(t, "every GPU healthy once NVML works again", allGPUs(true, "recovered"))
	if m.Created.Load() < 2 {
		t.Errorf("event sets created = %d, want the monitor to re-create it after the failure", m.Created.Load())
	}
}

func TestMonitorNVMLInitFails(t *testing.T) {
	m := newMockNVML(t)
	devs := discoverMock(t, m)
	m.srv.InitFunc = func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED }
	ev := runMonitor(t, MonitorConfig{Root: fixture("dgx-h100"), NVML: NVMLAuto, NVMLLib: FromNVML(m.srv), RecoveryPeriod: time.Hour}, devs)
	ev.waitFor(t, "every GPU unhealthy when NVML cannot initialise", func(evs []HealthEvent) bool {
		n := 0
		for _, e := range evs {
			if !e.Healthy && len(e.Reason) > 0 {
				n++
			}
		}
		return n == 8
	})
}
