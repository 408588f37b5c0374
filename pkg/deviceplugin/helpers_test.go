package deviceplugin

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/servetest"
	"github.com/slipway-dev/slipway/pkg/deviceplugin/kubeletstub"
	"github.com/slipway-dev/slipway/pkg/devices"
)

// loadFixture reads testdata/<name>.json, a device list as discovery
// returns it (see testdata/README.md).
func loadFixture(t testing.TB, name string) []devices.Device {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var devs []devices.Device
	if err := json.Unmarshal(b, &devs); err != nil {
		t.Fatalf("decode testdata/%s.json: %v", name, err)
	}
	return devs
}

// byKind assigns devices to the default resource names, as the default
// config does.
func byKind(devs []devices.Device) map[string][]devices.Device {
	names := map[devices.Kind]string{
		devices.KindGPU:  devices.ResourceGPU,
		devices.KindHCA:  devices.ResourceHCA,
		devices.KindFPGA: devices.ResourceFPGA,
	}
	out := map[string][]devices.Device{}
	for _, d := range devs {
		out[names[d.Kind]] = append(out[names[d.Kind]], d)
	}
	return out
}

// shortDir returns a temp dir with a path short enough for unix sockets
// (t.TempDir can exceed 108 bytes).
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// harness is a running Plugin with a kubelet stub in a short temp dir.
type harness struct {
	dir    string
	p      *Plugin
	stub   *kubeletstub.Stub
	exited chan struct{} // closed when Run has returned, with runErr
	runErr error
	log    *logBuffer
}

// logBuffer collects a plugin's log for a test to read.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the log lines that contain s.
func (l *logBuffer) lines(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.b.String()) {
		if strings.Contains(line, s) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startHarness starts a stub kubelet and a Plugin serving rs; cleanup
// stops both and checks that Run returned nil.
func startHarness(t testing.TB, cfg Config, rs []Resource) *harness {
	t.Helper()
	return startHarnessStub(t, kubeletstub.Config{}, cfg, rs)
}

// startHarnessStub is startHarness with a kubelet stub configured by sc
// (its Dir is the harness's). The plugin logs into h.log unless cfg has a
// logger; the log is shown when the test fails.
func startHarnessStub(t testing.TB, sc kubeletstub.Config, cfg Config, rs []Resource) *harness {
	t.Helper()
	h := &harness{dir: shortDir(t), exited: make(chan struct{}), log: &logBuffer{}}
	sc.Dir = h.dir
	stub, err := kubeletstub.Start(sc)
	if err != nil {
		t.Fatal(err)
	}
	h.stub = stub
	cfg.KubeletDir = h.dir
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.CDIDir == "" {
		cfg.CDIDir = filepath.Join(h.dir, "cdi")
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	h.p = p
	if err := p.Update(rs); err != nil {
		t.Fatalf("Update: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.runErr = p.Run(ctx); close(h.exited) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.exited:
			if h.runErr != nil {
				t.Errorf("Run() = %v, want nil", h.runErr)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("Run did not return 20s after its context was cancelled")
		}
		h.stub.Stop()
		if t.Failed() || os.Getenv("DP_LOG") != "" {
			t.Logf("plugin log:\n%s", h.log.String())
		}
	})
	return h
}

// socketOf returns the path of the socket resource is served on now,
// failing unless there is exactly one.
func socketOf(t testing.TB, dir, resource string) string {
	t.Helper()
	m, err := filepath.Glob(SocketGlob(dir, resource))
	if err != nil || len(m) != 1 {
		t.Fatalf("sockets of %s in %s: %q, %v; want one", resource, dir, m, err)
	}
	return m[0]
}

// waitCtx is a generous bound for waits on events that take milliseconds.
func waitCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitCtx is the package's waitCtx that also ends, with Run's result as
// its cause, when the plugin's Run returns: a plugin that failed fails the
// wait at once and says why.
func (h *harness) waitCtx(t testing.TB) context.Context {
	t.Helper()
	return servetest.UntilExit(t, waitCtx(t), h.exited, "plugin", func() error { return h.runErr })
}

// waitServed waits until the kubelet stub has every resource of rs
// registered and listed.
func (h *harness) waitServed(ctx context.Context, t testing.TB, rs []Resource) {
	t.Helper()
	for _, r := range rs {
		if _, _, err := h.stub.WaitPlugin(ctx, r.Name); err != nil {
			t.Fatal(err)
		}
	}
}

// waitReady waits until the plugin reports Ready (registration is recorded
// just after the kubelet's Register call returns, so a stub that has seen
// the registration may be a moment ahead of Ready), and fails at once if
// Run returns.
func waitReady(t testing.TB, h *harness) error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := h.p.Ready()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-h.exited:
			return fmt.Errorf("plugin Run returned %v before it was ready (%w)", h.runErr, err)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// withHealth returns a copy of rs in which every part with one of ids has
// the given health, as the node agent hands a health change to the plugin.
func withHealth(rs []Resource, healthy bool, reason string, ids ...string) []Resource {
	out := make([]Resource, len(rs))
	for i, r := range rs {
		r.Devices = slices.Clone(r.Devices)
		for k, d := range r.Devices {
			d.Parts = slices.Clone(d.Parts)
			for j, p := range d.Parts {
				if slices.Contains(ids, p.ID) {
					p.Healthy, p.HealthReason = healthy, reason
					d.Parts[j] = p
				}
			}
			r.Devices[k] = d
		}
		out[i] = r
	}
	return out
}
