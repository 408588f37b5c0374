package addons

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestUnifiedDiff(t *testing.T) {
	t.Parallel()
	a := "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\n"
	b := "a\nb\nC\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\n"
	want := `--- obj
+++ obj
@@ -1,6 +1,6 @@
 a
 b
-c
+C
 d
 e
 f
@@ -10,3 +10,4 @@
 j
 k
 l
+m
`
	if diff := cmp.Diff(want, unifiedDiff("obj", a, b)); diff != "" {
		t.Errorf("unifiedDiff (-want +got):\n%s", diff)
	}
	if got := unifiedDiff("obj", a, a); got != "" {
		t.Errorf("unifiedDiff of equal texts = %q, want empty", got)
	}
	if got := unifiedDiff("obj", "", "x\n"); !strings.HasPrefix(got, "--- (absent)\n+++ obj\n@@ -0,0 +1,1 @@\n+x\n") {
		t.Errorf("unifiedDiff of a new object = %q", got)
	}
}

func TestManifestDiffRedactsSecrets(t *testing.T) {
	t.Parallel()
	old := `---
# Source: c/templates/secret.yaml
apiVersion: v1
kind: Secret
metadata:
  name: auth
  namespace: ns
stringData:
  TOKEN: "old-token-value"
  USER: "admin"
---
# Source: c/templates/deploy.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ctl
  namespace: ns
spec:
  replicas: 1
`
	neu := strings.Replace(strings.Replace(old, "old-token-value", "new-token-value", 1), "replicas: 1", "replicas: 2", 1)
	d := manifestDiff(old, neu)
	for _, secret := range []string{"old-token-value", "new-token-value"} {
		if strings.Contains(d, secret) {
			t.Errorf("manifestDiff shows a Secret value %q:\n%s", secret, d)
		}
	}
	for _, want := range []string{"-  replicas: 1", "+  replicas: 2", "+++ Deployment ns/ctl", "-  TOKEN: '[redacted]'", "+  TOKEN: '[redacted, changed]'"} {
		if !strings.Contains(d, want) {
			t.Errorf("manifestDiff lacks %q:\n%s", want, d)
		}
	}
	if !strings.Contains(d, "   USER: '[redacted]'") {
		t.Errorf("manifestDiff does not show the unchanged Secret key USER as redacted context:\n%s", d)
	}
	if got := manifestDiff(old, old); got != "" {
		t.Errorf("manifestDiff of the same manifest = %q, want empty", got)
	}
}

func TestObjectDiffDropsBookkeeping(t *testing.T) {
	t.Parallel()
	before := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "c", "namespace": "n", "resourceVersion": "41", "uid": "u-1", "creationTimestamp": "2026-01-01T00:00:00Z",
			"managedFields": []any{map[string]any{"manager": "slipway"}}},
		"data": map[string]any{"k": "v1"},
	}}
	after := before.DeepCopy()
	after.SetResourceVersion("42")
	after.Object["data"] = map[string]any{"k": "v2"}
	d := objectDiff(before, after)
	for _, noise := range []string{"resourceVersion", "uid", "managedFields", "creationTimestamp"} {
		if strings.Contains(d, noise) {
			t.Errorf("objectDiff shows %s:\n%s", noise, d)
		}
	}
	if !strings.Contains(d, "-  k: v1\n+  k: v2\n") {
		t.Errorf("objectDiff lacks the data change:\n%s", d)
	}
}
