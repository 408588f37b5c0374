package dra

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	drahealthv1 "k8s.io/kubelet/pkg/apis/dra-health/v1"
	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/slipway-dev/slipway/pkg/devices"
	"github.com/slipway-dev/slipway/pkg/dra/drakubelet"
	"github.com/slipway-dev/slipway/pkg/nodeagent"
)

const testNode = "gpu-node-1"

// env is one node: a copy of a fixture tree as the host root, the kubelet's
// directories, a CDI directory and an API (client-go's fake clientset, for
// claims and slices).
type env struct {
	t                                 testing.TB
	root, registry, plugins, cdi, dir string
	client                            *fake.Clientset
}

func newEnv(t testing.TB, tree string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, root: filepath.Join(dir, "host"), registry: filepath.Join(dir, "registry"),
		plugins: filepath.Join(dir, "plugins", DefaultDriverName), cdi: filepath.Join(dir, "cdi")}
	if tree != "" {
		copyTree(t, fixture(tree), e.root)
	}
	for _, d := range []string{e.registry, e.plugins} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.client = fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: testNode, UID: "node-uid-1"}})
	return e
}

// copyTree copies a fixture tree, symlinks as symlinks.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case de.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, to)
		case de.IsDir():
			return os.MkdirAll(to, 0o755)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, 0o644)
		}
	})
	if err != nil {
		t.Fatalf("copy fixture %s: %v", src, err)
	}
}

// setup is what start builds: the driver and the node agent that feeds it.
type setup struct {
	driver Config
	agent  nodeagent.Config
}

func (e *env) config() setup {
	return setup{
		driver: Config{
			NodeName: testNode, KubeClient: e.client, Root: e.root,
			RegistryDir: e.registry, PluginDir: e.plugins, CDIDir: e.cdi,
			HealthTimeout: time.Second, HealthResend: 200 * time.Millisecond, Log: testLog(e.t),
		},
		agent: nodeagent.Config{
			Discovery:      devices.Config{Root: e.root, NVML: devices.NVMLOff},
			RescanInterval: 100 * time.Millisecond, Log: testLog(e.t),
		},
	}
}

// running is a node agent, with the driver as its one front end, whose
// Run is going on.
type running struct {
	d      *Driver
	cancel context.CancelFunc
	errc   chan error
}

