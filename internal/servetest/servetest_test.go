package servetest

import (
	"context"
	"errors"
	"runtime"
	"testing"
)

type svc struct {
	ready   chan struct{}
	failRun error // returned at once, before Ready
	stopErr error // returned after ctx is done
	stopped bool
}

func (s *svc) Ready() <-chan struct{} { return s.ready }

func (s *svc) Run(ctx context.Context) error {
	if s.failRun != nil {
		return s.failRun
	}
	close(s.ready)
	<-ctx.Done()
	s.stopped = true
	return s.stopErr
}

// recorder counts what Start reports instead of failing this test.
type recorder struct {
	testing.TB
	cleanups       []func()
	errors, fatals int
}

func (r *recorder) Helper()               {}
func (r *recorder) Cleanup(f func())      { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(string, ...any) { r.errors++ }
func (r *recorder) Fatalf(string, ...any) { r.fatals++; runtime.Goexit() }
func (r *recorder) runCleanups() {
	for _, f := range r.cleanups {
		f()
	}
}

func TestStart(t *testing.T) {
	tests := []struct {
		name           string
		s              *svc
		errors, fatals int
	}{
		{"clean stop", &svc{ready: make(chan struct{})}, 0, 0},
		{"error on stop", &svc{ready: make(chan struct{}), stopErr: errors.New("shutdown")}, 1, 0},
		{"fails to start", &svc{ready: make(chan struct{}), failRun: errors.New("listen: address in use")}, 0, 1},
	}
	for _, tt := range tests {
		r := &recorder{TB: t}
		done := make(chan struct{})
		go func() { // Fatalf ends this goroutine, as it ends a test's
			defer close(done)
			Start(r, tt.s)
		}()
		<-done
		r.runCleanups()
		if r.errors != tt.errors || r.fatals != tt.fatals {
			t.Errorf("Start(%s): %d errors, %d fatals; want %d, %d", tt.name, r.errors, r.fatals, tt.errors, tt.fatals)
		}
		if tt.s.failRun == nil && !tt.s.stopped {
			t.Errorf("Start(%s): the service was not stopped at cleanup", tt.name)
		}
	}
}

func TestWaitFailsWhenRunEndsFirst(t *testing.T) {
	r := &recorder{TB: t}
	done := make(chan error, 1)
	done <- errors.New("bind: address already in use")
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		Wait(r, make(chan struct{}), done)
	}()
	<-finished
	if r.fatals != 1 {
		t.Errorf("Wait with Run ended and Ready never closed: %d fatals, want 1", r.fatals)
	}
}

func TestListenersAreBoundAndKept(t *testing.T) {
	l := Listen(t, "127.0.0.1:0")
	c := ListenUDP(t, "127.0.0.1:0")
	pair := SameUDPPort(t, "127.0.0.1", "127.0.0.2")
	if Port(l.Addr()) == 0 || Port(c.LocalAddr()) == 0 {
		t.Errorf("Listen, ListenUDP: port 0, want the kernel's pick")
	}
	if Port(pair[0].LocalAddr()) != Port(pair[1].LocalAddr()) {
		t.Errorf("SameUDPPort: ports %v and %v differ", pair[0].LocalAddr(), pair[1].LocalAddr())
	}
}
