package devices

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestHealthLedger(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	gpu := Device{ID: "GPU-1", Healthy: true}
	hca := Device{ID: "mlx5_0", Healthy: true}
	l := NewHealthLedger()
	if evs := l.Observe([]Device{gpu, hca}, t0); len(evs) != 0 {
		t.Fatalf("Observe(first discovery) = %+v, want no events", evs)
	}
	if _, ok := l.Bad("GPU-1", t0.Add(time.Second), "xid 79"); !ok {
		t.Fatal("Bad(GPU-1, xid 79) gave no event")
	}
	// A rescan finds the GPU healthy again (sysfs does not show XIDs): it
	// stays unhealthy, with its reason.
	if evs := l.Observe([]Device{gpu, hca}, t0.Add(10*time.Second)); len(evs) != 0 {
		t.Errorf("Observe(rescan) = %+v, want no events", evs)
	}
	got := l.Apply([]Device{gpu, hca})
	want := []Device{{ID: "GPU-1", Healthy: false, HealthReason: "xid 79"}, hca}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Apply after a rescan (-want +got):\n%s", diff)
	}
	// Not before the recovery period, counted from the last problem.
	if _, ok := l.Clean("GPU-1", t0.Add(50*time.Second), time.Minute); ok {
		t.Error("Clean(GPU-1) 49s after xid 79 recovered it, want it unhealthy for 1m")
	}
	// The GPU vanishes and comes back: it comes back unhealthy.
	l.Forget([]Device{hca}, t0.Add(55*time.Second), time.Minute)
	if h, _, ok := l.Health("GPU-1"); !ok || h {
		t.Errorf("Health(GPU-1) after it vanished within the recovery period = %v, %v; want remembered unhealthy", h, ok)
	}
	// A rescan that finds an HCA port down is a problem seen now.
	down := hca
	down.Healthy, down.HealthReason = false, "port 1 DOWN (Polling)"
	evs := l.Observe([]Device{gpu, down}, t0.Add(56*time.Second))
	if len(evs) != 1 || evs[0].DeviceID != "mlx5_0" || evs[0].Healthy {
		t.Errorf("Observe(hca port down) = %+v, want mlx5_0 unhealthy", evs)
	}
	if ev, ok := l.Clean("GPU-1", t0.Add(61*time.Second), time.Minute); !ok || !ev.Healthy {
		t.Errorf("Clean(GPU-1) a minute after xid 79 = %+v, %v; want recovered", ev, ok)
	}
	// Forget drops healthy absent devices and unhealthy ones past the
	// recovery period, not unhealthy ones within it.
	l.Forget(nil, t0.Add(62*time.Second), time.Minute)
	if _, _, ok := l.Health("GPU-1"); ok {
		t.Error("Forget kept the healthy absent GPU-1")
	}
	if _, _, ok := l.Health("mlx5_0"); !ok {
		t.Error("Forget dropped mlx5_0, unhealthy 6s ago with a 1m recovery period")
	}
	l.Forget(nil, t0.Add(2*time.Minute), time.Minute)
	if _, _, ok := l.Health("mlx5_0"); ok {
		t.Error("Forget kept mlx5_0 past its recovery period")
	}
}

// TestMonitorRestartKeepsHealth: health belongs to the device, not to one
// Monitor.Run. A device that went unhealthy stays unhealthy when the
// monitor is restarted on a fresh discovery (as the node agent does after
// a rescan or a config reload), although that discovery finds it healthy.
func TestMonitorRestartKeepsHealth(t *testing.T) {
	t.Parallel()
	root := copyTree(t, "dgx-h100")
	devs, _ := discoverOff(t, root)
	led := NewHealthLedger()
	cfg := MonitorConfig{Root: root, NVML: NVMLOff, RecoveryPeriod: time.Hour, Ledger: led}
	state := filepath.Join(root, "sys", "class", "infiniband", "mlx5_0", "ports", "1", "state")
	ev := runMonitorStoppable(t, cfg, devs)
	writeAtomic(t, state, []byte("1: DOWN\n"))
	ev.waitFor(t, "mlx5_0 unhealthy", func(evs []HealthEvent) bool { return has(evs, "mlx5_0", false, "DOWN") })
	ev.stop()
	// The port comes back at once; a new discovery sees it up.
	writeAtomic(t, state, []byte("4: ACTIVE\n"))
	devs, _ = discoverOff(t, root)
	ev2 := runMonitorStoppable(t, cfg, devs)
	time.Sleep(100 * time.Millisecond) // ten polls
	ev2.stop()
	if h, why, _ := led.Health("mlx5_0"); h {
		t.Errorf("mlx5_0 healthy after a monitor restart, %v into a 1h recovery period (reason %q)", 100*time.Millisecond, why)
	}
	ev2.mu.Lock()
	defer ev2.mu.Unlock()
	if diff := cmp.Diff([]HealthEvent(nil), ev2.evs); diff != "" {
		t.Errorf("restarted monitor emitted events (-want +got):\n%s", diff)
	}
	got := led.Apply(devs)
	for _, d := range got {
		if d.ID == "mlx5_0" && d.Healthy {
			t.Errorf("Apply(rediscovered devices) advertises mlx5_0 healthy")
		}
	}
	_ = os.Remove(state + ".tmp")
}
