package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestRemoveStaleDemoDirs: a demo removes what killed demos left behind
// (their recorded PID is gone) and nothing else: not a running demo's
// directory, and not a directory that merely shares the prefix, such as
// the --state-dir /tmp/slipway-demo-state the help's examples keep, however
// old it is.
func TestRemoveStaleDemoDirs(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	// A PID that is gone: a process that ran and was reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	gonePID := cmd.Process.Pid
	mk := func(name, pid string, age time.Duration) string {
		p := filepath.Join(tmp, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if pid != "" {
			if err := os.WriteFile(filepath.Join(p, "demo.pid"), []byte(pid+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		old := time.Now().Add(-age)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		return p
	}
	killed := mk(demoDirPattern+"111", strconv.Itoa(gonePID), time.Hour)
	running := mk(demoDirPattern+"222", strconv.Itoa(os.Getpid()), time.Hour)
	state := mk(demoDirPattern+"state", "", 30*24*time.Hour)
	removeStaleDemoDirs(tmp, io.Discard)
	for p, want := range map[string]bool{killed: false, running: true, state: true} {
		_, err := os.Stat(p)
		if got := err == nil; got != want {
			t.Errorf("%s exists = %v after removeStaleDemoDirs, want %v", filepath.Base(p), got, want)
		}
	}
}
