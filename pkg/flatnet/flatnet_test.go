package flatnet

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/slipway-dev/slipway/internal/golden"
)

func node(name, podCIDR, ip string) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if podCIDR != "" {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = podCIDR, []string{podCIDR}
	}
	if ip != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
	}
	return n
}

func TestConflistGolden(t *testing.T) {
	t.Parallel()
	b, err := Conflist([]netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "conflist.golden"), b)
	if _, err := Conflist(nil); err == nil {
		t.Error("Conflist(nil) = nil error, want one")
	}
}

func TestWant(t *testing.T) {
	t.Parallel()
	nodes := []corev1.Node{
		node("cp", "10.244.0.0/24", "10.77.0.10"),
		node("w1", "10.244.1.0/24", "10.77.0.11"),
		node("w2", "", "10.77.0.12"),           // no pod CIDR yet
		node("w3", "10.244.3.0/24", ""),        // no address yet
		node("w4", "10.244.4.7/24", "fd77::4"), // address of the other family only
	}
	got := Want(nodes, "w1")
	want := Routes{netip.MustParsePrefix("10.244.0.0/24"): netip.MustParseAddr("10.77.0.10")}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("Want(nodes, w1) (-want +got):\n%s", d)
	}
}

type fakeTable struct {
	routes Routes
	calls  []string
	fail   error
}

func (f *fakeTable) List(context.Context) (Routes, error) {
	out := Routes{}
	for k, v := range f.routes {
		out[k] = v
	}
	return out, nil
}

func (f *fakeTable) Replace(_ context.Context, dst netip.Prefix, via netip.Addr) error {
	if f.fail != nil {
		return f.fail
	}
	f.calls = append(f.calls, "replace "+dst.String()+" via "+via.String())
	f.routes[dst] = via
	return nil
}

func (f *fakeTable) Delete(_ context.Context, dst netip.Prefix) error {
	f.calls = append(f.calls, "delete "+dst.String())
	delete(f.routes, dst)
	return nil
}

func TestSync(t *testing.T) {
	t.Parallel()
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	table := &fakeTable{routes: Routes{
		p("10.244.0.0/24"): a("10.77.0.10"), // kept
		p("10.244.2.0/24"): a("10.77.0.99"), // node moved: replaced
		p("10.244.9.0/24"): a("10.77.0.19"), // node gone: deleted
	}}
	want := Routes{p("10.244.0.0/24"): a("10.77.0.10"), p("10.244.2.0/24"): a("10.77.0.12"), p("10.244.3.0/24"): a("10.77.0.13")}
	changes, err := Sync(context.Background(), table, want)
	if err != nil {
		t.Fatal(err)
	}
	wantCalls := []string{"replace 10.244.2.0/24 via 10.77.0.12", "replace 10.244.3.0/24 via 10.77.0.13", "delete 10.244.9.0/24"}
	if d := cmp.Diff(wantCalls, table.calls); d != "" {
		t.Errorf("Sync calls (-want +got):\n%s", d)
	}
	if len(changes) != 3 {
		t.Errorf("Sync changes = %q, want 3", changes)
	}
	// A second pass changes nothing.
	table.calls = nil
	if changes, err := Sync(context.Background(), table, want); err != nil || len(changes) != 0 || len(table.calls) != 0 {
		t.Errorf("second Sync = %q, %v (calls %q), want no change", changes, err, table.calls)
	}
	table.fail = errors.New("boom")
	if _, err := Sync(context.Background(), table, Routes{p("10.244.5.0/24"): a("10.77.0.15")}); err == nil {
		t.Error("Sync with a failing table = nil error")
	}
}

func TestParseRoutes(t *testing.T) {
	t.Parallel()
	got := ParseRoutes("10.244.0.0/24 via 10.77.0.10 dev ens3 proto 180 \n10.244.5.0/24 dev cni0 proto kernel scope link src 10.244.5.1\ngarbage\n")
	want := Routes{netip.MustParsePrefix("10.244.0.0/24"): netip.MustParseAddr("10.77.0.10")}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("ParseRoutes (-want +got):\n%s", d)
	}
}

func TestMasqueradeRulesGolden(t *testing.T) {
	t.Parallel()
	got := MasqueradeRules([]netip.Prefix{netip.MustParsePrefix("10.244.0.0/24"), netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10::/64")})
	golden.Check(t, filepath.Join("testdata", "masquerade.golden"), []byte(got))
}

func TestEnsureRBAC(t *testing.T) {
	t.Parallel()
	c := fake.NewClientset()
	ctx := context.Background()
	for i := 0; i < 2; i++ { // idempotent
		if err := EnsureRBAC(ctx, c); err != nil {
			t.Fatalf("EnsureRBAC (call %d): %v", i+1, err)
		}
	}
	role, err := c.RbacV1().ClusterRoles().Get(ctx, RBACName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"get", "list", "watch"}, role.Rules[0].Verbs); d != "" || role.Rules[0].Resources[0] != "nodes" {
		t.Errorf("clusterrole rules = %+v", role.Rules)
	}
	b, err := c.RbacV1().ClusterRoleBindings().Get(ctx, RBACName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Subjects) != 1 || b.Subjects[0].Kind != "Group" || b.Subjects[0].Name != "system:nodes" || b.RoleRef.Name != RBACName {
		t.Errorf("clusterrolebinding = %+v", b)
	}
}
