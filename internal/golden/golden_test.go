package golden

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// recorder captures what Check reports instead of failing this test.
type recorder struct {
	testing.TB
	errors, fatals int
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.errors++ }
func (r *recorder) Fatalf(string, ...any) { r.fatals++; runtime.Goexit() }
func (r *recorder) Fatal(...any)          { r.fatals++; runtime.Goexit() }

func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.golden")
	if err := os.WriteFile(path, []byte("same\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		path         string
		got          string
		errs, fatals int
	}{
		{"equal", path, "same\n", 0, 0},
		{"different", path, "other\n", 1, 0},
		{"missing file", filepath.Join(t.TempDir(), "none.golden"), "x", 0, 1},
	}
	for _, tt := range tests {
		r := &recorder{TB: t}
		done := make(chan struct{})
		go func() { // Fatal ends this goroutine, as it ends a test's
			defer close(done)
			Check(r, tt.path, []byte(tt.got))
		}()
		<-done
		if r.errors != tt.errs || r.fatals != tt.fatals {
			t.Errorf("Check(%s) reported %d errors, %d fatals; want %d, %d", tt.name, r.errors, r.fatals, tt.errs, tt.fatals)
		}
	}
}
