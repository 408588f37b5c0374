package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/registry"
	repo "helm.sh/helm/v4/pkg/repo/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/slipway-dev/slipway/pkg/addons"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

// helmFixtures are the chart sources one test run serves on loopback.
type helmFixtures struct {
	dir string
	// chartDir is the batchq chart directory; archive its packaged form.
	chartDir, archive string
	// repoURL is an HTTPS chart repository serving the archive, ociRef an
	// OCI reference to it in a registry; caFile verifies both.
	repoURL, ociRef, caFile string
	// refusedURL closes every connection at once; silentURL accepts and
	// never answers.
	refusedURL, silentURL string
}

// startHelmFixtures packages testdata/helm/batchq with Helm's own packager,
// serves it from an HTTPS chart repository (index.yaml with its digest) and
// pushes it with Helm's registry client to go-containerregistry's
// in-memory OCI registry over HTTPS, all on loopback.
func startHelmFixtures(t *testing.T) *helmFixtures {
	t.Helper()
	f := &helmFixtures{dir: t.TempDir()}
	var err error
	if f.chartDir, err = filepath.Abs(filepath.Join("testdata", "helm", "batchq")); err != nil {
		t.Fatal(err)
	}
	ch, err := loader.Load(f.chartDir)
	if err != nil {
		t.Fatalf("load fixture chart: %v", err)
	}
	if f.archive, err = chartutil.Save(ch, f.dir); err != nil {
		t.Fatalf("package fixture chart: %v", err)
	}
	data, err := os.ReadFile(f.archive)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)

	// Chart repository: index.yaml and the archive under /charts/.
	mux := http.NewServeMux()
	repoSrv := httptest.NewTLSServer(mux)
	t.Cleanup(repoSrv.Close)
	f.repoURL = repoSrv.URL + "/charts"
	idx := repo.NewIndexFile()
	if err := idx.MustAdd(ch.Metadata, filepath.Base(f.archive), f.repoURL, hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
	indexPath := filepath.Join(f.dir, "index.yaml")
	if err := idx.WriteFile(indexPath, 0o644); err != nil {
		t.Fatal(err)
	}
	mux.HandleFunc("GET /charts/index.yaml", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, indexPath) })
	mux.HandleFunc("GET /charts/"+filepath.Base(f.archive), func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, f.archive) })

	// OCI registry, same certificate authority as the repository (both
	// are httptest's).
	regSrv := httptest.NewTLSServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(regSrv.Close)
	host := strings.TrimPrefix(regSrv.URL, "https://")
	rc, err := registry.NewClient(registry.ClientOptHTTPClient(regSrv.Client()),
		registry.ClientOptCredentialsFile(filepath.Join(f.dir, "registry.json")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Push(data, host+"/charts/batchq:"+ch.Metadata.Version); err != nil {
		t.Fatalf("push fixture chart to the loopback OCI registry: %v", err)
	}
	f.ociRef = "oci://" + host + "/charts/batchq"

	f.caFile = filepath.Join(f.dir, "ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: repoSrv.Certificate().Raw})
	if err := os.WriteFile(f.caFile, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	f.refusedURL = "https://" + holdListener(t, false) + "/charts"
	f.silentURL = "https://" + holdListener(t, true) + "/charts"
	return f
}

// holdListener listens on loopback for the whole test and either closes
// every connection at once (a service that refuses) or holds it open
// without a byte (a repository that never answers). It returns host:port.
func holdListener(t *testing.T, silent bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !silent {
				c.Close()
				continue
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// helmInventory writes an inventory for the control plane with the given
// addons entries (YAML list items) and loads it.
func helmInventory(t *testing.T, cp *controlPlane, dir, entries string) (*inventory.Inventory, string) {
	t.Helper()
	path := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(cliInventory, cp.endpoint, entries)), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Load(path)
	if err != nil {
		t.Fatalf("load inventory:\n%v", err)
	}
	return inv, path
}

// entryLine returns the 1-based line of the add-on entry ("- chart: ...")
// whose mapping holds the line containing marker.
func entryLine(t *testing.T, file, marker string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	start := 0
	for i, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "  - ") {
			start = i + 1
		}
		if strings.Contains(l, marker) {
			return start
		}
	}
	t.Fatalf("%s has no line with %q", file, marker)
	return 0
}

func releaseRevisions(t *testing.T, cp *controlPlane, ns, release string) []string {
	t.Helper()
	list, err := cp.admin.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "owner=helm,name=" + release})
	if err != nil {
		t.Fatalf("list release secrets of %s/%s: %v", ns, release, err)
	}
	var out []string
	for _, s := range list.Items {
		out = append(out, s.Name)
	}
	return out
}

