package devices

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTracker(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		at     time.Duration // after t0
		reason string        // "" = a clean check
		want   string        // "" none, "down" or "up"
	}
	tests := []struct {
		name     string
		healthy  bool
		recovery time.Duration
		steps    []step
	}{
		{"problem then recovery", true, time.Minute, []step{
			{0, "", ""}, {time.Second, "xid 79", "down"}, {2 * time.Second, "", ""},
			{time.Minute, "", ""}, {time.Minute + time.Second, "", "up"}, {2 * time.Minute, "", ""},
		}},
		{"a new problem restarts the clean period", true, time.Minute, []step{
			{0, "port 1 DOWN (Polling)", "down"}, {50 * time.Second, "port 1 DOWN (Polling)", ""},
			{90 * time.Second, "", ""}, {109 * time.Second, "", ""}, {111 * time.Second, "", "up"},
		}},
		{"starts unhealthy", false, time.Minute, []step{
			{0, "", ""}, {59 * time.Second, "", ""}, {61 * time.Second, "", "up"},
		}},
		{"never recovers", true, -1, []step{
			{0, "xid 48", "down"}, {time.Hour, "", ""}, {1000 * time.Hour, "", ""},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := &tracker{id: "d", healthy: tc.healthy}
			if !tc.healthy {
				tr.lastBad, tr.reason = t0, "at start"
			}
			for _, s := range tc.steps {
				var ev HealthEvent
				var ok bool
				if s.reason != "" {
					ev, ok = tr.bad(t0.Add(s.at), s.reason)
				} else {
					ev, ok = tr.clean(t0.Add(s.at), tc.recovery)
				}
				got := ""
				if ok {
					got = map[bool]string{true: "up", false: "down"}[ev.Healthy]
				}
				if got != s.want {
					t.Errorf("at +%s (problem %q): event %q, want %q", s.at, s.reason, got, s.want)
				}
			}
		})
	}
}

// events collects a monitor's health events.
type events struct {
	mu   sync.Mutex
	evs  []HealthEvent
	ch   chan struct{}
	stop func() // stops the monitor and waits for it
}

func newEvents() *events { return &events{ch: make(chan struct{}, 1)} }

func (e *events) emit(ev HealthEvent) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
	default:
	}
}

// waitFor waits (bounded, generously: this is not a timing check) until
// pred holds for the events so far.
func (e *events) waitFor(t *testing.T, what string, pred func([]HealthEvent) bool) []HealthEvent {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		e.mu.Lock()
		evs := append([]HealthEvent(nil), e.evs...)
		e.mu.Unlock()
		if pred(evs) {
			return evs
		}
		select {
		case <-e.ch:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no %s; events: %+v", what, evs)
		}
	}
}

// has reports whether evs has an event for id with the given health whose
// reason contains reason.
func has(evs []HealthEvent, id string, healthy bool, reason string) bool {
	for _, e := range evs {
		if e.DeviceID == id && e.Healthy == healthy && strings.Contains(e.Reason, reason) {
			return true
		}
	}
	return false
}

// runMonitor starts a monitor on devs and stops it at the end of the test,
// checking that Run returns nil.
func runMonitor(t *testing.T, cfg MonitorConfig, devs []Device) *events {
	t.Helper()
	ev := runMonitorStoppable(t, cfg, devs)
	t.Cleanup(ev.stop)
	return ev
}

// runMonitorStoppable starts a monitor on devs; its events' stop cancels
// it and checks that Run returns nil.
func runMonitorStoppable(t *testing.T, cfg MonitorConfig, devs []Device) *events {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 10 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = discardLog()
	}
	m, err := NewMonitor(cfg)
	if err != nil {
		t.Fatalf("NewMonitor: %v", err)
	}
	ev := newEvents()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, devs, ev.emit) }()
	var once sync.Once
	ev.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Monitor.Run = %v, want nil after cancel", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Monitor.Run did not return after cancel")
			}
		})
	}
	return ev
}

