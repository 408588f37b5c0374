package nodeinit

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAssetURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cmdline, want string
		wantErr       bool
	}{
		{"slipway.images=http://10.0.0.1:8080/b/worker.json", "http://10.0.0.1:8080/b/worker.json", false},
		{"phonehome=http://10.77.0.1:8080 slipway.images=bundle/worker.json", "http://10.77.0.1:8080/assets/bundle/worker.json", false},
		{"phonehome=http://10.77.0.1:8080/ slipway.images=/bundle/cp.json", "http://10.77.0.1:8080/assets/bundle/cp.json", false},
		{"slipway.images=bundle/worker.json", "", true},
		{"quiet", "", true},
	} {
		got, err := ParseCmdline(tc.cmdline).AssetURL(ParamImages)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("AssetURL(%q) = %q, %v; want %q (error %v)", tc.cmdline, got, err, tc.want, tc.wantErr)
		}
	}
}

func fastFetcher() Fetcher {
	return Fetcher{Attempts: 4, Backoff: time.Millisecond, Client: &http.Client{Timeout: 5 * time.Second}}
}

func TestFetcherRetriesWhatARetryCanFix(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/flaky" && calls.Add(1) < 3:
			http.Error(w, "restarting", http.StatusServiceUnavailable)
		case r.URL.Path == "/flaky":
			w.Write([]byte("ok"))
		case r.URL.Path == "/used":
			calls.Add(1)
			http.Error(w, "token already used", http.StatusForbidden)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	var progress bytes.Buffer
	f := fastFetcher()
	f.Progress = &progress
	b, err := f.Get(ctx, srv.URL+"/flaky")
	if err != nil || string(b) != "ok" || calls.Load() != 3 {
		t.Errorf("Get(/flaky) = %q, %v after %d calls; want ok after 3", b, err, calls.Load())
	}
	if strings.Count(progress.String(), "retrying") != 2 {
		t.Errorf("progress = %q, want 2 retry lines", progress.String())
	}
	calls.Store(0)
	if _, err := f.Get(ctx, srv.URL+"/used"); err == nil || calls.Load() != 1 || !strings.Contains(err.Error(), "token already used") {
		t.Errorf("Get(/used) = %v after %d calls; want the 403 at once", err, calls.Load())
	}
	// The zero Fetcher works (its defaults: a client with a timeout).
	if b, err := (Fetcher{}).Get(ctx, srv.URL+"/flaky"); err != nil || string(b) != "ok" {
		t.Errorf("Fetcher{}.Get = %q, %v; want ok", b, err)
	}
	if _, err := (Fetcher{}).Post(ctx, srv.URL+"/flaky", nil); err != nil {
		t.Errorf("Fetcher{}.Post = %v", err)
	}
	srv.Close()
	if _, err := f.Get(ctx, srv.URL+"/flaky"); err == nil || !strings.Contains(err.Error(), "gave up after 4 attempts") {
		t.Errorf("Get on a closed server = %v, want gave up after 4 attempts", err)
	}
}

type recorder struct {
	mu    sync.Mutex
	calls []string
	hook  func(name string, args []string) error
}

func (r *recorder) Run(_ context.Context, name string, args ...string) error {
	r.mu.Lock()
	r.calls = append(r.calls, strings.TrimSpace(name+" "+strings.Join(args, " ")))
	r.mu.Unlock()
	if r.hook != nil {
		return r.hook(name, args)
	}
	return nil
}

func TestRunConfigScript(t *testing.T) {
	t.Parallel()
	script := "#!/bin/sh\necho joining\n"
	var reports []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/config/w1":
			w.Write([]byte(script))
		case "/phone-home/w1":
			b := new(bytes.Buffer)
			b.ReadFrom(r.Body)
			mu.Lock()
			reports = append(reports, b.String())
			mu.Unlock()
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	root := t.TempDir()
	var seen string
	rec := &recorder{hook: func(name string, args []string) error {
		b, err := os.ReadFile(args[0])
		seen = string(b)
		if fi, _ := os.Stat(args[0]); fi.Mode().Perm() != 0o700 {
			t.Errorf("config script mode = %v, want 0700", fi.Mode().Perm())
		}
		return err
	}}
	var out bytes.Buffer
	n := Node{Cmdline: ParseCmdline("slipway.node=w1 phonehome=" + srv.URL + " slipway.config=" + srv.URL + "/config/w1?token=SECRET"),
		Root: root, Fetch: fastFetcher(), Run: rec, Out: &out}
	if err := n.RunConfig(context.Background()); err != nil {
		t.Fatalf("RunConfig: %v", err)
	}
	if seen != script {
		t.Errorf("script run = %q, want %q", seen, script)
	}
	if strings.Contains(out.String(), "SECRET") {
		t.Errorf("output shows the token: %q", out.String())
	}
	if _, err := os.Stat(filepath.Join(root, "run", "slipway", "config.sh")); !os.IsNotExist(err) {
		t.Errorf("the fetched configuration is still on disk after the run (%v)", err)
	}

	// A used one-time URL fails at once, loudly, and is reported.
	n.Cmdline[ParamConfig] = srv.URL + "/config/gone?token=SECRET"
	err := n.RunConfig(context.Background())
	if err == nil || !strings.Contains(err.Error(), "404") || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("RunConfig(used URL) = %v, want a 404 error without the token", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if d := cmp.Diff([]string{"step=fetch-config status=failed rc=1"}, reports); d != "" {
		t.Errorf("reports (-want +got):\n%s", d)
	}
}
