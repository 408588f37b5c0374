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
