package nodeagent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/slipway-dev/slipway/pkg/deviceplugin/kubeletstub"
	"github.com/slipway-dev/slipway/pkg/devices"
)

// dyingNVML is an NVML that works until broken is set, then fails every
// call (as when the driver is unloaded or the library wedges), and works
// again when broken is cleared.
type dyingNVML struct {
	gpus   []devices.NVMLGPU
	broken atomic.Bool
}

var errDriverGone = errors.New("nvml: driver not loaded")

func (n *dyingNVML) Init() error {
	if n.broken.Load() {
		return errDriverGone
	}
	return nil
}

func (n *dyingNVML) Shutdown() error { return nil }

func (n *dyingNVML) GPUs() ([]devices.NVMLGPU, error) {
	if n.broken.Load() {
		return nil, errDriverGone
	}
	return n.gpus, nil
}

func (n *dyingNVML) NewEventSet() (devices.NVMLEventSet, error) {
	if n.broken.Load() {
		return nil, errDriverGone
	}
	return &dyingEvents{n: n}, nil
}

type dyingEvents struct{ n *dyingNVML }

func (e *dyingEvents) Register(string) error { return nil }

func (e *dyingEvents) Wait(timeout time.Duration) (devices.XIDEvent, bool, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if e.n.broken.Load() {
			return devices.XIDEvent{}, false, errDriverGone
		}
		time.Sleep(5 * time.Millisecond)
	}
	return devices.XIDEvent{}, false, nil
}

func (e *dyingEvents) Close() error { return nil }

var (
	_ devices.NVML         = (*dyingNVML)(nil)
	_ devices.NVMLEventSet = (*dyingEvents)(nil)
)

// TestSurvivesNVMLFailure runs the agent (discovery, the real health
// monitor, the device plugin) with an NVML that dies mid-run and comes
// back, on the DGX H100 fixture tree: every GPU is withdrawn while NVML is down (none stays advertised on the
// strength of a library that cannot see it), the HCAs are untouched, the
// plugin keeps serving and answering, and the GPUs return after recovery.
func TestSurvivesNVMLFailure(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "devices", "testdata", "dgx-h100")
	ctx := waitCtx(t)
	sysfsOnly, err := devices.Discover(ctx, devices.Config{Root: root, NVML: devices.NVMLOff})
	if err != nil {
		t.Fatal(err)
	}
	lib := &dyingNVML{}
	for _, d := range sysfsOnly {
		if d.Kind != devices.KindGPU {
			continue
		}
		minor, _ := strconv.Atoi(d.Attributes["minor"])
		lib.gpus = append(lib.gpus, devices.NVMLGPU{UUID: d.ID, Name: d.Model, PCIAddress: d.PCIAddress, Minor: minor})
	}
	if len(lib.gpus) != 8 {
		t.Fatalf("fixture has %d GPUs, want 8", len(lib.gpus))
	}
	h := startAgent(t, Config{
		Discovery:  devices.Config{Root: root, NVML: devices.NVMLOn, NVMLLib: lib},
		ConfigFile: writeHealthConfig(t, "20ms", "50ms"),
	})
	ctx = h.waitCtx(t)
	allGPUs := func(health string) func([]*pluginapi.Device) bool {
		return func(ds []*pluginapi.Device) bool {
			for _, d := range ds {
				if d.GetHealth() != health {
					return false
				}
			}
			return len(ds) == 8
		}
	}
	gp, _, err := h.stub.WaitPlugin(ctx, devices.ResourceGPU)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.stub.WaitDevices(ctx, devices.ResourceGPU, allGPUs(pluginapi.Healthy)); err != nil {
		t.Fatalf("GPUs not healthy with NVML working: %v", err)
	}

	lib.broken.Store(true)
	if _, err := h.stub.WaitDevices(ctx, devices.ResourceGPU, allGPUs(pluginapi.Unhealthy)); err != nil {
		t.Fatalf("GPUs still advertised after NVML died: %v", err)
	}
	_, hcas, err := h.stub.WaitPlugin(ctx, devices.ResourceHCA)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range hcas {
		if d.GetHealth() != pluginapi.Healthy {
			t.Errorf("HCA %s is %s while only NVML failed, want Healthy", d.GetID(), d.GetHealth())
		}
	}
	resp, err := gp.Client.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{
		{AvailableDeviceIDs: []string{lib.gpus[0].UUID, lib.gpus[1].UUID}, AllocationSize: 1},
	}})
	if err != nil || len(resp.GetContainerResponses()) != 1 {
		t.Errorf("GetPreferredAllocation while NVML is down = %v, %v; want an answer", resp, err)
	}
	if err := h.a.Ready(); err != nil {
		t.Errorf("Ready() = %v while NVML is down, want nil (still serving)", err)
	}

	lib.broken.Store(false)
	if _, err := h.stub.WaitDevices(ctx, devices.ResourceGPU, allGPUs(pluginapi.Healthy)); err != nil {
		t.Fatalf("GPUs not back after NVML recovered: %v", err)
	}
}

