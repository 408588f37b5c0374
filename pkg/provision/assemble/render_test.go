package assemble

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/internal/golden"
	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/phonehome"
)

func reportOnlyInventory() *inventory.Inventory {
	return &inventory.Inventory{Nodes: []inventory.Node{
		{Name: "cp-1", Role: inventory.RoleControlPlane},
		{Name: "node-0002", Role: inventory.RoleWorker},
	}}
}

func TestReportOnlyRendererGolden(t *testing.T) {
	t.Parallel()
	inv := reportOnlyInventory()
	r := reportOnlyRenderer{inv: inv, baseURL: "http://10.77.0.1:8080", delay: 2 * time.Second}
	for _, n := range inv.Nodes {
		b, err := r.Render(t.Context(), n)
		if err != nil {
			t.Fatalf("Render(%s): %v", n.Name, err)
		}
		golden.Check(t, filepath.Join("testdata", "report-only-"+n.Name+".sh.golden"), b)
	}
}

// TestReportOnlyScriptRunsInBusybox runs the report-only node config with
// busybox's sh and wget, as the lab's node image does, against a
// phone-home endpoint that refuses the first "ok" (a provisioner being
// restarted): the node reports started, then repeats ok until answered.
func TestReportOnlyScriptRunsInBusybox(t *testing.T) {
	t.Parallel()
	bin := testenv.RequireCommands(t, "busybox")["busybox"]
	dir := t.TempDir()
	for _, applet := range []string{"sh", "wget", "sleep"} {
		if err := os.Symlink(bin, filepath.Join(dir, applet)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var got []phonehome.Report
	refused := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != phonehome.Path("node-0002") {
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		rep, err := phonehome.Parse(string(body))
		if err != nil {
			t.Errorf("phone-home body %q: %v", body, err)
			http.Error(w, "bad report", http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if rep.Status == phonehome.OK && !refused {
			refused = true
			http.Error(w, "restarting", http.StatusServiceUnavailable)
			return
		}
		got = append(got, rep)
	}))
	defer srv.Close()
	inv := reportOnlyInventory()
	script, err := reportOnlyRenderer{inv: inv, baseURL: srv.URL}.Render(t.Context(), inv.Nodes[1])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "sh"), "-c", string(script))
	cmd.Env = []string{"PATH=" + dir}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("busybox sh the report-only config: %v\n%s", err, out)
	}
	want := []phonehome.Report{{Step: phonehome.StepKubeadmJoin, Status: phonehome.Started}, {Step: phonehome.StepKubeadmJoin, Status: phonehome.OK}}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reports the script sent (-want +got):\n%s", diff)
	}
}
