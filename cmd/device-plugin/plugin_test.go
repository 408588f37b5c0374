package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/deviceplugin"
	"github.com/slipway-dev/slipway/pkg/deviceplugin/kubeletstub"
	"github.com/slipway-dev/slipway/pkg/devices"
)

// lockedBuffer is a bytes.Buffer safe for the plugin's log writers and the
// test reading it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// pluginSocketDir returns a temp dir short enough for unix sockets.
func pluginSocketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// copyFixture copies a pkg/devices fixture tree (with its symlinks) so a
// test can inject faults into it.
func copyFixture(t testing.TB, name string) string {
	t.Helper()
	cp := testenv.RequireCommands(t, "cp")["cp"]
	dst := filepath.Join(t.TempDir(), name)
	src := filepath.Join("..", "..", "pkg", "devices", "testdata", name)
	if out, err := exec.Command(cp, "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", src, dst, err, out)
	}
	return dst
}

// exitedEarly fails the test if run has returned (its code on code, which
// is put back for the test's own stop): a failed start fails at once,
// saying how, instead of a wait running out.
func exitedEarly(t testing.TB, code chan int, log *lockedBuffer) {
	t.Helper()
	select {
	case c := <-code:
		code <- c
		t.Fatalf("run returned %d before it was serving:\n%s", c, log.String())
	default:
	}
}

// runCtx is a context for waits on the command: it ends after d, or when
// run returns, with its exit code as the cause.
func runCtx(t testing.TB, code chan int, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	cctx, ccancel := context.WithCancelCause(ctx)
	t.Cleanup(func() { ccancel(nil); cancel() })
	go func() {
		select {
		case c := <-code:
			code <- c
			ccancel(fmt.Errorf("run returned %d", c))
		case <-cctx.Done():
		}
	}()
	return cctx
}