func TestMonitorHCAPort(t *testing.T) {
	t.Parallel()
	root := copyTree(t, "dgx-h100")
	devs, _ := discoverOff(t, root)
	ev := runMonitor(t, MonitorConfig{Root: root, NVML: NVMLOff, RecoveryPeriod: 100 * time.Millisecond}, devs)
	state := filepath.Join(root, "sys", "class", "infiniband", "mlx5_4", "ports", "1", "state")
	writeAtomic(t, state, []byte("1: DOWN\n"))
	ev.waitFor(t, "mlx5_4 unhealthy after its port went down", func(evs []HealthEvent) bool {
		return has(evs, "mlx5_4", false, "port 1 DOWN")
	})
	writeAtomic(t, state, []byte("4: ACTIVE\n"))
	evs := ev.waitFor(t, "mlx5_4 healthy again", func(evs []HealthEvent) bool {
		return has(evs, "mlx5_4", true, "recovered")
	})
	for _, e := range evs {
		if e.DeviceID != "mlx5_4" {
			t.Errorf("event for %s, want events only for mlx5_4: %+v", e.DeviceID, e)
		}
	}
}

func TestMonitorHCAPortsWatched(t *testing.T) {
	t.Parallel()
	root := copyTree(t, "broken-node")
	devs, _ := discoverOff(t, root)
	ev := runMonitor(t, MonitorConfig{Root: root, NVML: NVMLOff, RecoveryPeriod: 50 * time.Millisecond}, devs)
	ports := filepath.Join(root, "sys", "class", "infiniband")
	// mlx5_0's port 2 was down at discovery: it is not watched.
	writeAtomic(t, filepath.Join(ports, "mlx5_0", "ports", "2", "phys_state"), []byte("2: Polling\n"))
	// mlx5_1 had no port up: it recovers once one is.
	writeAtomic(t, filepath.Join(ports, "mlx5_1", "ports", "1", "state"), []byte("4: ACTIVE\n"))
	writeAtomic(t, filepath.Join(ports, "mlx5_1", "ports", "1", "phys_state"), []byte("5: LinkUp\n"))
	evs := ev.waitFor(t, "mlx5_1 healthy after its port came up", func(evs []HealthEvent) bool {
		return has(evs, "mlx5_1", true, "recovered")
	})
	if has(evs, "mlx5_0", false, "") {
		t.Errorf("mlx5_0 marked unhealthy by its unwatched port 2: %+v", evs)
	}
	// mlx5_0's port 1 was up: its going down counts.
	writeAtomic(t, filepath.Join(ports, "mlx5_0", "ports", "1", "state"), []byte("2: INIT\n"))
	ev.waitFor(t, "mlx5_0 unhealthy after port 1 left ACTIVE", func(evs []HealthEvent) bool {
		return has(evs, "mlx5_0", false, "port 1 INIT")
	})
}

func TestMonitorDisappearance(t *testing.T) {
	t.Parallel()
	root := copyTree(t, "dgx-h100")
	devs, _ := discoverOff(t, root)
	ev := runMonitor(t, MonitorConfig{Root: root, NVML: NVMLOff}, devs)
	must(t, os.Remove(filepath.Join(root, "sys", "bus", "pci", "devices", "0000:9d:00.0")))
	must(t, os.Remove(filepath.Join(root, "dev", "infiniband", "uverbs9")))
	must(t, os.Remove(filepath.Join(root, "sys", "bus", "pci", "devices", "0000:ce:00.0", "driver")))
	ev.waitFor(t, "the removed GPU, the HCA without uverbs9 and the unbound HCA unhealthy", func(evs []HealthEvent) bool {
		return has(evs, "GPU-0000009d-1111-2222-3333-444400000004", false, "gone") &&
			has(evs, "mlx5_9", false, "/dev/infiniband/uverbs9 missing") &&
			has(evs, "mlx5_10", false, "driver mlx5_core unbound")
	})
}

