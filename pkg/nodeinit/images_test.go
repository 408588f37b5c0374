package nodeinit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/imagebundle"
)

// ImportImages imports every archive of the index with ctr into k8s.io,
// after containerd answers, and refuses an archive that does not match.
func TestImportImages(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	prog := filepath.Join(src, "pause")
	os.WriteFile(prog, []byte("pause"), 0o755)
	img, err := imagebundle.FromFiles(imagebundle.Spec{Files: []imagebundle.File{{Path: "/pause", Source: prog}}, Epoch: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	bundle := t.TempDir()
	if _, err := imagebundle.Write(bundle, "v1.37.2", []imagebundle.Image{{Ref: "registry.k8s.io/pause:3.10.2", Image: img, Roles: []string{imagebundle.RoleWorker}}}, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/assets/bundle/", http.FileServer(http.Dir(bundle))))
	defer srv.Close()

	down := 2 // containerd answers on the third try
	var imported []string
	rec := &recorder{hook: func(name string, args []string) error {
		if strings.Join(args, " ") == "--namespace k8s.io version" && down > 0 {
			down--
			return os.ErrNotExist
		}
		if len(args) > 4 && args[3] == "import" {
			b, err := os.ReadFile(args[len(args)-1])
			if err != nil {
				return err
			}
			imported = append(imported, string(b[:4]))
		}
		return nil
	}}
	dir := t.TempDir()
	n := Node{Cmdline: ParseCmdline("phonehome=" + srv.URL + " slipway.images=bundle/worker.json"), Fetch: fastFetcher(), Run: rec}
	if err := n.ImportImages(context.Background(), dir); err != nil {
		t.Fatalf("ImportImages: %v", err)
	}
	wantCalls := []string{
		"ctr --namespace k8s.io version", "ctr --namespace k8s.io version", "ctr --namespace k8s.io version",
		"ctr --namespace k8s.io images import --local " + filepath.Join(dir, imagebundle.ArchiveName("registry.k8s.io/pause:3.10.2")),
	}
	if d := cmp.Diff(wantCalls, rec.calls); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	if len(imported) != 1 {
		t.Errorf("archives handed to ctr: %d, want 1", len(imported))
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("archives left after the import: %v", left)
	}

	// A corrupted archive is never imported.
	ix, _ := os.ReadFile(filepath.Join(bundle, imagebundle.IndexWorker))
	os.WriteFile(filepath.Join(bundle, imagebundle.IndexWorker), []byte(strings.Replace(string(ix), `"size": `, `"size": 1`, 1)), 0o644)
	rec.calls = nil
	if err := n.ImportImages(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "the index says") {
		t.Errorf("ImportImages(corrupted) = %v, want a size/digest mismatch", err)
	}
	for _, c := range rec.calls {
		if strings.Contains(c, " import ") {
			t.Errorf("a mismatching archive was imported: %s", c)
		}
	}
}