// xidNVML is an NVML whose event set delivers the XIDs sent on xids.
type xidNVML struct {
	dyingNVML
	xids chan devices.XIDEvent
}

func (n *xidNVML) NewEventSet() (devices.NVMLEventSet, error) { return &xidEvents{n: n}, nil }

type xidEvents struct{ n *xidNVML }

func (e *xidEvents) Register(string) error { return nil }

func (e *xidEvents) Wait(timeout time.Duration) (devices.XIDEvent, bool, error) {
	select {
	case ev := <-e.n.xids:
		return ev, true, nil
	case <-time.After(timeout):
		return devices.XIDEvent{}, false, nil
	}
}

func (e *xidEvents) Close() error { return nil }

// BenchmarkXIDToUpdate measures the event path end to end: an NVML XID
// event, through the real health monitor, the agent's ledger and the
// device plugin, to the kubelet stub receiving the changed ListAndWatch
// list. Target: under 100 ms.
func BenchmarkXIDToUpdate(b *testing.B) {
	root := filepath.Join("..", "devices", "testdata", "dgx-h100")
	ctx := waitCtx(b)
	sysfsOnly, err := devices.Discover(ctx, devices.Config{Root: root, NVML: devices.NVMLOff})
	if err != nil {
		b.Fatal(err)
	}
	lib := &xidNVML{xids: make(chan devices.XIDEvent)}
	for _, d := range sysfsOnly {
		if d.Kind == devices.KindGPU {
			minor, _ := strconv.Atoi(d.Attributes["minor"])
			lib.gpus = append(lib.gpus, devices.NVMLGPU{UUID: d.ID, Name: d.Model, PCIAddress: d.PCIAddress, Minor: minor})
		}
	}
	h := startAgent(b, Config{
		Discovery:  devices.Config{Root: root, NVML: devices.NVMLOn, NVMLLib: lib},
		ConfigFile: writeHealthConfig(b, "5ms", "1ms"),
	})
	ctx = h.waitCtx(b)
	var lat []time.Duration
	for b.Loop() {
		for i := range 25 {
			uuid := lib.gpus[i%len(lib.gpus)].UUID
			if _, err := h.stub.WaitDevices(ctx, devices.ResourceGPU, healthIs(uuid, pluginapi.Healthy)); err != nil {
				b.Fatal(err)
			}
			seen := len(h.stub.Updates(devices.ResourceGPU))
			t0 := time.Now()
			lib.xids <- devices.XIDEvent{UUID: uuid, XID: 79}
			// The 1 ms recovery may follow before the waiter wakes: look
			// at every list sent since, not only the latest.
			var at time.Time
			err := h.stub.Wait(ctx, func(_ map[string]*kubeletstub.Plugin, us map[string][]kubeletstub.Update) bool {
				for _, u := range us[devices.ResourceGPU][seen:] {
					if healthIs(uuid, pluginapi.Unhealthy)(u.Devices) {
						at = u.At
						return true
					}
				}
				return false
			})
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, at.Sub(t0))
		}
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
	b.ReportMetric(float64(p50.Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(p99.Nanoseconds())/1e3, "p99-µs")
	b.Logf("NVML XID to ListAndWatch update through the monitor, the ledger and the plugin: p50 %v p99 %v over %d | p99/target(100ms) %.4f",
		p50, p99, len(lat), p99.Seconds()/0.1)
}

// recorder is a front end that records what the agent does with it.
type recorder struct {
	mu      sync.Mutex
	running bool
	applied []devices.State
}

func (r *recorder) Apply(st devices.State) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied = append(r.applied, st)
	return nil
}

