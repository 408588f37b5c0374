package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// demoDirPattern names the demo's temporary directories.
const demoDirPattern = "slipway-demo-"

// demoDir is the demo's temporary directory (mode 0700: it holds the
// simulated BMCs' password file, 0600). It records the demo's PID, so a
// later demo can remove it when this one was killed before it could.
type demoDir struct{ path string }

// newDemoDir creates the directory, after removing those of demos that
// are no longer running.
func newDemoDir(stderr io.Writer) (*demoDir, error) {
	removeStaleDemoDirs(os.TempDir(), stderr)
	p, err := os.MkdirTemp("", demoDirPattern)
	if err != nil {
		return nil, fmt.Errorf("demo: create temporary directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(p, "demo.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		os.RemoveAll(p)
		return nil, fmt.Errorf("demo: %w", err)
	}
	return &demoDir{path: p}, nil
}

// remove removes the directory; every return of the demo goes through it
// (a Ctrl-C or SIGTERM ends the demo by returning, see main).
func (d *demoDir) remove() { os.RemoveAll(d.path) }

// removeStaleDemoDirs removes the demo directories in tmp whose demo is no
// longer running: the PID it recorded is gone. A directory without that
// record is not one demo made (such as a --state-dir a user named
// /tmp/slipway-demo-state, as the help's examples do) and is left alone.
// Only directories of this user are looked at.
func removeStaleDemoDirs(tmp string, stderr io.Writer) {
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), demoDirPattern) {
			continue
		}
		p := filepath.Join(tmp, e.Name())
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
			continue
		}
		if !demoGone(p) {
			continue
		}
		if err := os.RemoveAll(p); err == nil {
			fmt.Fprintf(stderr, "demo: removed %s, left behind by a demo that was killed\n", p)
		}
	}
}

// demoGone reports whether dir was made by a demo that is no longer
// running.
func demoGone(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "demo.pid"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// loadAverage returns the one-minute load average (0 when unknown).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
