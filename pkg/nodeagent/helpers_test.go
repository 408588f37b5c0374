package nodeagent

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/slipway-dev/slipway/internal/servetest"
	"github.com/slipway-dev/slipway/pkg/deviceplugin"
	"github.com/slipway-dev/slipway/pkg/deviceplugin/kubeletstub"
)

// fixture is a pkg/devices fixture tree, read only.
func fixture(name string) string { return filepath.Join("..", "devices", "testdata", name) }

// copyFixture copies a pkg/devices fixture tree (symlinks as symlinks) for
// a test that changes it.
func copyFixture(t testing.TB, name string) string {
	t.Helper()
	src := fixture(name)
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, out)
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(out, b, 0o644)
		}
	})
	if err != nil {
		t.Fatalf("copy fixture %s: %v", name, err)
	}
	return dst
}

// writeAtomic replaces a file in one step, as sysfs changes an attribute.
func writeAtomic(t testing.TB, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// shortDir returns a temp dir short enough for unix socket paths.
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "na")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// logBuffer collects log output for a test to read.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines returns the log lines that contain s.
func (l *logBuffer) lines(s string) []string {
	var out []string
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, s) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// harness is a running Agent with a device plugin front end and a kubelet
// stub.
type harness struct {
	dir    string
	a      *Agent
	stub   *kubeletstub.Stub
	log    *logBuffer
	exited chan struct{} // closed when Run has returned, with runErr
	runErr error
}

// startAgent starts a kubelet stub and an Agent with cfg and a device
// plugin front end serving into the stub's directory; cleanup stops both
// and checks that Run returned nil.
func startAgent(t testing.TB, cfg Config) *harness {
	t.Helper()
	h := &harness{dir: shortDir(t), log: &logBuffer{}, exited: make(chan struct{})}
	stub, err := kubeletstub.Start(kubeletstub.Config{Dir: h.dir})
	if err != nil {
		t.Fatal(err)
	}
	h.stub = stub
	if cfg.DevicePlugin == nil {
		cfg.DevicePlugin = &deviceplugin.Config{}
	}
	cfg.DevicePlugin.KubeletDir = h.dir
	cfg.Log = slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.a = a
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.runErr = a.Run(ctx); close(h.exited) }()
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
		if t.Failed() || os.Getenv("AGENT_LOG") != "" {
			t.Logf("agent log:\n%s", h.log.String())
		}
	})
	return h
}

// waitCtx bounds waits for events that take milliseconds, generously.
func waitCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// alive fails the test at once if the agent's Run has returned: for loops
// that poll rather than wait on a context.
func (h *harness) alive(t testing.TB) {
	t.Helper()
	select {
	case <-h.exited:
		t.Fatalf("agent Run returned %v", h.runErr)
	default:
	}
}

// waitCtx is the package's waitCtx that also ends, with Run's result as
// its cause, when the agent's Run returns: an agent that failed fails the
// wait at once and says why.
func (h *harness) waitCtx(t testing.TB) context.Context {
	t.Helper()
	return servetest.UntilExit(t, waitCtx(t), h.exited, "agent", func() error { return h.runErr })
}

// healthIs returns a condition on a ListAndWatch list: device id is there
// with health want.
func healthIs(id, want string) func([]*pluginapi.Device) bool {
	return func(ds []*pluginapi.Device) bool {
		for _, d := range ds {
			if d.GetID() == id {
				return d.GetHealth() == want
			}
		}
		return false
	}
}

// healthOf returns the health of device id in a ListAndWatch list, "" when
// it is not there.
func healthOf(ds []*pluginapi.Device, id string) string {
	for _, d := range ds {
		if d.GetID() == id {
			return d.GetHealth()
		}
	}
	return ""
}

// removeFile removes a fixture file, as a device node vanishing.
func removeFile(path string) error { return os.Remove(path) }

// newTestLogger logs text at debug level into b.
func newTestLogger(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
