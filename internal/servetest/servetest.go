package servetest

import (
	"context"
	"testing"
)

// Service is a server with the project's lifecycle: Run blocks until ctx is
// done and returns nil on a clean stop; Ready is closed once it serves.
type Service interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
}

// Start runs svc until the test ends and returns once it is ready. A Run
// that fails before Ready fails the test; a Run that returns an error after
// cancellation is reported as a test error.
func Start(t testing.TB, svc Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	started := true // false when Run already returned before Ready
	t.Cleanup(func() {
		cancel()
		if !started {
			return
		}
		if err := <-done; err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	})
	select {
	case <-svc.Ready():
	case err := <-done:
		started = false
		t.Fatalf("Run: %v", err)
	}
}
