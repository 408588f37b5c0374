package addons

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// versionServer answers /version with code; it counts the probes.
func versionServer(t *testing.T, code int) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var probes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/version" {
			probes.Add(1)
			if code == http.StatusOK {
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(`{"major":"1","minor":"37","gitVersion":"v1.37.2"}`))
				return
			}
		}
		http.Error(w, "not yet", code)
	}))
	t.Cleanup(srv.Close)
	return srv, &probes
}

func TestApplyWhenServingWaitsForTheAPI(t *testing.T) {
	t.Parallel()
	srv, probes := versionServer(t, http.StatusServiceUnavailable)
	a, err := New(Config{REST: &rest.Config{Host: srv.URL, Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	res, err := a.ApplyWhenServing(ctx, []inventory.Addon{{Manifest: "never-read.yaml"}}, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "never answered") || res != nil {
		t.Errorf("ApplyWhenServing against an API that answers 503 = %v, %v; want no results and a 'never answered' error", res, err)
	}
	if n := probes.Load(); n < 3 {
		t.Errorf("ApplyWhenServing probed /version %d times in 400ms at a 50ms retry, want several", n)
	}
}

func TestApplyWhenServingReportsTheFailure(t *testing.T) {
	t.Parallel()
	srv, probes := versionServer(t, http.StatusOK)
	bad := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(bad, []byte("kind: ConfigMap\nmetadata: {name: x}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{REST: &rest.Config{Host: srv.URL, Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = a.ApplyWhenServing(ctx, []inventory.Addon{{Manifest: bad}}, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "broken.yaml") {
		t.Errorf("ApplyWhenServing with a manifest lacking apiVersion = %v, want an error naming broken.yaml", err)
	}
	if probes.Load() < 2 {
		t.Errorf("ApplyWhenServing did not retry after the failed apply (%d probes)", probes.Load())
	}
}
