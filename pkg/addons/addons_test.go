package addons

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	t.Parallel()
	in := `# leading comment
apiVersion: v1
kind: Namespace
metadata:
  name: a
---
---
{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "a"}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: c
`
	objs, err := Parse("site.yaml", []byte(in))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.Ref())
	}
	want := []string{"Namespace a", "ConfigMap a/b", "DaemonSet c"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Parse objects (-want +got):\n%s", diff)
	}
	if objs[2].Doc != 3 {
		t.Errorf("DaemonSet document = %d, want 3 (empty documents do not count)", objs[2].Doc)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"syntax", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\nkind: [x\n", "site.yaml: document 2"},
		{"no kind", "apiVersion: v1\nmetadata:\n  name: a\n", "document 1 ( a): missing kind"},
		{"no name", "apiVersion: v1\nkind: ConfigMap\n", "missing metadata.name"},
		{"list", "apiVersion: v1\nkind: ConfigMapList\nmetadata:\n  name: l\n", "lists are not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("site.yaml", []byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) = %v, want an error containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestLoadReportsEveryFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad1 := filepath.Join(dir, "one.yaml")
	bad2 := filepath.Join(dir, "two.yaml")
	os.WriteFile(bad1, []byte("kind: [\n"), 0o644)
	os.WriteFile(bad2, []byte("apiVersion: v1\nkind: ConfigMap\n"), 0o644)
	_, err := LoadFiles([]string{bad1, bad2, filepath.Join(dir, "missing.yaml")})
	for _, want := range []string{bad1, bad2, "missing.yaml"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadFiles = %v, want it to name %s", err, want)
		}
	}
}

func TestNewNeedsREST(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}); err == nil {
		t.Error("New(Config{}) = nil error, want one")
	}
}