func (r *recorder) Run(ctx context.Context) error {
	r.mu.Lock()
	r.running = true
	r.mu.Unlock()
	<-ctx.Done()
	return nil
}

func (r *recorder) Ready() error { return nil }

// first returns the first state applied.
func (r *recorder) first() devices.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applied[0]
}

func (r *recorder) snapshot() (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running, len(r.applied)
}

// TestFirstDiscoveryRetried: when the first discovery fails (NVML required
// and broken), the agent does not exit: its front ends run without devices
// (a DRA driver must still answer unprepare from its checkpoint), nothing
// is applied, /healthz is 503 with the reason, and discovery is retried
// until it succeeds; then the devices are served.
func TestFirstDiscoveryRetried(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "devices", "testdata", "dgx-h100")
	sysfsOnly, err := devices.Discover(context.Background(), devices.Config{Root: root, NVML: devices.NVMLOff})
	if err != nil {
		t.Fatal(err)
	}
	lib := &dyingNVML{}
	for _, d := range sysfsOnly {
		if d.Kind == devices.KindGPU {
			minor, _ := strconv.Atoi(d.Attributes["minor"])
			lib.gpus = append(lib.gpus, devices.NVMLGPU{UUID: d.ID, Name: d.Model, PCIAddress: d.PCIAddress, Minor: minor})
		}
	}
	lib.broken.Store(true)
	rec := &recorder{}
	h := startAgent(t, Config{
		Discovery:      devices.Config{Root: root, NVML: devices.NVMLOn, NVMLLib: lib},
		DiscoveryRetry: 10 * time.Millisecond,
		Frontends:      []Frontend{rec},
	})
	ctx := h.waitCtx(t)
	deadline := time.Now().Add(10 * time.Second)
	for len(h.log.lines("device discovery failed")) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 3 failed discoveries logged in 10s:\n%s", h.log.String())
		}
		time.Sleep(5 * time.Millisecond)
		h.alive(t)
	}
	if running, applied := rec.snapshot(); !running || applied != 0 {
		t.Errorf("while discovery fails: front end running %v, %d states applied; want running, none applied", running, applied)
	}
	srv := httptest.NewServer(h.a.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "not discovered") || !strings.Contains(string(body), "driver not loaded") {
		t.Errorf("GET /healthz while discovery fails = %d %q, want 503 with the reason", resp.StatusCode, body)
	}
	lib.broken.Store(false)
	if _, devs, err := h.stub.WaitPlugin(ctx, devices.ResourceGPU); err != nil || len(devs) != 8 {
		t.Fatalf("after NVML came back: %d GPUs, %v; want 8", len(devs), err)
	}
	// The front ends are handed the state one after the other: the device
	// plugin (first) may have served it before the recorder has it.
	deadline = time.Now().Add(10 * time.Second)
	for {
		if _, applied := rec.snapshot(); applied > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no state applied to the other front end 10s after discovery succeeded")
		}
		time.Sleep(5 * time.Millisecond)
		h.alive(t)
	}
	if devs := rec.first().Devices; len(devs) != 20 {
		t.Errorf("first state applied holds %d devices, want the fixture's 20 (8 GPUs, 12 HCAs)", len(devs))
	}
}