func TestMonitorFPGA(t *testing.T) {
	t.Parallel()
	root := copyTree(t, "fpga-node")
	devs, _ := discoverOff(t, root)
	ev := runMonitor(t, MonitorConfig{Root: root, NVML: NVMLOff, RecoveryPeriod: 50 * time.Millisecond}, devs)
	afu := filepath.Join(root, "sys", "class", "fpga_region", "region0", "dfl-port.0", "afu_id")
	writeAtomic(t, afu, []byte("ffffffffffffffffffffffffffffffff\n"))
	logic := filepath.Join(root, "sys", "bus", "pci", "devices", "0000:65:00.0", "interface_uuids")
	writeAtomic(t, logic, []byte("ffffffffffffffffffffffffffffffff\n"))
	ev.waitFor(t, "both FPGAs unhealthy", func(evs []HealthEvent) bool {
		return has(evs, "0000:b1:00.0", false, "afu_id all f") && has(evs, "0000:65:00.1", false, "interface id")
	})
	writeAtomic(t, afu, []byte("9aeffe5f84570612c72e0a2e8f5e3c1a\n"))
	ev.waitFor(t, "the N6001 healthy again after a valid AFU is loaded", func(evs []HealthEvent) bool {
		return has(evs, "0000:b1:00.0", true, "recovered")
	})
}

func TestMonitorStartsFromDiscovery(t *testing.T) {
	t.Parallel()
	root := copyTree(t, "broken-node")
	devs, _ := discoverOff(t, root)
	// Long recovery: nothing broken can come back within the test, and the
	// healthy devices stay as they are: no events at all while nothing
	// changes.
	ev := runMonitor(t, MonitorConfig{Root: root, NVML: NVMLOff, RecoveryPeriod: time.Hour}, devs)
	time.Sleep(100 * time.Millisecond) // about ten polls at the test's 10 ms interval
	ev.mu.Lock()
	quiet := append([]HealthEvent(nil), ev.evs...)
	ev.mu.Unlock()
	if diff := cmp.Diff([]HealthEvent(nil), quiet); diff != "" {
		t.Errorf("Monitor on broken-node emitted events though nothing changed (-want +got):\n%s", diff)
	}
	// The silence was the monitor watching, not a monitor that never
	// polled: a device that disappears now is reported.
	var gone Device
	for _, d := range devs {
		if d.Healthy {
			gone = d
			break
		}
	}
	if gone.ID == "" {
		t.Fatal("broken-node has no healthy device to remove")
	}
	if err := os.RemoveAll(filepath.Join(root, "sys", "bus", "pci", "devices", gone.PCIAddress)); err != nil {
		t.Fatal(err)
	}
	ev.waitFor(t, gone.ID+" reported gone", func(evs []HealthEvent) bool {
		for _, e := range evs {
			if e.DeviceID == gone.ID && !e.Healthy {
				return true
			}
		}
		return false
	})
}

func TestMonitorNoFalseRecovery(t *testing.T) {
	devs, _ := discoverOff(t, fixture("broken-node"))
	// A short recovery period: what is still broken must stay unhealthy.
	ev := runMonitor(t, MonitorConfig{Root: fixture("broken-node"), NVML: NVMLOff, RecoveryPeriod: 10 * time.Millisecond}, devs)
	time.Sleep(300 * time.Millisecond) // many polls and recovery periods
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if diff := cmp.Diff([]HealthEvent(nil), ev.evs); diff != "" {
		t.Errorf("Monitor on broken-node changed health though nothing was repaired (-want +got):\n%s", diff)
	}
}

func TestNewMonitorBadConfig(t *testing.T) {
	for _, cfg := range []MonitorConfig{{NVML: "sometimes"}, {PollInterval: -time.Second}} {
		if _, err := NewMonitor(cfg); err == nil {
			t.Errorf("NewMonitor(%+v) = nil error, want one", cfg)
		}
	}
}

// writeAtomic replaces a fixture file in one step, as sysfs changes an
// attribute: the monitor must never read a half-written file.
func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	must(t, os.WriteFile(tmp, data, 0o644))
	must(t, os.Rename(tmp, path))
}
