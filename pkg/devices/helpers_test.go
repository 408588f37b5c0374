package devices

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	goldenfile "github.com/slipway-dev/slipway/internal/golden"
)

// fixture returns the path of a fixture tree in testdata.
func fixture(name string) string { return filepath.Join("testdata", name) }

// copyTree copies the fixture tree name into a temp dir, symlinks as
// symlinks, for tests that change files. With only, it copies just those
// top-level directories (such as "dev") and links the others to the
// fixture: a test that changes files in those alone saves writing and
// removing some 800 files, seconds on a busy disk.
func copyTree(t *testing.T, name string, only ...string) string {
	t.Helper()
	src := fixture(name)
	dst := t.TempDir()
	abs, err := filepath.Abs(src)
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if top := strings.Split(rel, string(filepath.Separator)); len(only) > 0 && len(top) == 1 && rel != "." && d.IsDir() && !slices.Contains(only, rel) {
			if err := os.Symlink(filepath.Join(abs, rel), out); err != nil {
				return err
			}
			return filepath.SkipDir
		}
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

// logBuffer is a logger whose records a test can read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newTestLog() (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// checkGolden compares devs, as JSON, with testdata/golden/<name>.json.
func checkGolden(t *testing.T, name string, devs []Device) {
	t.Helper()
	got, err := json.MarshalIndent(devs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	goldenfile.Check(t, filepath.Join("testdata", "golden", name+".json"), got)
}

// goldenCount is how many devices the golden file of fixture name holds:
// what discovery of that tree is known to report.
func goldenCount(tb testing.TB, name string) int {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden", name+".json"))
	if err != nil {
		tb.Fatal(err)
	}
	var devs []Device
	if err := json.Unmarshal(b, &devs); err != nil {
		tb.Fatalf("golden %s: %v", name, err)
	}
	return len(devs)
}

// byID indexes devices by ID.
func byID(devs []Device) map[string]Device {
	m := make(map[string]Device, len(devs))
	for _, d := range devs {
		m[d.ID] = d
	}
	return m
}
