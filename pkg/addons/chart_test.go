package addons

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	repo "helm.sh/helm/v4/pkg/repo/v1"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

func miniChart(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", "charts", "mini"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadLocalChartVersion(t *testing.T) {
	t.Parallel()
	f := &fetcher{timeout: DefaultFetchTimeout}
	for _, tt := range []struct{ version, wantErr string }{
		{"", ""}, {"0.1.0", ""}, {">=0.1.0 <1.0.0", ""},
		{"0.2.0", "chart " + miniChart(t) + " is mini 0.1.0: the inventory asks for version 0.2.0"},
	} {
		_, err := f.loadChart(context.Background(), &inventory.Chart{Source: inventory.ChartLocal, Ref: miniChart(t), Version: tt.version})
		if (tt.wantErr == "" && err != nil) || (tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr))) {
			t.Errorf("loadChart(mini, version %q) = %v, want error %q", tt.version, err, tt.wantErr)
		}
	}
}

// repoServer serves the mini chart from an HTTPS chart repository whose
// index claims digest (the archive's real one when empty).
func repoServer(t *testing.T, digest string) (repoURL, caFile string) {
	t.Helper()
	dir := t.TempDir()
	ch, err := loader.Load(miniChart(t))
	if err != nil {
		t.Fatal(err)
	}
	archive, err := chartutil.Save(ch, dir)
	if err != nil {
		t.Fatal(err)
	}
	if digest == "" {
		b, _ := os.ReadFile(archive)
		sum := sha256.Sum256(b)
		digest = hex.EncodeToString(sum[:])
	}
	mux := http.NewServeMux()
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	idx := repo.NewIndexFile()
	if err := idx.MustAdd(ch.Metadata, filepath.Base(archive), srv.URL, digest); err != nil {
		t.Fatal(err)
	}
	index := filepath.Join(dir, "index.yaml")
	if err := idx.WriteFile(index, 0o644); err != nil {
		t.Fatal(err)
	}
	mux.HandleFunc("GET /index.yaml", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, index) })
	mux.HandleFunc("GET /"+filepath.Base(archive), func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, archive) })
	caFile = filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	return srv.URL, caFile
}

func TestFetchFromRepository(t *testing.T) {
	t.Parallel()
	good, goodCA := repoServer(t, "")
	tampered, tamperedCA := repoServer(t, strings.Repeat("ab", 32))
	tests := []struct {
		name    string
		c       inventory.Chart
		wantErr string
	}{
		{"from the index", inventory.Chart{Repo: good, Ref: "mini", Version: "0.1.0", CAFile: goodCA}, ""},
		{"version constraint", inventory.Chart{Repo: good, Ref: "mini", Version: "~0.1", CAFile: goodCA}, ""},
		{"archive URL", inventory.Chart{Source: inventory.ChartURL, Ref: good + "/mini-0.1.0.tgz", CAFile: goodCA}, ""},
		{"untrusted certificate", inventory.Chart{Repo: good, Ref: "mini", Version: "0.1.0"}, "certificate"},
		{"unknown chart", inventory.Chart{Repo: good, Ref: "maxi", Version: "0.1.0", CAFile: goodCA}, `has no chart "maxi"`},
		{"unknown version", inventory.Chart{Repo: good, Ref: "mini", Version: "2.0.0", CAFile: goodCA}, "has no version 2.0.0 of mini (it has 0.1.0)"},
		{"digest mismatch", inventory.Chart{Repo: tampered, Ref: "mini", Version: "0.1.0", CAFile: tamperedCA}, "but the repository index says " + strings.Repeat("ab", 32)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.c
			if c.Source == "" {
				c.Source = inventory.ChartRepository
			}
			f := &fetcher{timeout: DefaultFetchTimeout, tmp: t.TempDir()}
			ch, err := f.loadChart(context.Background(), &c)
			if tt.wantErr == "" {
				if err != nil || ch.Metadata.Name != "mini" {
					t.Fatalf("loadChart(%+v) = %v, want the mini chart", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("loadChart(%+v) = %v, want an error containing %q", c, err, tt.wantErr)
			}
		})
	}
}

func TestChartDigest(t *testing.T) {
	t.Parallel()
	a, err := loader.Load(miniChart(t))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := loader.Load(miniChart(t))
	if chartDigest(a) != chartDigest(b) {
		t.Error("chartDigest of the same chart loaded twice differs")
	}
	for _, f := range b.Raw {
		if f.Name == "templates/configmap.yaml" {
			f.Data = append(f.Data, []byte("  extra: x\n")...)
		}
	}
	if chartDigest(a) == chartDigest(b) {
		t.Error("chartDigest did not change with a template")
	}
	if len(chartDigest(a)) < digestLabelLen {
		t.Errorf("chartDigest is shorter than the label holds")
	}
}