// servedAddr waits for the plugin's "serving metrics and health" log line
// and returns the address in it: the test asks for port 0 and reads what
// was bound, never probing for a free port. It fails at once if run
// returns first.
func servedAddr(t testing.TB, log *lockedBuffer, code chan int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		exitedEarly(t, code, log)
		for line := range strings.Lines(log.String()) {
			if !strings.Contains(line, "serving metrics and health") {
				continue
			}
			if _, rest, ok := strings.Cut(line, "addr="); ok {
				return strings.Fields(rest)[0]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no \"serving metrics and health\" line in the log:\n%s", log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const testConfig = `apiVersion: slipway.dev/v1alpha1
kind: DevicePluginConfig
resources:
  - name: %GPU%
    selector:
      kinds: [gpu]
  - name: slipway.dev/hca
    selector:
      kinds: [hca]
      linkLayers: [InfiniBand]
health:
  pollInterval: 50ms
  recoveryPeriod: 100ms
`

func writeConfig(t testing.TB, path, gpuResource string) {
	t.Helper()
	// Write and rename, as a ConfigMap update or an editor does.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.ReplaceAll(testConfig, "%GPU%", gpuResource)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func healthOf(devs []*pluginapi.Device, id string) string {
	for _, d := range devs {
		if d.GetID() == id {
			return d.GetHealth()
		}
	}
	return ""
}

// TestPluginServesDGX runs the command on a copy of the DGX H100 fixture
// against the kubelet stub: registration of every resource, /healthz, a
// kubelet restart (one Register per resource, /healthz 200 again), a
// port that goes down and comes back through the real health monitor, a
// config reload that renames a resource, a GPU unplugged and picked up on
// SIGHUP, and a clean stop.
func TestPluginServesDGX(t *testing.T) {
	root := copyFixture(t, "dgx-h100")
	dir := pluginSocketDir(t)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, cfgPath, "nvidia.com/gpu")
	stub, err := kubeletstub.Start(kubeletstub.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stub.Stop() }() // the stub of the kubelet restart below
	var stdout, stderr lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--root", root, "--nvml", "off", "--kubelet-dir", dir, "--metrics-addr", "127.0.0.1:0",
			"--config", cfgPath, "--rescan-interval", "0", "--log-level", "debug"}, &stdout, &stderr)
	}()
	defer func() {
		if t.Failed() || os.Getenv("DP_LOG") != "" {
			t.Logf("plugin log:\n%s", stderr.String())
		}
	}()
	wctx := runCtx(t, code, 20*time.Second)
	addr := servedAddr(t, &stderr, code)

	for _, tc := range []struct {
		resource string
		n        int
	}{{"nvidia.com/gpu", 8}, {"slipway.dev/hca", 8}} {
		_, devs, err := stub.WaitPlugin(wctx, tc.resource)
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) != tc.n {
			t.Errorf("%s: ListAndWatch sent %d devices, want %d", tc.resource, len(devs), tc.n)
		}
	}
	// /healthz turns 200 once both are registered.
	waitHealthz := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := http.Get("http://" + addr + "/healthz")
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: GET /healthz = %d %q, want 200", what, resp.StatusCode, body)
				}
			} else if time.Now().After(deadline) {
				t.Fatalf("%s: GET /healthz: %v", what, err)
			}
			exitedEarly(t, code, &stderr)
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitHealthz("at start")

	// The kubelet restarts as systemd restarts it (killed, kubelet.sock
	// left behind; its start deletes our sockets): each resource
	// registers once with the new kubelet and /healthz is 200 again.
	stub.Kill()
	if stub, err = kubeletstub.Start(kubeletstub.Config{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"nvidia.com/gpu", "slipway.dev/hca"} {
		if _, _, err := stub.WaitPlugin(wctx, r); err != nil {
			t.Fatalf("after a kubelet restart: %v", err)
		}
	}
	waitHealthz("after a kubelet restart")
	time.Sleep(300 * time.Millisecond) // any second Register would be in by now
	for _, r := range []string{"nvidia.com/gpu", "slipway.dev/hca"} {
		if n, refused := stub.Attempts(r), stub.Refused(r); n != 1 || len(refused) != 0 {
			t.Errorf("after a kubelet restart %s made %d Register calls (refused: %q), want 1", r, n, refused)
		}
	}

	// mlx5_0's port goes down, then comes back.
	state := filepath.Join(root, "sys", "class", "infiniband", "mlx5_0", "ports", "1", "state")
	if err := os.WriteFile(state, []byte("1: DOWN\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := stub.WaitDevices(wctx, "slipway.dev/hca", func(ds []*pluginapi.Device) bool {
		return healthOf(ds, "mlx5_0") == pluginapi.Unhealthy
	}); err != nil {
		t.Fatalf("mlx5_0 not withdrawn after its port went down: %v", err)
	}
	if err := os.WriteFile(state, []byte("4: ACTIVE\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := stub.WaitDevices(wctx, "slipway.dev/hca", func(ds []*pluginapi.Device) bool {
		return healthOf(ds, "mlx5_0") == pluginapi.Healthy
	}); err != nil {
		t.Fatalf("mlx5_0 not back after its port came up: %v", err)
	}

	// Renaming the GPU resource in the config moves the GPUs; the HCA
	// resource keeps its registration.
	writeConfig(t, cfgPath, "nvidia.com/h100")
	if _, devs, err := stub.WaitPlugin(wctx, "nvidia.com/h100"); err != nil || len(devs) != 8 {
		t.Fatalf("after config reload: nvidia.com/h100 has %d devices, %v; want 8", len(devs), err)
	}
	oldSocks := deviceplugin.SocketGlob(dir, "nvidia.com/gpu")
	for deadline := time.Now().Add(10 * time.Second); ; {
		if m, _ := filepath.Glob(oldSocks); len(m) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists after the resource was renamed", oldSocks)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := stub.Registrations("slipway.dev/hca"); n != 1 {
		t.Errorf("slipway.dev/hca registered %d times, want 1: a config change must not restart unaffected resources", n)
	}

	// Hot-unplug a GPU; with --rescan-interval 0 only SIGHUP rediscovers.
	if err := os.Remove(filepath.Join(root, "sys", "bus", "pci", "devices", "0000:1b:00.0")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, err := stub.WaitDevices(wctx, "nvidia.com/h100", func(ds []*pluginapi.Device) bool { return len(ds) == 7 }); err != nil {
		t.Fatalf("after a GPU was unplugged and SIGHUP sent, nvidia.com/h100 does not list 7 GPUs: %v", err)
	}

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("run() = %d after cancel, want 0", c)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "kubelet.sock" {
			t.Errorf("%s left in the kubelet dir after stop", e.Name())
		}
	}
}

// TestPluginBadFlags checks that flag mistakes are refused before serving.
func TestPluginBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--kubelet-dir", ""},
		{"--rescan-interval", "-1s"},
		{"--pair-resource", "slipway.dev/p", "--pair-hca-resource", "nvidia.com/gpu"},
		{"--nvml", "maybe"},
		{"--config", "/nonexistent/config.yaml"},
		{"--node-labels", "--node-name="},
	} {
		var stdout, stderr bytes.Buffer
		if c := run(context.Background(), args, &stdout, &stderr); c == 0 {
			t.Errorf("run(%q) = 0, want a failure", args)
		}
	}
}

