package nodeinit

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/kubeadm"
)

// The cloud-config Slipway renders for a first control plane, applied as
// cloud-init would: every file with its mode and content, then runcmd.
func TestApplyRenderedCloudConfig(t *testing.T) {
	t.Parallel()
	nc := kubeadm.NodeConfig{
		Node:         inventory.Node{Name: "cp-01", IP: netip.MustParseAddr("10.77.0.10"), Role: inventory.RoleControlPlane},
		Kind:         kubeadm.KindInit,
		Kubeadm:      []byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n"),
		PKIFiles:     []kubeadm.File{{Path: "ca.crt", Data: []byte("CERT\n")}, {Path: "etcd/ca.key", Data: []byte("KEY"), Secret: true}},
		PhoneHomeURL: "http://10.77.0.1:8080",
		PodNetwork:   kubeadm.PodNetworkFlat,
	}
	doc, err := nc.CloudConfig()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := ParseCloudConfig(doc)
	if err != nil {
		t.Fatalf("ParseCloudConfig(rendered): %v\n%s", err, doc)
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	script, err := cc.ApplyFiles(root)
	if err != nil {
		t.Fatalf("ApplyFiles: %v", err)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
		want string
	}{
		{kubeadm.NodeKubeadmConfig, 0o600, string(nc.Kubeadm)},
		{"/etc/kubernetes/pki/ca.crt", 0o644, "CERT\n"},
		{"/etc/kubernetes/pki/etcd/ca.key", 0o600, "KEY"},
		{"/etc/hostname", 0o644, "cp-01\n"},
	} {
		p := filepath.Join(root, f.path)
		b, err := os.ReadFile(p)
		fi, serr := os.Stat(p)
		if err != nil || serr != nil {
			t.Errorf("%s: %v %v", f.path, err, serr)
			continue
		}
		if string(b) != f.want || fi.Mode().Perm() != f.mode {
			t.Errorf("%s = %q mode %v, want %q mode %v", f.path, b, fi.Mode().Perm(), f.want, f.mode)
		}
	}
	steps, err := os.ReadFile(filepath.Join(root, kubeadm.NodeJoinScript))
	if err != nil || !strings.Contains(string(steps), "kubeadm init --config") || !strings.Contains(string(steps), "slipway-flatnet") {
		t.Errorf("join script %s: %v\n%s", kubeadm.NodeJoinScript, err, steps)
	}
	run, _ := os.ReadFile(script)
	if want := "#!/bin/sh\n'/bin/sh' '" + kubeadm.NodeJoinScript + "'\n"; string(run) != want {
		t.Errorf("runcmd script = %q, want %q", run, want)
	}
}

func TestParseCloudConfig(t *testing.T) {
	t.Parallel()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("zipped"))
	zw.Close()
	doc := "#cloud-config\nwrite_files:\n- path: /a\n  encoding: b64\n  content: " + base64.StdEncoding.EncodeToString([]byte("hello")) +
		"\n- path: /b\n  encoding: gz+b64\n  content: " + base64.StdEncoding.EncodeToString(gz.Bytes()) +
		"\n  permissions: '0640'\nruncmd:\n- echo one two\n- [ls, -l, \"it's\"]\n"
	cc, err := ParseCloudConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	script, err := cc.ApplyFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "a")); string(b) != "hello" {
		t.Errorf("b64 file = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "b")); string(b) != "zipped" {
		t.Errorf("gz+b64 file = %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(root, "b")); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode of /b = %v, want 0640", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(script); string(b) != "#!/bin/sh\necho one two\n'ls' '-l' 'it'\"'\"'s'\n" {
		t.Errorf("runcmd script = %q", b)
	}

	for name, bad := range map[string]string{
		"no header":        "write_files: []\n",
		"unknown key":      "#cloud-config\npackages: [curl]\n",
		"relative path":    "#cloud-config\nwrite_files:\n- path: etc/x\n",
		"bad permissions":  "#cloud-config\nwrite_files:\n- path: /x\n  permissions: rw\n",
		"unknown encoding": "#cloud-config\nwrite_files:\n- path: /x\n  encoding: rot13\n",
		"defer":            "#cloud-config\nwrite_files:\n- path: /x\n  defer: true\n",
		"runcmd object":    "#cloud-config\nruncmd:\n- {a: b}\n",
	} {
		if _, err := ParseCloudConfig([]byte(bad)); err == nil {
			t.Errorf("ParseCloudConfig(%s) = nil error", name)
		}
	}
}
