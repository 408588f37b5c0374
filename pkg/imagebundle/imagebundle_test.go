package imagebundle

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/slipway-dev/slipway/internal/testenv"
)

var epoch = time.Unix(1700000000, 0).UTC()

func writeProgram(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func layerEntries(t *testing.T, spec Spec) []string {
	t.Helper()
	img, err := FromFiles(spec)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		e := h.Name
		if h.Typeflag == tar.TypeSymlink {
			e += " -> " + h.Linkname
		}
		if !h.ModTime.Equal(epoch) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("layer entry %s: mtime %v uid %d gid %d, want %v and root", h.Name, h.ModTime, h.Uid, h.Gid, epoch)
		}
		out = append(out, e)
	}
}

func TestFromFilesIsDeterministic(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	prog := writeProgram(t, dir, "kube-scheduler", "binary")
	spec := Spec{Files: []File{{Path: "/usr/local/bin/kube-scheduler", Source: prog}, {Path: "/bin", Link: "usr/bin"}}, Epoch: epoch}
	want := []string{"bin -> usr/bin", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/kube-scheduler"}
	if d := cmp.Diff(want, layerEntries(t, spec)); d != "" {
		t.Errorf("layer entries (-want +got):\n%s", d)
	}
	a, _ := FromFiles(spec)
	b, _ := FromFiles(spec)
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("two builds of the same spec: digests %s and %s", da, db)
	}
	cf, _ := a.ConfigFile()
	if cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Time.Equal(epoch) || !slices.Equal(cf.Config.Env, []string{DefaultPath}) {
		t.Errorf("config = %s/%s created %v env %v", cf.OS, cf.Architecture, cf.Created, cf.Config.Env)
	}
}

func TestWriteAndParseIndex(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	var images []Image
	for _, ref := range []string{"registry.k8s.io/pause:3.10.2", "registry.k8s.io/kube-apiserver:v1.37.2"} {
		prog := writeProgram(t, src, Component(ref), "program "+ref)
		spec, err := binarySpec(ref, BinaryOptions{BinDirs: []string{src}, Epoch: epoch})
		if err != nil {
			t.Fatal(err)
		}
		_ = prog
		img, err := FromFiles(spec)
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, Image{Ref: ref, Image: img, Roles: Roles(ref)})
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	ixA, err := Write(dirA, "v1.37.2", images, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Write(dirB, "v1.37.2", images, epoch); err != nil {
		t.Fatal(err)
	}
	for _, e := range ixA.Images {
		a, _ := os.ReadFile(filepath.Join(dirA, e.File))
		b, _ := os.ReadFile(filepath.Join(dirB, e.File))
		if string(a) != string(b) {
			t.Errorf("archive %s differs between two writes", e.File)
		}
	}
	for file, want := range map[string][]string{
		IndexAll:          {"registry.k8s.io/pause:3.10.2", "registry.k8s.io/kube-apiserver:v1.37.2"},
		IndexControlPlane: {"registry.k8s.io/pause:3.10.2", "registry.k8s.io/kube-apiserver:v1.37.2"},
		IndexWorker:       {"registry.k8s.io/pause:3.10.2"},
	} {
		b, err := os.ReadFile(filepath.Join(dirA, file))
		if err != nil {
			t.Fatal(err)
		}
		ix, err := ParseIndex(b)
		if err != nil {
			t.Fatalf("ParseIndex(%s): %v", file, err)
		}
		var got []string
		for _, e := range ix.Images {
			got = append(got, e.Ref)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s refs (-want +got):\n%s", file, d)
		}
	}
	// The archive is an OCI layout whose index names the image the way
	// containerd's importer reads it.
	e := ixA.Images[0]
	lp := filepath.Join(t.TempDir(), "layout")
	untar(t, filepath.Join(dirA, e.File), lp)
	ii, err := layout.ImageIndexFromPath(lp)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := ii.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations[annotationContainerdName] != e.Ref ||
		im.Manifests[0].Annotations[annotationRefName] != "3.10.2" || im.Manifests[0].Digest.String() != e.ImageDigest ||
		im.Manifests[0].Platform == nil || im.Manifests[0].Platform.Architecture != "amd64" {
		t.Errorf("oci index of %s = %+v", e.File, im.Manifests)
	}
}

func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, h.Name)
		if h.Typeflag == tar.TypeDir {
			os.MkdirAll(p, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		b, _ := io.ReadAll(tr)
		os.WriteFile(p, b, 0o644)
	}
}