// TestDeploymentMatchesFlags checks that images/device-plugin is consistent
// with the command: every DaemonSet argument is a flag of this binary, the
// probes and metrics port match --metrics-addr, the kubelet dir, host root,
// CDI dir and config file are mounted where the flags say, the ConfigMap's
// config loads, and the kustomization and Containerfile point at what exists.
func TestDeploymentMatchesFlags(t *testing.T) {
	dir := filepath.Join("..", "..", "images", "device-plugin")
	raw, err := os.ReadFile(filepath.Join(dir, "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := sigsyaml.UnmarshalStrict(raw, &ds); err != nil {
		t.Fatalf("decode daemonset.yaml: %v", err)
	}
	if len(ds.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("daemonset.yaml has %d containers, want 1", len(ds.Spec.Template.Spec.Containers))
	}
	c := ds.Spec.Template.Spec.Containers[0]
	root := newRootCmd(&globals{stdout: io.Discard, stderr: io.Discard})
	if err := root.ParseFlags(c.Args); err != nil {
		t.Fatalf("daemonset.yaml args %q do not parse as device-plugin flags: %v", c.Args, err)
	}
	flag := func(name string) string {
		f := root.Flags().Lookup(name)
		if f == nil {
			t.Fatalf("no flag --%s", name)
		}
		return f.Value.String()
	}
	if ds.Spec.Template.Spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName = %q, want system-node-critical", ds.Spec.Template.Spec.PriorityClassName)
	}

	_, port, err := net.SplitHostPort(flag("metrics-addr"))
	if err != nil {
		t.Fatalf("--metrics-addr %q: %v", flag("metrics-addr"), err)
	}
	var metricsPort int32
	for _, p := range c.Ports {
		if p.Name == "metrics" {
			metricsPort = p.ContainerPort
		}
	}
	if fmt.Sprint(metricsPort) != port {
		t.Errorf("containerPort metrics = %d, want %s from --metrics-addr", metricsPort, port)
	}
	for name, pr := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != "/healthz" || pr.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe = %+v, want GET /healthz on port metrics", name, pr)
		}
	}
	if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("container resources %+v, want memory requests and limits", c.Resources)
	}

	volumes := map[string]corev1.Volume{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		volumes[v.Name] = v
	}
	mountOf := func(path string) (corev1.VolumeMount, corev1.Volume) {
		t.Helper()
		for _, m := range c.VolumeMounts {
			if m.MountPath == path {
				return m, volumes[m.Name]
			}
		}
		t.Fatalf("nothing is mounted at %s", path)
		return corev1.VolumeMount{}, corev1.Volume{}
	}
	if _, v := mountOf(flag("kubelet-dir")); v.HostPath == nil || v.HostPath.Path != flag("kubelet-dir") {
		t.Errorf("--kubelet-dir %s is mounted from %+v, want the same host path", flag("kubelet-dir"), v.VolumeSource)
	}
	if m, v := mountOf(flag("root")); v.HostPath == nil || v.HostPath.Path != "/" || !m.ReadOnly {
		t.Errorf("--root %s is mounted from %+v (read-only %v), want host / read-only", flag("root"), v.VolumeSource, m.ReadOnly)
	}
	if _, v := mountOf(flag("cdi-dir")); v.HostPath == nil || v.HostPath.Path != flag("cdi-dir") {
		t.Errorf("--cdi-dir %s is mounted from %+v, want the same host path", flag("cdi-dir"), v.VolumeSource)
	}
	cfgFlag := flag("config")
	_, v := mountOf(filepath.Dir(cfgFlag))
	if v.ConfigMap == nil {
		t.Fatalf("--config %s: its directory is mounted from %+v, want a ConfigMap", cfgFlag, v.VolumeSource)
	}

	raw, err = os.ReadFile(filepath.Join(dir, "configmap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := sigsyaml.UnmarshalStrict(raw, &cm); err != nil {
		t.Fatalf("decode configmap.yaml: %v", err)
	}
	if cm.Name != v.ConfigMap.Name {
		t.Errorf("ConfigMap is %q, the DaemonSet mounts %q", cm.Name, v.ConfigMap.Name)
	}
	data, ok := cm.Data[filepath.Base(cfgFlag)]
	if !ok {
		t.Fatalf("ConfigMap has no key %s (from --config %s)", filepath.Base(cfgFlag), cfgFlag)
	}
	cfg, err := devices.ParseConfig([]byte(data))
	if err != nil {
		t.Fatalf("ConfigMap config.yaml: %v", err)
	}
	if diff := cmp.Diff(devices.DefaultConfig().Resources, cfg.Resources); diff != "" {
		t.Errorf("ConfigMap resources differ from the built-in defaults (-want +got):\n%s", diff)
	}

	kust, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
		Images    []struct {
			Name string `json:"name"`
		} `json:"images"`
	}
	if err := sigsyaml.Unmarshal(kust, &k); err != nil {
		t.Fatalf("decode kustomization.yaml: %v", err)
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
			t.Errorf("kustomization resource %s: %v", r, err)
		}
	}
	if len(k.Images) != 1 || !strings.HasPrefix(c.Image, k.Images[0].Name+":") {
		t.Errorf("kustomization images %+v do not name the DaemonSet's image %s", k.Images, c.Image)
	}

	checkRBAC(t, dir, ds)
	// Nodes switched to DRA (dra/daemonset.yaml selects them) never run
	// this DaemonSet: a device is served through one API only.
	notDRA := false
	if a := ds.Spec.Template.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			for _, e := range term.MatchExpressions {
				if e.Key == "node.slipway.dev/dra" && e.Operator == corev1.NodeSelectorOpNotIn && slices.Equal(e.Values, []string{"true"}) {
					notDRA = true
				}
			}
		}
	}
	if !notDRA {
		t.Error("daemonset.yaml's node affinity does not exclude node.slipway.dev/dra=true (the DRA DaemonSet's nodes)")
	}

	cf, err := os.ReadFile(filepath.Join(dir, "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"./cmd/device-plugin", "EXPOSE " + port, `ENTRYPOINT ["/usr/bin/device-plugin"]`, "CGO_ENABLED=1"} {
		if !strings.Contains(string(cf), want) {
			t.Errorf("Containerfile lacks %q", want)
		}
	}
}