func (e *env) start(s setup) *running {
	e.t.Helper()
	d, err := New(s.driver)
	if err != nil {
		e.t.Fatalf("New() = %v", err)
	}
	s.agent.Frontends = []nodeagent.Frontend{d}
	a, err := nodeagent.New(s.agent)
	if err != nil {
		e.t.Fatalf("nodeagent.New() = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{d: d, cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- a.Run(ctx) }()
	e.t.Cleanup(func() { r.stop(e.t) })
	return r
}

// stop cancels Run and waits for it; Run must return nil.
func (r *running) stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.errc:
		if err != nil {
			t.Errorf("Run() = %v, want nil on a clean stop", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return within 15s of cancel")
	}
}

// waitFor polls cond until it holds, failing at once if Run returned.
func (e *env) waitFor(r *running, what string, cond func() bool) {
	e.t.Helper()
	deadline := time.After(20 * time.Second)
	for !cond() {
		select {
		case err := <-r.errc:
			r.cancel = nil
			e.t.Fatalf("Run returned %v while waiting for %s", err, what)
		case <-deadline:
			e.t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// register waits for the registration socket and registers like the
// kubelet.
func (e *env) register(r *running) *drakubelet.Kubelet {
	e.t.Helper()
	sock := filepath.Join(e.registry, DefaultDriverName+"-reg.sock")
	e.waitFor(r, "registration socket", func() bool { _, err := os.Stat(sock); return err == nil })
	k, err := drakubelet.Register(context.Background(), sock, DefaultDriverName)
	if err != nil {
		e.t.Fatalf("Register() = %v", err)
	}
	e.t.Cleanup(func() { k.Close() })
	return k
}

// slices lists the driver's ResourceSlices in the API.
func (e *env) slices() []resourceapi.ResourceSlice {
	e.t.Helper()
	l, err := e.client.ResourceV1().ResourceSlices().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatalf("list slices: %v", err)
	}
	return l.Items
}

// published returns the device names in the API's slices.
func (e *env) published() []string {
	var out []string
	for _, s := range e.slices() {
		for _, d := range s.Spec.Devices {
			out = append(out, d.Name)
		}
	}
	slices.Sort(out)
	return out
}

// claim creates a claim allocated to devs (request name per device:
// "req-<i>" unless given as "request:device").
func (e *env) claim(name string, devs ...string) drakubelet.Claim {
	e.t.Helper()
	uid := types.UID("uid-" + name)
	c := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: uid}}
	c.Status.Allocation = &resourceapi.AllocationResult{}
	for _, d := range devs {
		req, dev, ok := strings.Cut(d, ":")
		if !ok {
			req, dev = "gpus", d
		}
		c.Status.Allocation.Devices.Results = append(c.Status.Allocation.Devices.Results,
			resourceapi.DeviceRequestAllocationResult{Request: req, Driver: DefaultDriverName, Pool: testNode, Device: dev})
	}
	if _, err := e.client.ResourceV1().ResourceClaims("ns").Create(context.Background(), c, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create claim %s: %v", name, err)
	}
	return drakubelet.Claim{Namespace: "ns", Name: name, UID: string(uid)}
}

func (e *env) specPath(c drakubelet.Claim) string {
	return filepath.Join(e.cdi, "slipway.dev-claim_"+c.UID+".json")
}

const (
	gpu0 = "gpu-0000-1b-00-0" // /dev/nvidia0
	gpu1 = "gpu-0000-43-00-0" // /dev/nvidia1
	gpu2 = "gpu-0000-52-00-0"
	hca0 = "hca-0000-18-00-0" // mlx5_0, under gpu0's switch
)

func TestPublishesAfterDiscovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "dgx-h100")
	r := e.start(e.config())
	e.waitFor(r, "16 published devices", func() bool { return len(e.published()) == 16 })
	s := e.slices()
	if len(s) != 1 {
		t.Fatalf("slices = %d, want 1", len(s))
	}
	spec := s[0].Spec
	if spec.Driver != DefaultDriverName || spec.NodeName == nil || *spec.NodeName != testNode || spec.Pool.Name != testNode {
		t.Errorf("slice spec driver %q node %v pool %q, want %s, %s, %s", spec.Driver, spec.NodeName, spec.Pool.Name, DefaultDriverName, testNode, testNode)
	}
	if owner := s[0].OwnerReferences; len(owner) != 1 || owner[0].Kind != "Node" || owner[0].UID != "node-uid-1" {
		t.Errorf("slice owners = %v, want the Node", owner)
	}
}