func TestParseIndexRefusesBadEntries(t *testing.T) {
	t.Parallel()
	for name, doc := range map[string]string{
		"unknown field": `{"apiVersion":"slipway.dev/v1alpha1","kind":"ImageBundle","images":[],"extra":1}`,
		"wrong kind":    `{"apiVersion":"v1","kind":"Pod","images":[]}`,
		"escaping file": `{"apiVersion":"slipway.dev/v1alpha1","kind":"ImageBundle","images":[{"ref":"a","file":"../x","digest":"sha256:` + strings.Repeat("0", 64) + `","size":1}]}`,
		"bad digest":    `{"apiVersion":"slipway.dev/v1alpha1","kind":"ImageBundle","images":[{"ref":"a","file":"x","digest":"md5:1","size":1}]}`,
	} {
		if _, err := ParseIndex([]byte(doc)); err == nil {
			t.Errorf("ParseIndex(%s) = nil error", name)
		}
	}
}

// RootFiles takes a program from a Debian-like root with its libraries,
// its ELF interpreter and every link on the way. The program and its
// libraries are this machine's own (Debian 12).
func TestRootFiles(t *testing.T) {
	t.Parallel()
	testenv.RequireFiles(t, "/usr/bin/true", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "usr/lib/x86_64-linux-gnu", "usr/lib64"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	for _, d := range []string{"bin", "lib", "lib64"} {
		os.Symlink("usr/"+d, filepath.Join(root, d))
	}
	cp := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(root, dst), b, 0o755)
	}
	cp("/usr/bin/true", "usr/bin/true")
	cp("/usr/lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libc.so.6")
	cp("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
	os.Symlink("../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", filepath.Join(root, "usr/lib64/ld-linux-x86-64.so.2"))
	os.Symlink("true", filepath.Join(root, "usr/bin/alias"))

	files, err := RootFiles(root, "/bin/alias")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		if f.Link != "" {
			got = append(got, f.Path+" -> "+f.Link)
		} else {
			got = append(got, f.Path)
		}
	}
	want := []string{
		"/bin -> usr/bin",
		"/lib64 -> usr/lib64",
		"/usr/bin/alias -> true",
		"/usr/bin/true",
		"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"/usr/lib/x86_64-linux-gnu/libc.so.6",
		"/usr/lib64/ld-linux-x86-64.so.2 -> ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("RootFiles(/bin/alias) (-want +got):\n%s", d)
	}
	if _, err := RootFiles(root, "/usr/bin/missing"); err == nil {
		t.Error("RootFiles(missing) = nil error")
	}
}

func TestComponentAndRoles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ref, comp string
		worker    bool
	}{
		{"registry.k8s.io/kube-apiserver:v1.37.2", "kube-apiserver", false},
		{"registry.k8s.io/coredns/coredns:v1.14.6", "coredns", true},
		{"registry.k8s.io/pause:3.10.2", "pause", true},
		{"registry.k8s.io/kube-proxy:v1.37.2", "kube-proxy", true},
		{"registry.k8s.io/etcd:3.7.0-0", "etcd", false},
		{"localhost:5000/etcd@sha256:abc", "etcd", false},
	} {
		if got := Component(tc.ref); got != tc.comp {
			t.Errorf("Component(%q) = %q, want %q", tc.ref, got, tc.comp)
		}
		if got := slices.Contains(Roles(tc.ref), RoleWorker); got != tc.worker {
			t.Errorf("Roles(%q) has worker = %v, want %v", tc.ref, got, tc.worker)
		}
	}
}

// KubeadmImages asks the real kubeadm (test/tools, make tools) and gets the
// images of v1.37.2 by the names kubeadm pulls.
func TestKubeadmImages(t *testing.T) {
	t.Parallel()
	kubeadm, _ := filepath.Abs("../../test/tools/bin/kubeadm")
	testenv.RequireFiles(t, kubeadm)
	got, err := KubeadmImages(context.Background(), kubeadm, "v1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(kubeadm, "config", "images", "list", "--kubernetes-version", "v1.37.2").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Fields(string(out))
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("KubeadmImages (-want +got):\n%s", d)
	}
	b, _ := json.Marshal(got)
	if !strings.Contains(string(b), "registry.k8s.io/pause:3.10.2") {
		t.Errorf("KubeadmImages = %s, want registry.k8s.io/pause:3.10.2 among them", b)
	}
}