// checkRBAC checks what --node-labels needs: the DaemonSet runs as the
// service account of rbac.yaml, which is bound to a role that may get and
// patch nodes, and NODE_NAME (the --node-name default) comes from the
// pod's spec.nodeName.
func checkRBAC(t *testing.T, dir string, ds appsv1.DaemonSet) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var sa corev1.ServiceAccount
	var role rbacv1.ClusterRole
	var binding rbacv1.ClusterRoleBinding
	var policy admissionv1.ValidatingAdmissionPolicy
	var policyBinding admissionv1.ValidatingAdmissionPolicyBinding
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := sigsyaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("rbac.yaml: %v", err)
		}
		var err error
		switch meta.Kind {
		case "ServiceAccount":
			err = sigsyaml.UnmarshalStrict([]byte(doc), &sa)
		case "ClusterRole":
			err = sigsyaml.UnmarshalStrict([]byte(doc), &role)
		case "ClusterRoleBinding":
			err = sigsyaml.UnmarshalStrict([]byte(doc), &binding)
		case "ValidatingAdmissionPolicy":
			err = sigsyaml.UnmarshalStrict([]byte(doc), &policy)
		case "ValidatingAdmissionPolicyBinding":
			err = sigsyaml.UnmarshalStrict([]byte(doc), &policyBinding)
		default:
			t.Errorf("rbac.yaml: unexpected kind %q", meta.Kind)
		}
		if err != nil {
			t.Fatalf("rbac.yaml %s: %v", meta.Kind, err)
		}
	}
	pod := ds.Spec.Template.Spec
	if pod.ServiceAccountName != sa.Name || sa.Namespace != ds.Namespace {
		t.Errorf("DaemonSet runs as %q in %s, rbac.yaml makes %s/%s", pod.ServiceAccountName, ds.Namespace, sa.Namespace, sa.Name)
	}
	canPatch := false
	for _, r := range role.Rules {
		if slices.Contains(r.APIGroups, "") && slices.Contains(r.Resources, "nodes") && slices.Contains(r.Verbs, "patch") && slices.Contains(r.Verbs, "get") {
			canPatch = true
		}
	}
	if !canPatch {
		t.Errorf("ClusterRole %s rules %+v do not allow get and patch on nodes", role.Name, role.Rules)
	}
	if binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 || binding.Subjects[0].Name != sa.Name || binding.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("ClusterRoleBinding %+v does not bind %s to %s/%s", binding, role.Name, sa.Namespace, sa.Name)
	}
	// The admission policy (what narrows "patch any Node" to the pod's
	// own; test/controlplane's TestNodeLabels runs it) applies to this
	// service account and is bound.
	user := "system:serviceaccount:" + sa.Namespace + ":" + sa.Name
	if len(policy.Spec.MatchConditions) != 1 || !strings.Contains(policy.Spec.MatchConditions[0].Expression, `"`+user+`"`) {
		t.Errorf("ValidatingAdmissionPolicy %s match conditions %+v do not name %s", policy.Name, policy.Spec.MatchConditions, user)
	}
	if policyBinding.Spec.PolicyName != policy.Name || !slices.Contains(policyBinding.Spec.ValidationActions, admissionv1.Deny) {
		t.Errorf("ValidatingAdmissionPolicyBinding %+v does not deny by policy %s", policyBinding.Spec, policy.Name)
	}
	nodeName := false
	for _, e := range pod.Containers[0].Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			nodeName = true
		}
	}
	if !nodeName {
		t.Error("the container has no NODE_NAME from spec.nodeName, which --node-name defaults to")
	}
}
