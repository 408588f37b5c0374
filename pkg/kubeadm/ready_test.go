package kubeadm

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestReadyListOneListPerRefresh(t *testing.T) {
	t.Parallel()
	node := func(name string, ready corev1.ConditionStatus) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}}}
	}
	client := fake.NewClientset(node("a", corev1.ConditionTrue), node("b", corev1.ConditionFalse))
	lists := 0
	client.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		lists++
		return false, nil, nil
	})
	l := NewReadyList(client, time.Hour)
	got := map[string]bool{}
	for _, n := range []string{"a", "b", "c", "a", "b"} {
		ok, err := l.Ready(t.Context(), n)
		if err != nil {
			t.Fatalf("Ready(%s): %v", n, err)
		}
		got[n] = ok
	}
	if diff := cmp.Diff(map[string]bool{"a": true, "b": false, "c": false}, got); diff != "" {
		t.Errorf("Ready (-want +got):\n%s", diff)
	}
	if lists != 1 {
		t.Errorf("five Ready calls made %d LIST requests, want 1 within maxAge", lists)
	}
}