// TestHelmAddons installs a chart with a CRD and a Deployment from a local
// directory, an HTTPS chart repository and an OCI registry into a real
// kube-apiserver, re-applies it without a new revision, plans and applies
// an upgrade when values change, and shows that a broken chart and
// unreachable repositories fail one by one, named with their inventory
// entry, while the rest is applied.
func TestHelmAddons(t *testing.T) {
	cp := startControlPlane(t)
	fx := startHelmFixtures(t)
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("BATCHQ_TOKEN", "tok-3f9a1c7e5b")
	ns := filepath.Join(dir, "ns.yaml")
	if err := os.WriteFile(ns, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: hpc-shared\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	entries := func(replicas int) string {
		return fmt.Sprintf(`  - %s
  - chart: %s
    release: local
    namespace: hpc
    version: 0.1.0
    values: {replicas: %d}
    secretValues: {auth.token: env:BATCHQ_TOKEN}
  - chart: batchq
    repo: %s
    version: ">=0.1.0 <1.0.0"
    caFile: %s
    release: fromrepo
    namespace: hpc-repo
    values: {queue: {slots: 16}}
    secretValues: {auth.token: env:BATCHQ_TOKEN}
  - chart: %s
    version: 0.1.0
    caFile: %s
    release: fromoci
    namespace: hpc-oci
    secretValues: {auth.token: env:BATCHQ_TOKEN}
`, ns, fx.chartDir, replicas, fx.repoURL, fx.caFile, fx.ociRef, fx.caFile)
	}
	a, err := addons.New(addons.Config{REST: cp.adminREST, KindWait: 30 * time.Second, FetchTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(cp.adminREST)
	queues := schema.GroupVersionResource{Group: "hpc.slipway.dev", Version: "v1", Resource: "batchqueues"}

	inv, _ := helmInventory(t, cp, dir, entries(1))
	if _, err := addons.Load(inv.Addons); err != nil {
		t.Fatalf("Load (the offline checks of validate): %v", err)
	}
	res, err := a.ApplyAddons(ctx, inv.Addons)
	if err != nil {
		t.Fatalf("ApplyAddons (first install): %v", err)
	}
	got := map[string]addons.Action{}
	for _, r := range res {
		got[r.Object] = r.Action
		if r.Chart != "" && (r.Chart != "batchq 0.1.0" || r.Revision != 1) {
			t.Errorf("first install of %s: chart %q revision %d, want batchq 0.1.0 revision 1", r.Object, r.Chart, r.Revision)
		}
	}
	for _, o := range []string{"Namespace hpc-shared", "release hpc/local", "release hpc-repo/fromrepo", "release hpc-oci/fromoci"} {
		if got[o] != addons.Created {
			t.Errorf("first ApplyAddons: %s %q, want created (results %v)", o, got[o], res)
		}
	}
	for _, rel := range []struct {
		ns, name string
		slots    int64
	}{{"hpc", "local", 8}, {"hpc-repo", "fromrepo", 16}, {"hpc-oci", "fromoci", 8}} {
		d, err := cp.admin.AppsV1().Deployments(rel.ns).Get(ctx, rel.name+"-controller", metav1.GetOptions{})
		if err != nil {
			t.Errorf("Deployment of release %s/%s: %v", rel.ns, rel.name, err)
			continue
		}
		if *d.Spec.Replicas != 1 || d.Labels["app.kubernetes.io/managed-by"] != "Helm" {
			t.Errorf("Deployment %s/%s: replicas %d, labels %v; want 1 and managed-by Helm", rel.ns, d.Name, *d.Spec.Replicas, d.Labels)
		}
		q, err := dyn.Resource(queues).Namespace(rel.ns).Get(ctx, rel.name+"-default", metav1.GetOptions{})
		if err != nil {
			t.Errorf("BatchQueue of release %s/%s (custom resource of the chart's CRD): %v", rel.ns, rel.name, err)
			continue
		}
		if slots, _, _ := unstructured.NestedInt64(q.Object, "spec", "slots"); slots != rel.slots {
			t.Errorf("BatchQueue %s/%s slots = %d, want %d", rel.ns, q.GetName(), slots, rel.slots)
		}
		s, err := cp.admin.CoreV1().Secrets(rel.ns).Get(ctx, rel.name+"-auth", metav1.GetOptions{})
		if err != nil || string(s.Data["TOKEN"]) != "tok-3f9a1c7e5b" {
			t.Errorf("Secret %s/%s-auth: %v, TOKEN %q; want the token from BATCHQ_TOKEN", rel.ns, rel.name, err, s.Data["TOKEN"])
		}
	}

	t.Run("re-apply without change makes no new revision", func(t *testing.T) {
		res, err := a.ApplyAddons(ctx, inv.Addons)
		if err != nil {
			t.Fatalf("ApplyAddons again: %v", err)
		}
		for _, r := range res {
			if r.Action != addons.Unchanged {
				t.Errorf("second ApplyAddons: %s", r)
			}
		}
		if revs := releaseRevisions(t, cp, "hpc", "local"); len(revs) != 1 {
			t.Errorf("release hpc/local has revisions %v after a re-apply, want only v1", revs)
		}
	})

	t.Run("changed values: plan shows the diff, apply upgrades", func(t *testing.T) {
		inv3, _ := helmInventory(t, cp, dir, entries(3))
		plan, err := a.PlanAddons(ctx, inv3.Addons)
		if err != nil {
			t.Fatalf("PlanAddons: %v", err)
		}
		var local addons.Result
		for _, r := range plan {
			if r.Object == "release hpc/local" {
				local = r
			} else if r.Action != addons.Unchanged || r.Diff != "" {
				t.Errorf("plan of an unchanged add-on: %s\n%s", r, r.Diff)
			}
		}
		if local.Action != addons.Changed || local.Revision != 2 || !strings.Contains(local.Diff, "-  replicas: 1") || !strings.Contains(local.Diff, "+  replicas: 3") {
			t.Errorf("plan of hpc/local = %s, diff:\n%s\nwant configured at revision 2 with replicas 1 -> 3", local, local.Diff)
		}
		if !strings.Contains(local.String(), "would be configured") {
			t.Errorf("planned result reads %q, want it to say 'would be configured'", local)
		}
		if d, _ := cp.admin.AppsV1().Deployments("hpc").Get(ctx, "local-controller", metav1.GetOptions{}); d == nil || *d.Spec.Replicas != 1 {
			t.Errorf("PlanAddons changed the Deployment")
		}
		if revs := releaseRevisions(t, cp, "hpc", "local"); len(revs) != 1 {
			t.Errorf("PlanAddons recorded a revision: %v", revs)
		}
		for _, r := range plan {
			if strings.Contains(r.Diff, "tok-3f9a1c7e5b") {
				t.Errorf("plan diff of %s shows the secret token:\n%s", r.Object, r.Diff)
			}
		}

		res, err := a.ApplyAddons(ctx, inv3.Addons)
		if err != nil {
			t.Fatalf("ApplyAddons with replicas 3: %v", err)
		}
		for _, r := range res {
			want := addons.Unchanged
			if r.Object == "release hpc/local" {
				want = addons.Changed
			}
			if r.Action != want {
				t.Errorf("ApplyAddons with replicas 3: %s, want %s", r, want)
			}
		}
		d, err := cp.admin.AppsV1().Deployments("hpc").Get(ctx, "local-controller", metav1.GetOptions{})
		if err != nil || *d.Spec.Replicas != 3 {
			t.Errorf("Deployment hpc/local-controller after the upgrade: %v, want replicas 3", err)
		}
		if revs := releaseRevisions(t, cp, "hpc", "local"); len(revs) != 2 {
			t.Errorf("release hpc/local revisions after the upgrade = %v, want v1 and v2", revs)
		}
		again, err := a.ApplyAddons(ctx, inv3.Addons)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range again {
			if r.Action != addons.Unchanged {
				t.Errorf("re-apply after the upgrade: %s", r)
			}
		}
	})

	t.Run("broken chart and unreachable repositories fail one by one", func(t *testing.T) {
		bdir := t.TempDir()
		broken, _ := filepath.Abs(filepath.Join("testdata", "helm", "broken"))
		entries := fmt.Sprintf(`  - chart: %s
    release: broken
    namespace: hpc-bad
  - chart: batchq
    repo: %s
    version: 0.1.0
    release: refused
    namespace: hpc-bad
  - chart: batchq
    repo: %s
    version: 0.1.0
    release: silent
    namespace: hpc-bad
  - chart: batchq
    repo: %s
    version: 0.1.0
    release: untrusted
    namespace: hpc-bad
  - chart: batchq
    repo: %s
    version: 9.9.9
    caFile: %s
    release: noversion
    namespace: hpc-bad
  - chart: %s
    release: after
    namespace: hpc-after
    secretValues: {auth.token: env:BATCHQ_TOKEN}
`, broken, fx.refusedURL, fx.silentURL, fx.repoURL, fx.repoURL, fx.caFile, fx.chartDir)
		inv, path := helmInventory(t, cp, bdir, entries)
		res, err := a.ApplyAddons(ctx, inv.Addons)
		if err == nil {
			t.Fatal("ApplyAddons with a broken chart and bad repositories = nil error")
		}
		t.Logf("ApplyAddons error, as up and config addons print it:\n%v", err)
		msgs := strings.Split(err.Error(), "\n")
		want := []struct{ release, marker, why string }{
			{"broken", "release: broken", "parse error"},
			{"refused", "release: refused", "(the connection was refused or closed: is the URL an HTTPS service reachable from this host?)"},
			{"silent", "release: silent", "(no answer within 3s: is it reachable from this host?)"},
			{"untrusted", "release: untrusted", "give its PEM bundle as caFile:"},
			{"noversion", "release: noversion", "has no version 9.9.9 of batchq (it has 0.1.0)"},
		}
		if len(msgs) != len(want) {
			t.Errorf("ApplyAddons error has %d lines, want one per failed add-on (%d):\n%v", len(msgs), len(want), err)
		}
		for i, w := range want {
			if i >= len(msgs) {
				break
			}
			pos := fmt.Sprintf("%s:%d:5:", path, entryLine(t, path, w.marker))
			if !strings.HasPrefix(msgs[i], pos) || !strings.Contains(msgs[i], "hpc-bad/"+w.release) || !strings.Contains(msgs[i], w.why) {
				t.Errorf("error line %d = %q\nwant it to start with %s, name hpc-bad/%s and say %q", i, msgs[i], pos, w.release, w.why)
			}
		}
		if len(res) != 1 || res[0].Object != "release hpc-after/after" || res[0].Action != addons.Created {
			t.Errorf("ApplyAddons results = %v, want the add-on after the failures installed", res)
		}
		if revs := releaseRevisions(t, cp, "hpc-bad", "broken"); len(revs) != 0 {
			t.Errorf("the broken chart left release records %v", revs)
		}
	})

	t.Run("provisioner config addons --dry-run, then config addons", func(t *testing.T) {
		bin := buildProvisioner(t, t.TempDir())
		_, invPath := helmInventory(t, cp, dir, entries(5))
		run := func(args ...string) (string, error) {
			cmd := exec.Command(bin, append(args, "-f", invPath, "--state-dir", cp.dir)...)
			cmd.Env = append(os.Environ(), "LAB_BMC_PASSWORD=unused", "BATCHQ_TOKEN=tok-3f9a1c7e5b")
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		out, err := run("config", "addons", "--dry-run")
		if err != nil {
			t.Fatalf("config addons --dry-run: %v\n%s", err, out)
		}
		t.Logf("config addons --dry-run:\n%s", out)
		for _, want := range []string{"release hpc/local would be configured (chart batchq 0.1.0, revision 3)", "-  replicas: 3", "+  replicas: 5", "release hpc-oci/fromoci unchanged"} {
			if !strings.Contains(out, want) {
				t.Errorf("config addons --dry-run output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "tok-3f9a1c7e5b") {
			t.Errorf("config addons --dry-run printed the secret token:\n%s", out)
		}
		out, err = run("config", "addons")
		if err != nil {
			t.Fatalf("config addons: %v\n%s", err, out)
		}
		if !strings.Contains(out, "release hpc/local configured (chart batchq 0.1.0, revision 3)") {
			t.Errorf("config addons output:\n%s\nwant release hpc/local configured at revision 3", out)
		}
		if d, err := cp.admin.AppsV1().Deployments("hpc").Get(ctx, "local-controller", metav1.GetOptions{}); err != nil || *d.Spec.Replicas != 5 {
			t.Errorf("Deployment hpc/local-controller after config addons: %v, want replicas 5", err)
		}
	})
}