// TestNoSliceBeforeDiscovery runs the driver before any state is applied
// (the agent's first discovery has not succeeded): it answers the kubelet
// (unprepare from the checkpoint; prepare says devices are not known yet)
// and publishes nothing, not even an empty slice. A node agent whose first
// discovery fails publishes nothing either, whether it stops or retries.
func TestNoSliceBeforeDiscovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "dgx-h100")
	d, err := New(e.config().driver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{d: d, cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- d.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	k := e.register(r)
	resp, err := k.Unprepare(context.Background(), drakubelet.Claim{Namespace: "ns", Name: "old", UID: "uid-old"})
	if err != nil || resp.Claims["uid-old"] == nil || resp.Claims["uid-old"].Error != "" {
		t.Fatalf("Unprepare(unknown claim) before discovery = %v, %v; want success", resp, err)
	}
	c := e.claim("early", gpu0)
	presp, err := k.Prepare(context.Background(), c)
	if err != nil {
		t.Fatalf("Prepare() = %v", err)
	}
	if msg := presp.Claims[c.UID].GetError(); !strings.Contains(msg, "not discovered yet") {
		t.Errorf("Prepare before discovery: claim error %q, want it to say devices are not discovered yet", msg)
	}
	if err := d.Ready(); err == nil || !strings.Contains(err.Error(), "no devices applied") {
		t.Errorf("Ready() before any state = %v, want not ready", err)
	}
	time.Sleep(500 * time.Millisecond)
	if got := e.slices(); len(got) != 0 {
		t.Fatalf("slices published before a discovery succeeded: %d", len(got))
	}
	// Once a state arrives, the devices appear.
	devs := discoverFixture(t, e.root)
	if err := d.Apply(devices.State{Devices: devs, Config: devices.DefaultConfig()}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(r, "devices after the first state", func() bool { return len(e.published()) == 16 })
	if err := d.Ready(); err != nil {
		t.Errorf("Ready() after registration and a state = %v", err)
	}

	// The agent on a host whose PCI list cannot be read.
	e2 := newEnv(t, "dgx-h100")
	if err := os.RemoveAll(filepath.Join(e2.root, "sys", "bus", "pci", "devices")); err != nil {
		t.Fatal(err)
	}
	d2, err := New(e2.config().driver)
	if err != nil {
		t.Fatal(err)
	}
	s2 := e2.config().agent
	s2.Frontends = []nodeagent.Frontend{d2}
	a2, err := nodeagent.New(s2)
	if err != nil {
		t.Fatal(err)
	}
	// Today the agent stops when its first discovery fails; it may instead
	// keep retrying (nodeagent was asked to). Either way nothing may be
	// published: bound the run so that a retrying agent ends too.
	actx, acancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer acancel()
	err = a2.Run(actx)
	t.Logf("agent Run with an unreadable PCI list = %v", err)
	if got := e2.slices(); len(got) != 0 {
		t.Errorf("slices published after a failed discovery: %d", len(got))
	}
}

func TestPrepareUnprepare(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "dgx-h100")
	r := e.start(e.config())
	k := e.register(r)
	e.waitFor(r, "slices", func() bool { return len(e.published()) == 16 })
	ctx := context.Background()
	c := e.claim("train", "gpus:"+gpu0, "gpus:"+gpu1, "rdma:"+hca0)

	resp, err := k.Prepare(ctx, c)
	if err != nil {
		t.Fatalf("Prepare() = %v", err)
	}
	cr := resp.Claims[c.UID]
	if cr == nil || cr.Error != "" {
		t.Fatalf("Prepare(%s) = %v, want success", c.Name, cr)
	}
	type dev struct {
		Requests []string
		Pool     string
		Name     string
		CDI      []string
	}
	var got []dev
	for _, d := range cr.Devices {
		got = append(got, dev{d.RequestNames, d.PoolName, d.DeviceName, d.CdiDeviceIds})
	}
	want := []dev{
		{[]string{"gpus"}, testNode, gpu0, []string{"slipway.dev/claim=uid-train-" + gpu0, "slipway.dev/claim=uid-train-req-gpus"}},
		{[]string{"gpus"}, testNode, gpu1, []string{"slipway.dev/claim=uid-train-" + gpu1}},
		{[]string{"rdma"}, testNode, hca0, []string{"slipway.dev/claim=uid-train-" + hca0, "slipway.dev/claim=uid-train-req-rdma"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("prepared devices (-want +got):\n%s", diff)
	}

	// The spec is valid CDI and gives what the container needs.
	cache, err := cdi.NewCache(cdi.WithSpecDirs(e.cdi), cdi.WithAutoRefresh(false))
	if err != nil {
		t.Fatal(err)
	}
	if errs := cache.GetErrors(); len(errs) > 0 {
		t.Fatalf("cdi cache errors: %v", errs)
	}
	nodes := map[string][]string{}
	env := map[string][]string{}
	for _, id := range slices.Concat(want[0].CDI, want[1].CDI, want[2].CDI) {
		d := cache.GetDevice(id)
		if d == nil {
			t.Fatalf("cdi device %s not in the spec directory (has %v)", id, cache.ListDevices())
		}
		for _, n := range d.ContainerEdits.DeviceNodes {
			nodes[id] = append(nodes[id], n.Path)
		}
		env[id] = d.ContainerEdits.Env
	}
	if diff := cmp.Diff([]string{"/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"}, nodes["slipway.dev/claim=uid-train-"+gpu0]); diff != "" {
		t.Errorf("gpu0 device nodes (-want +got):\n%s", diff)
	}
	wantEnv := []string{
		"NVIDIA_VISIBLE_DEVICES=GPU-0000001b-1111-2222-3333-444400000000,GPU-00000043-1111-2222-3333-444400000001",
		"SLIPWAY_GPU_DEVICES=GPU-0000001b-1111-2222-3333-444400000000,GPU-00000043-1111-2222-3333-444400000001",
		"SLIPWAY_GPU_PCI_ADDRESSES=0000:1b:00.0,0000:43:00.0",
	}
	if diff := cmp.Diff(wantEnv, env["slipway.dev/claim=uid-train-req-gpus"]); diff != "" {
		t.Errorf("gpus request env (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"SLIPWAY_HCA_DEVICES=mlx5_0", "SLIPWAY_HCA_PCI_ADDRESSES=0000:18:00.0"}, env["slipway.dev/claim=uid-train-req-rdma"]); diff != "" {
		t.Errorf("rdma request env (-want +got):\n%s", diff)
	}

	// Idempotent: the same answer, the checkpoint unchanged.
	cp1, _ := os.ReadFile(filepath.Join(e.plugins, CheckpointFile))
	resp2, err := k.Prepare(ctx, c)
	if err != nil || resp2.Claims[c.UID].GetError() != "" {
		t.Fatalf("second Prepare() = %v, %v", resp2, err)
	}
	if diff := cmp.Diff(len(cr.Devices), len(resp2.Claims[c.UID].Devices)); diff != "" {
		t.Errorf("second Prepare devices differ:\n%s", diff)
	}
	cp2, _ := os.ReadFile(filepath.Join(e.plugins, CheckpointFile))
	if string(cp1) != string(cp2) {
		t.Errorf("second Prepare rewrote the checkpoint")
	}

	// A second claim on a prepared device fails alone.
	other := e.claim("thief", gpu1)
	free := e.claim("free", gpu2)
	resp3, err := k.Prepare(ctx, other, free)
	if err != nil {
		t.Fatalf("Prepare(thief, free) = %v", err)
	}
	if msg := resp3.Claims[other.UID].GetError(); !strings.Contains(msg, "already prepared for claim ns/train") {
		t.Errorf("Prepare(thief) error %q, want it to name the claim holding %s", msg, gpu1)
	}
	if msg := resp3.Claims[free.UID].GetError(); msg != "" {
		t.Errorf("Prepare(free) error %q, want success", msg)
	}

	// Unprepare removes the spec; again, and for a claim never seen,
	// succeeds.
	for range 2 {
		uresp, err := k.Unprepare(ctx, c, drakubelet.Claim{Namespace: "ns", Name: "ghost", UID: "uid-ghost"})
		if err != nil {
			t.Fatalf("Unprepare() = %v", err)
		}
		for uid, r := range uresp.Claims {
			if r.Error != "" {
				t.Errorf("Unprepare(%s) error %q, want success", uid, r.Error)
			}
		}
		if _, err := os.Stat(e.specPath(c)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cdi spec of unprepared claim still there: %v", err)
		}
	}
	claims, err := loadCheckpoint(filepath.Join(e.plugins, CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"uid-free"}, sortedKeys(claims)); diff != "" {
		t.Errorf("checkpoint claims after unprepare (-want +got):\n%s", diff)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestRestartAndReboot prepares a claim, restarts the plugin (a new
// process reads the checkpoint), then simulates a reboot with the CDI
// directory on tmpfs (emptied) and the checkpoint on disk: the spec is
// written again at start, a repeated prepare gives the same devices, and
// unprepare by a later process works.
func TestRestartAndReboot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "dgx-h100")
	ctx := context.Background()
	r := e.start(e.config())
	k := e.register(r)
	e.waitFor(r, "slices", func() bool { return len(e.published()) == 16 })
	c := e.claim("job", gpu0, gpu1)
	if resp, err := k.Prepare(ctx, c); err != nil || resp.Claims[c.UID].GetError() != "" {
		t.Fatalf("Prepare() = %v, %v", resp, err)
	}
	spec1, err := os.ReadFile(e.specPath(c))
	if err != nil {
		t.Fatal(err)
	}
	k.Close()
	r.stop(t)

	// Restart: the new process refuses to hand gpu1 to another claim.
	r2 := e.start(e.config())
	k2 := e.register(r2)
	// The API still holds the first process's slices: wait for this
	// process's own discovery.
	e.waitFor(r2, "discovery after restart", func() bool { _, ok := r2.d.Pool(); return ok })
	other := e.claim("other", gpu1)
	resp, err := k2.Prepare(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if msg := resp.Claims[other.UID].GetError(); !strings.Contains(msg, "already prepared") {
		t.Errorf("after restart, Prepare(other on %s) error %q, want already prepared", gpu1, msg)
	}
	k2.Close()
	r2.stop(t)

	// Reboot: tmpfs CDI directory emptied, plus a stray spec of a claim
	// the checkpoint never recorded (a crash between the two writes).
	if err := os.RemoveAll(e.cdi); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(e.cdi, "slipway.dev-claim_uid-stray.json")
	if err := os.MkdirAll(e.cdi, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stray, spec1, 0o644); err != nil {
		t.Fatal(err)
	}
	r3 := e.start(e.config())
	k3 := e.register(r3)
	spec3, err := os.ReadFile(e.specPath(c))
	if err != nil {
		t.Fatalf("cdi spec of the prepared claim not restored at start: %v", err)
	}
	if string(spec1) != string(spec3) {
		t.Errorf("restored spec differs from the original:\n%s\nwant:\n%s", spec3, spec1)
	}
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stray claim spec not removed at start: %v", err)
	}
	e.waitFor(r3, "discovery after reboot", func() bool { _, ok := r3.d.Pool(); return ok })
	resp, err = k3.Prepare(ctx, c)
	if err != nil || resp.Claims[c.UID].GetError() != "" {
		t.Fatalf("Prepare() after reboot = %v, %v", resp, err)
	}
	if n := len(resp.Claims[c.UID].Devices); n != 2 {
		t.Errorf("Prepare() after reboot gave %d devices, want 2", n)
	}
	uresp, err := k3.Unprepare(ctx, c)
	if err != nil || uresp.Claims[c.UID].GetError() != "" {
		t.Fatalf("Unprepare() after reboot = %v, %v", uresp, err)
	}
	if _, err := os.Stat(e.specPath(c)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spec still there after unprepare: %v", err)
	}
}

func TestCorruptCheckpointRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	cfg := e.config().driver
	path := filepath.Join(e.plugins, CheckpointFile)
	if err := saveCheckpoint(path, map[string]preparedClaim{"u1": {Namespace: "ns", Name: "a", Devices: []preparedDevice{{Device: gpu0}}}}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), gpu0, gpu1, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(cfg)
	if err == nil || !strings.Contains(err.Error(), "corrupt") || !strings.Contains(err.Error(), path) {
		t.Errorf("New() with a tampered checkpoint = %v, want an error naming %s as corrupt", err, path)
	}
	if err := os.WriteFile(path, []byte(`{"version":1,"claims":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("New() with a truncated checkpoint = %v, want a JSON error", err)
	}
}

// TestHealth turns a GPU unhealthy by unbinding its driver in the tree:
// the slice gets its taint, the health stream reports it, the kubelet's
// cache never lets a device go stale, and a prepare on it fails.
func TestHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "dgx-h100")
	cfgFile := filepath.Join(e.dir, "config.yaml")
	writeConfig(t, cfgFile, "recoveryPeriod: 300ms\n  pollInterval: 50ms")
	cfg := e.config()
	cfg.agent.ConfigFile = cfgFile
	cfg.agent.RescanInterval = 0 // health from the monitor alone
	// A 5s timeout (whole seconds on the wire) against a 200ms resend: a
	// stall of 4.8s would be needed to make a device stale while the
	// driver resends (with 2s, -race on a loaded 2-core machine did stall
	// that long).
	cfg.driver.HealthTimeout = 5 * time.Second
	r := e.start(cfg)
	k := e.register(r)
	e.waitFor(r, "slices", func() bool { return len(e.published()) == 16 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hc, err := k.WatchHealth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	healthOf := func(dev string) drahealthv1.HealthStatus {
		h, _ := hc.Get(testNode, dev)
		return h.Status
	}
	e.waitFor(r, "first health report", func() bool { return hc.Len() == 16 && healthOf(gpu2) == drahealthv1.HealthStatus_HEALTHY })

	driverLink := filepath.Join(e.root, "sys", "bus", "pci", "devices", "0000:52:00.0", "driver")
	target, err := os.Readlink(driverLink)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(driverLink); err != nil {
		t.Fatal(err)
	}
	e.waitFor(r, "taint on "+gpu2, func() bool { return taintOf(e.slices(), gpu2) != nil })
	if tt := taintOf(e.slices(), gpu2); tt.Key != TaintKey || tt.Effect != resourceapi.DeviceTaintEffectNoSchedule || tt.Value != "driver-nvidia-unbound" {
		t.Errorf("taint on %s = %+v, want %s=driver-nvidia-unbound:NoSchedule", gpu2, tt, TaintKey)
	}
	e.waitFor(r, "unhealthy in the health stream", func() bool { return healthOf(gpu2) == drahealthv1.HealthStatus_UNHEALTHY })
	if h, _ := hc.Get(testNode, gpu2); !strings.Contains(h.Message, "unbound") {
		t.Errorf("health message %q, want the reason", h.Message)
	}
	c := e.claim("late", gpu2)
	resp, err := k.Prepare(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if msg := resp.Claims[c.UID].GetError(); !strings.Contains(msg, "unhealthy") {
		t.Errorf("Prepare on an unhealthy device: error %q, want unhealthy", msg)
	}

	// Recovery after the clean period: taint gone, healthy again.
	if err := os.Symlink(target, driverLink); err != nil {
		t.Fatal(err)
	}
	e.waitFor(r, "taint removed", func() bool {
		return taintOf(e.slices(), gpu2) == nil && healthOf(gpu2) == drahealthv1.HealthStatus_HEALTHY
	})

	// Nothing changes for longer than the timeout: without the resend
	// every device would go Unknown in the kubelet's cache.
	reports := hc.Reports()
	time.Sleep(6 * time.Second)
	if s := hc.Stale(); len(s) > 0 {
		t.Errorf("devices went Unknown in the kubelet's cache: %v", s)
	}
	if hc.Reports() == reports {
		t.Errorf("no report in 6s of quiet at a 200ms resend")
	}
}

func writeConfig(t testing.TB, path, health string) {
	t.Helper()
	body := "apiVersion: slipway.dev/v1alpha1\nkind: DevicePluginConfig\nhealth:\n  " + health + "\n"
	if err := os.WriteFile(path+".tmp", []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func taintOf(ss []resourceapi.ResourceSlice, dev string) *resourceapi.DeviceTaint {
	for _, s := range ss {
		for _, d := range s.Spec.Devices {
			if d.Name == dev && len(d.Taints) > 0 {
				return &d.Taints[0]
			}
		}
	}
	return nil
}

// TestHotPlugKeepsPreparedClaims removes a GPU from the tree while another
// claim holds a different GPU, then excludes a device through the config
// file: each time the slice is republished and the prepared claim, its
// spec and its unprepare are untouched.
func TestHotPlugKeepsPreparedClaims(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "dgx-h100")
	cfgFile := filepath.Join(e.dir, "config.yaml")
	writeConfig(t, cfgFile, "pollInterval: 50ms")
	cfg := e.config()
	cfg.agent.ConfigFile = cfgFile
	r := e.start(cfg)
	k := e.register(r)
	e.waitFor(r, "slices", func() bool { return len(e.published()) == 16 })
	ctx := context.Background()
	c := e.claim("keep", gpu0)
	if resp, err := k.Prepare(ctx, c); err != nil || resp.Claims[c.UID].GetError() != "" {
		t.Fatalf("Prepare() = %v, %v", resp, err)
	}
	spec, _ := os.ReadFile(e.specPath(c))
	// A claim on the GPU that is about to vanish: it stays prepared, and
	// the kubelet hears that its device is unhealthy.
	lost := e.claim("lost", gpu2)
	if resp, err := k.Prepare(ctx, lost); err != nil || resp.Claims[lost.UID].GetError() != "" {
		t.Fatalf("Prepare(lost) = %v, %v", resp, err)
	}
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	hc, err := k.WatchHealth(hctx)
	if err != nil {
		t.Fatal(err)
	}

	if err := os.Remove(filepath.Join(e.root, "sys", "bus", "pci", "devices", "0000:52:00.0")); err != nil {
		t.Fatal(err)
	}
	e.waitFor(r, "gpu removed from the slice", func() bool { return len(e.published()) == 15 && !slices.Contains(e.published(), gpu2) })
	e.waitFor(r, "vanished prepared gpu unhealthy in the health stream", func() bool {
		h, _ := hc.Get(testNode, gpu2)
		return h.Status == drahealthv1.HealthStatus_UNHEALTHY && strings.Contains(h.Message, "no longer on the node")
	})
	if _, err := os.Stat(e.specPath(lost)); err != nil {
		t.Errorf("spec of the claim on the vanished gpu: %v, want it kept until unprepare", err)
	}
	if uresp, err := k.Unprepare(ctx, lost); err != nil || uresp.Claims[lost.UID].GetError() != "" {
		t.Fatalf("Unprepare(lost) = %v, %v", uresp, err)
	}

	body := "apiVersion: slipway.dev/v1alpha1\nkind: DevicePluginConfig\nexclude:\n  - pciAddresses: [\"0000:43:00.0\"]\nhealth:\n  pollInterval: 50ms\n"
	if err := os.WriteFile(cfgFile, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	e.waitFor(r, "excluded gpu gone", func() bool { return len(e.published()) == 14 && !slices.Contains(e.published(), gpu1) })

	after, err := os.ReadFile(e.specPath(c))
	if err != nil || string(after) != string(spec) {
		t.Fatalf("prepared claim's spec changed by republishing: %v", err)
	}
	resp, err := k.Prepare(ctx, c)
	if err != nil || resp.Claims[c.UID].GetError() != "" || len(resp.Claims[c.UID].Devices) != 1 {
		t.Fatalf("Prepare() again after republishing = %v, %v", resp, err)
	}
	if uresp, err := k.Unprepare(ctx, c); err != nil || uresp.Claims[c.UID].GetError() != "" {
		t.Fatalf("Unprepare() = %v, %v", uresp, err)
	}
}

func TestNewValidates(t *testing.T) {
	_, err := New(Config{HealthResend: time.Minute})
	for _, want := range []string{"node name is empty", "no Kubernetes client", "health resend"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(empty) = %v, want it to say %q", err, want)
		}
	}
}

// TestClaimGC deletes one prepared claim from the API and replaces
// another (same name, new UID) without any unprepare: the driver releases
// both, keeps the claim that still exists, and a later unprepare of a
// released claim still succeeds.
func TestClaimGC(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "dgx-h100")
	cfg := e.config()
	cfg.driver.ClaimGCInterval = 100 * time.Millisecond
	r := e.start(cfg)
	k := e.register(r)
	e.waitFor(r, "slices", func() bool { return len(e.published()) == 16 })
	ctx := context.Background()
	gone, replaced, kept := e.claim("gone", gpu0), e.claim("replaced", gpu1), e.claim("kept", gpu2)
	resp, err := k.Prepare(ctx, gone, replaced, kept)
	if err != nil {
		t.Fatal(err)
	}
	for uid, c := range resp.Claims {
		if c.Error != "" {
			t.Fatalf("Prepare(%s): %s", uid, c.Error)
		}
	}
	claims := e.client.ResourceV1().ResourceClaims("ns")
	if err := claims.Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := claims.Delete(ctx, "replaced", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	fresh := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "replaced", UID: "uid-replaced-2"}}
	if _, err := claims.Create(ctx, fresh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cpPath := filepath.Join(e.plugins, CheckpointFile)
	e.waitFor(r, "released claims", func() bool {
		cp, err := loadCheckpoint(cpPath)
		return err == nil && len(cp) == 1
	})
	cp, _ := loadCheckpoint(cpPath)
	if diff := cmp.Diff([]string{kept.UID}, sortedKeys(cp)); diff != "" {
		t.Errorf("checkpoint after GC (-want +got):\n%s", diff)
	}
	for _, c := range []drakubelet.Claim{gone, replaced} {
		if _, err := os.Stat(e.specPath(c)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("spec of released claim %s still there: %v", c.Name, err)
		}
	}
	if _, err := os.Stat(e.specPath(kept)); err != nil {
		t.Errorf("spec of the kept claim: %v", err)
	}
	// gpu0 is free again for a new claim.
	again := e.claim("again", gpu0)
	if resp, err := k.Prepare(ctx, again); err != nil || resp.Claims[again.UID].GetError() != "" {
		t.Errorf("Prepare on a released device = %v, %v", resp, err)
	}
	if uresp, err := k.Unprepare(ctx, gone); err != nil || uresp.Claims[gone.UID].GetError() != "" {
		t.Errorf("late Unprepare of a released claim = %v, %v; want success", uresp, err)
	}
}

// TestUnknownResourcesWarned: a --dra-resources name the config does not
// know (a typo) is said once, not silently left to the device plugin.
func TestUnknownResourcesWarned(t *testing.T) {
	e := newEnv(t, "dgx-h100")
	var buf strings.Builder
	cfg := e.config().driver
	cfg.Log = slog.New(slog.NewTextHandler(&buf, nil))
	cfg.Resources = []string{"nvidia.com/gpu", "nvidia.com/gpus"}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	devs := discoverFixture(t, e.root)
	for range 2 {
		if err := d.Apply(devices.State{Devices: devs, Config: devices.DefaultConfig()}); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(buf.String(), "resource=nvidia.com/gpus"); n != 1 {
		t.Errorf("warnings naming nvidia.com/gpus: %d, want 1; log:\n%s", n, buf.String())
	}
	if strings.Contains(buf.String(), "resource=nvidia.com/gpu ") {
		t.Errorf("warned about the configured nvidia.com/gpu; log:\n%s", buf.String())
	}
	if p, _ := d.Pool(); len(p.Slices[0].Devices) != 8 {
		t.Errorf("published %d devices, want the 8 GPUs", len(p.Slices[0].Devices))
	}
}
