package deviceplugin

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/slipway-dev/slipway/pkg/deviceplugin/kubeletstub"
	"github.com/slipway-dev/slipway/pkg/devices"
)

func dgxResources(t testing.TB, opts BuildOptions) []Resource {
	t.Helper()
	return BuildResources(byKind(loadFixture(t, "dgx-h100")), opts)
}

// healthOfList maps device ID to health in a ListAndWatch list.
func healthOfList(devs []*pluginapi.Device) map[string]string {
	out := map[string]string{}
	for _, d := range devs {
		out[d.GetID()] = d.GetHealth()
	}
	return out
}

func TestRegistration(t *testing.T) {
	t.Parallel()
	h := startHarness(t, Config{}, dgxResources(t, BuildOptions{}))
	ctx := h.waitCtx(t)
	for _, tc := range []struct {
		resource string
		devices  int
	}{
		{devices.ResourceGPU, 8},
		{devices.ResourceHCA, 10},
	} {
		p, devs, err := h.stub.WaitPlugin(ctx, tc.resource)
		if err != nil {
			t.Fatal(err)
		}
		wantReq := &pluginapi.RegisterRequest{
			Version:      pluginapi.Version,
			Endpoint:     filepath.Base(socketOf(t, h.dir, tc.resource)),
			ResourceName: tc.resource,
			Options:      &pluginapi.DevicePluginOptions{GetPreferredAllocationAvailable: true},
		}
		if diff := cmp.Diff(wantReq, p.Request, protocmp.Transform()); diff != "" {
			t.Errorf("RegisterRequest of %s mismatch (-want +got):\n%s", tc.resource, diff)
		}
		if !p.Options.GetGetPreferredAllocationAvailable() {
			t.Errorf("GetDevicePluginOptions of %s = %v, want GetPreferredAllocationAvailable", tc.resource, p.Options)
		}
		if len(devs) != tc.devices {
			t.Errorf("ListAndWatch of %s sent %d devices, want %d", tc.resource, len(devs), tc.devices)
		}
		for _, d := range devs {
			if d.GetHealth() != pluginapi.Healthy || len(d.GetTopology().GetNodes()) != 1 {
				t.Errorf("ListAndWatch of %s: device %v, want Healthy with one NUMA node", tc.resource, d)
			}
		}
	}
	if err := waitReady(t, h); err != nil {
		t.Errorf("Ready() = %v, want nil once registered", err)
	}
}

// TestReregisterAfterKubeletRestart is issue 14's defect 1. A kubelet
// restart deletes every socket in the directory (ours too) and creates
// kubelet.sock: the plugin sees its socket removed and kubelet.sock
// removed and created, in quick succession. It must register each
// resource exactly once per kubelet start (the kubelet refuses a second
// Register of a connected socket, and a plugin that retried after that
// refusal stayed "not registered" for ever) and be ready again, whether
// the kubelet stopped cleanly (kubelet.sock removed) or was killed, as
// systemd restarts it (kubelet.sock left behind, refusing connections,
// until the new kubelet's start removes it after the plugins' sockets),
// and without a warning: a kubelet restart is routine.
func TestReregisterAfterKubeletRestart(t *testing.T) {
	t.Parallel()
	rs := dgxResources(t, BuildOptions{})
	h := startHarness(t, Config{}, rs)
	ctx := h.waitCtx(t)
	h.waitServed(ctx, t, rs)
	if err := waitReady(t, h); err != nil {
		t.Fatal(err)
	}
	const restarts = 5
	for i := range restarts {
		// The kubelet exits (its connections close) and starts again.
		if i%2 == 0 {
			h.stub.Kill()
		} else {
			h.stub.Stop()
		}
		stub, err := kubeletstub.Start(kubeletstub.Config{Dir: h.dir})
		if err != nil {
			t.Fatal(err)
		}
		h.stub = stub
		for _, r := range rs {
			if _, devs, err := stub.WaitPlugin(ctx, r.Name); err != nil || len(devs) != len(r.Devices) {
				t.Fatalf("restart %d: %s lists %d devices, %v; want %d", i, r.Name, len(devs), err, len(r.Devices))
			}
		}
		if err := waitReady(t, h); err != nil {
			t.Fatalf("restart %d: %v", i, err)
		}
		// Whatever events are still in flight, no second Register.
		time.Sleep(300 * time.Millisecond)
		for _, r := range rs {
			if n, refused := stub.Attempts(r.Name), stub.Refused(r.Name); n != 1 || len(refused) != 0 {
				t.Errorf("restart %d: %s made %d Register calls (refused: %q), want exactly 1", i, r.Name, n, refused)
			}
			if ok, total := stub.Allocatable(r.Name); ok != len(r.Devices) || total != len(r.Devices) {
				t.Errorf("restart %d: kubelet holds %d of %d %s devices allocatable, want all %d", i, ok, total, r.Name, len(r.Devices))
			}
		}
		if err := h.p.Ready(); err != nil {
			t.Errorf("restart %d: Ready() = %v 300ms after registration, want nil", i, err)
		}
	}
	if w := h.log.lines("level=WARN"); len(w) > 0 {
		t.Errorf("warnings over %d kubelet restarts:\n%s", restarts, strings.Join(w, "\n"))
	}
}

// TestKilledKubeletSocketLeftBehind: a killed kubelet leaves kubelet.sock
// on disk, refusing connections, and the next kubelet's start may remove
// the plugins' sockets before it removes that one. The plugin, serving
// again meanwhile, finds the dead kubelet.sock: it waits for the kubelet
// quietly (a kubelet restart is routine, not a warning), is not ready, and
// registers once when the new kubelet's socket appears.
func TestKilledKubeletSocketLeftBehind(t *testing.T) {
	t.Parallel()
	rs := dgxResources(t, BuildOptions{})
	h := startHarness(t, Config{}, rs)
	ctx := h.waitCtx(t)
	h.waitServed(ctx, t, rs)
	h.stub.Kill()
	if _, err := os.Stat(h.stub.Socket()); err != nil {
		t.Fatalf("kubelet.sock after Kill: %v, want it left behind", err)
	}
	// The first half of the next kubelet's start: the plugins' sockets go.
	for _, r := range rs {
		if err := os.Remove(socketOf(t, h.dir, r.Name)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(h.log.lines("kubelet not answering")) < len(rs) {
		if time.Now().After(deadline) {
			t.Fatalf("no resource found the dead kubelet.sock in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := h.p.Ready(); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Errorf("Ready() = %v while no kubelet answers, want not registered", err)
	}
	time.Sleep(200 * time.Millisecond) // a few retries
	stub, err := kubeletstub.Start(kubeletstub.Config{Dir: h.dir})
	if err != nil {
		t.Fatal(err)
	}
	h.stub = stub
	for _, r := range rs {
		if _, devs, err := stub.WaitPlugin(ctx, r.Name); err != nil || len(devs) != len(r.Devices) {
			t.Fatalf("%s lists %d devices, %v; want %d", r.Name, len(devs), err, len(r.Devices))
		}
	}
	if err := waitReady(t, h); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if n, refused := stub.Attempts(r.Name), stub.Refused(r.Name); n != 1 || len(refused) != 0 {
			t.Errorf("%s made %d Register calls (refused: %q), want exactly 1", r.Name, n, refused)
		}
	}
	if w := h.log.lines("level=WARN"); len(w) > 0 {
		t.Errorf("warnings while the kubelet restarted:\n%s", strings.Join(w, "\n"))
	}
}

// TestStaleKubeletSocketRemovalEvent: the removal of a killed kubelet's
// kubelet.sock (by the next kubelet's start) can reach the plugin after it
// has already registered with the new kubelet, through its own socket's
// removal. That event must not leave the plugin "not registered" with the
// kubelet it is registered with (it did, for ever: /healthz 503 until the
// liveness probe killed the pod, seen in 1 of 15 restarts under load).
func TestStaleKubeletSocketRemovalEvent(t *testing.T) {
	t.Parallel()
	rs := dgxResources(t, BuildOptions{})
	h := startHarness(t, Config{}, rs)
	ctx := h.waitCtx(t)
	h.waitServed(ctx, t, rs)
	if err := waitReady(t, h); err != nil {
		t.Fatal(err)
	}
	// The late event, delivered as the watcher would; kubelet.sock (the
	// new kubelet's) is there.
	h.p.dispatch(fsnotify.Event{Name: h.stub.Socket(), Op: fsnotify.Remove})
	if err := waitReady(t, h); err != nil {
		t.Errorf("after a late removal event of a kubelet.sock that is back: %v", err)
	}
	for _, r := range rs {
		if n := h.stub.Attempts(r.Name); n != 1 {
			t.Errorf("%s made %d Register calls, want 1: the kubelet has it", r.Name, n)
		}
	}
	// A real removal (the kubelet stopped) still means not registered.
	h.stub.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for h.p.Ready() == nil {
		if time.Now().After(deadline) {
			t.Fatal("still ready 10s after kubelet.sock was removed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAlreadyConnectedIsRegistered: when the kubelet answers Register with
// "device plugin already connected", the plugin is registered (the kubelet
// keeps its endpoint) and ready; it does not retry.
func TestAlreadyConnectedIsRegistered(t *testing.T) {
	t.Parallel()
	rs := dgxResources(t, BuildOptions{})
	h := startHarness(t, Config{}, rs[:1])
	ctx := h.waitCtx(t)
	name := rs[0].Name
	if _, _, err := h.stub.WaitPlugin(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := waitReady(t, h); err != nil {
		t.Fatal(err)
	}
	// A second Register of the same socket, as a plugin racing its own
	// events would send.
	s := h.p.servers[name]
	if err := s.register(ctx, s.socketPath()); err == nil || !strings.Contains(err.Error(), "device plugin already connected") {
		t.Fatalf("second Register = %v, want the kubelet's refusal", err)
	}
	// The kubelet still follows the first stream: a health change reaches
	// it, and the plugin stays ready without retrying.
	id := rs[0].Devices[0].ID
	if err := h.p.Update(withHealth(rs[:1], false, "xid 79", id)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.stub.WaitDevices(ctx, name, func(ds []*pluginapi.Device) bool { return healthOfList(ds)[id] == pluginapi.Unhealthy }); err != nil {
		t.Fatal(err)
	}
	if err := h.p.Ready(); err != nil {
		t.Errorf("Ready() = %v, want nil", err)
	}
	if n := h.stub.Attempts(name); n != 2 {
		t.Errorf("%s made %d Register calls, want 2 (the plugin's one and the test's duplicate)", name, n)
	}
}

// TestReregisterWhenOwnSocketRemoved: someone removes the plugin's socket
// while the kubelet runs. The plugin serves again and registers, and the
// kubelet follows the new stream, however late the kubelet notices that
// the old stream ended (here a second): the kubelet keeps endpoints by
// resource and socket, refuses a second Register of a socket it still has
// connected, and then never disconnects that endpoint, so a plugin that
// served again on the same socket name and registered before the kubelet
// had dropped the old endpoint was left with a kubelet that took no more
// health updates from it until the kubelet restarted.
func TestReregisterWhenOwnSocketRemoved(t *testing.T) {
	t.Parallel()
	const late = time.Second
	rs := dgxResources(t, BuildOptions{})
	h := startHarnessStub(t, kubeletstub.Config{DisconnectDelay: late}, Config{}, rs)
	ctx := h.waitCtx(t)
	for _, r := range []string{devices.ResourceGPU, devices.ResourceHCA} {
		if _, _, err := h.stub.WaitPlugin(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	old := socketOf(t, h.dir, devices.ResourceGPU)
	if err := os.Remove(old); err != nil {
		t.Fatal(err)
	}
	if err := h.stub.WaitRegistrations(ctx, devices.ResourceGPU, 2); err != nil {
		t.Fatalf("after its socket was removed, %s did not register again: %v (refused: %q)", devices.ResourceGPU, err, h.stub.Refused(devices.ResourceGPU))
	}
	if _, devs, err := h.stub.WaitPlugin(ctx, devices.ResourceGPU); err != nil || len(devs) != 8 {
		t.Fatalf("after re-registration: %d devices, %v; want 8", len(devs), err)
	}
	if n := h.stub.Registrations(devices.ResourceHCA); n != 1 {
		t.Errorf("Registrations(%s) = %d, want 1: an unaffected resource must not restart", devices.ResourceHCA, n)
	}
	if refused := h.stub.Refused(devices.ResourceGPU); len(refused) != 0 {
		t.Errorf("Register of %s refused: %q", devices.ResourceGPU, refused)
	}
	var gpu string
	for _, r := range rs {
		if r.Name == devices.ResourceGPU {
			gpu = r.Devices[0].ID
		}
	}
	if err := h.p.Update(withHealth(rs, false, "xid 79", gpu)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.stub.WaitDevices(ctx, devices.ResourceGPU, func(ds []*pluginapi.Device) bool {
		return healthOfList(ds)[gpu] == pluginapi.Unhealthy
	}); err != nil {
		t.Fatalf("health change after re-registration did not reach the kubelet: %v", err)
	}
	// Once the kubelet has dropped the old endpoint it holds the new one
	// alone, with the health the plugin last sent: the other 7 allocatable.
	if err := h.stub.WaitEndpoints(ctx, devices.ResourceGPU, 1); err != nil {
		t.Fatalf("the kubelet did not drop the old endpoint: %v", err)
	}
	if ok, total := h.stub.Allocatable(devices.ResourceGPU); ok != 7 || total != 8 {
		t.Errorf("kubelet holds %d of %d GPUs allocatable after the old endpoint went, want 7 of 8", ok, total)
	}
	if w := h.log.lines("level=WARN"); len(w) > 0 {
		t.Errorf("warnings:\n%s", strings.Join(w, "\n"))
	}
}

// TestKubeletAllocates drives the plugin as the kubelet's device manager
// allocates (kubeletstub.Admit): GetPreferredAllocation over the NUMA-
// aligned devices when there is a choice among them, none when the aligned
// devices are exactly what is needed, over everything (no choice left, and
// with must-include devices) without a Topology Manager hint, and never
// offering an unhealthy or allocated device.
func TestKubeletAllocates(t *testing.T) {
	t.Parallel()
	rs := dgxResources(t, BuildOptions{})
	h := startHarness(t, Config{}, rs)
	ctx := h.waitCtx(t)
	if _, _, err := h.stub.WaitPlugin(ctx, devices.ResourceGPU); err != nil {
		t.Fatal(err)
	}
	numaOf := map[string]int64{}
	for _, r := range rs {
		for _, d := range r.Devices {
			numaOf[d.ID] = int64(d.Parts[0].NUMANode)
		}
	}
	onNode := func(ids []string, node int64) bool {
		for _, id := range ids {
			if numaOf[id] != node {
				return false
			}
		}
		return true
	}
	// Two GPUs on NUMA node 0: asked to choose among its four.
	a, err := h.stub.Admit(ctx, devices.ResourceGPU, 2, []int64{0})
	if err != nil {
		t.Fatal(err)
	}
	if a.Preferred == nil || len(a.Preferred.GetAvailableDeviceIDs()) != 4 || !onNode(a.Preferred.GetAvailableDeviceIDs(), 0) || len(a.PreferredIDs) != 2 {
		t.Errorf("GetPreferredAllocation for 2 of NUMA 0's 4 GPUs: asked %v, answered %v; want the 4 offered and 2 chosen", a.Preferred, a.PreferredIDs)
	}
	if !onNode(a.Devices, 0) || len(a.Response.GetDevices()) != 2+3 {
		t.Errorf("2 GPUs on NUMA 0: got %v with %d device nodes, want 2 GPUs of node 0 (and nvidiactl, nvidia-uvm, nvidia-uvm-tools)", a.Devices, len(a.Response.GetDevices()))
	}
	// The other two of node 0: exactly what is aligned, no question asked.
	b, err := h.stub.Admit(ctx, devices.ResourceGPU, 2, []int64{0})
	if err != nil {
		t.Fatal(err)
	}
	if b.Preferred != nil || !onNode(b.Devices, 0) || slices.ContainsFunc(b.Devices, func(id string) bool { return slices.Contains(a.Devices, id) }) {
		t.Errorf("the last 2 GPUs of NUMA 0: asked %v, got %v; want no question and the two not allocated yet", b.Preferred, b.Devices)
	}
	// A GPU goes unhealthy; without a hint the kubelet asks even with no
	// choice left: all 3 healthy GPUs of node 1 for 3.
	var sick string
	for _, d := range rs[0].Devices {
		if numaOf[d.ID] == 1 {
			sick = d.ID
			break
		}
	}
	if err := h.p.Update(withHealth(rs, false, "xid 79", sick)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.stub.WaitDevices(ctx, devices.ResourceGPU, func(ds []*pluginapi.Device) bool { return healthOfList(ds)[sick] == pluginapi.Unhealthy }); err != nil {
		t.Fatal(err)
	}
	c, err := h.stub.Admit(ctx, devices.ResourceGPU, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Preferred == nil || len(c.Preferred.GetAvailableDeviceIDs()) != 3 || len(c.PreferredIDs) != 3 || slices.Contains(c.Devices, sick) || !onNode(c.Devices, 1) {
		t.Errorf("3 GPUs without a hint: asked %v, answered %v, got %v; want the 3 healthy ones of node 1 offered and given", c.Preferred, c.PreferredIDs, c.Devices)
	}
	if _, err := h.stub.Admit(ctx, devices.ResourceGPU, 1, nil); err == nil {
		t.Error("Admit of a 9th GPU (7 healthy, all allocated) succeeded")
	}
	// HCAs: one more than NUMA node 1 has, admitted to node 1: the kubelet
	// takes node 1's first and asks over all of them with those as
	// must-include.
	h.stub.Release(devices.ResourceGPU, slices.Concat(a.Devices, b.Devices, c.Devices))
	var node1 int
	for _, d := range rs[1].Devices {
		if numaOf[d.ID] == 1 {
			node1++
		}
	}
	d, err := h.stub.Admit(ctx, devices.ResourceHCA, node1+1, []int64{1})
	if err != nil {
		t.Fatal(err)
	}
	if d.Preferred == nil || len(d.Preferred.GetMustIncludeDeviceIDs()) != node1 || !onNode(d.Preferred.GetMustIncludeDeviceIDs(), 1) || len(d.Devices) != node1+1 {
		t.Errorf("%d HCAs on NUMA 1 (which has %d): asked %v, got %v; want node 1's as must-include and one more", node1+1, node1, d.Preferred, d.Devices)
	}
}

func TestHealthFaultAndRecovery(t *testing.T) {
	t.Parallel()
	pair := PairConfig{Name: "slipway.dev/gpu-hca-pair", GPUResource: devices.ResourceGPU, HCAResource: devices.ResourceHCA}
	rs := dgxResources(t, BuildOptions{Pairs: pair})
	h := startHarness(t, Config{}, rs)
	ctx := h.waitCtx(t)
	h.waitServed(ctx, t, rs)
	gpu := "GPU-0b8c3f2e-7f1a-4c11-9d52-1a2b3c4d5e02"
	pairID := gpu + "+mlx5_4"
	if err := h.p.Update(withHealth(rs, false, "xid 79", gpu)); err != nil {
		t.Fatal(err)
	}
	u, err := h.stub.WaitDevices(ctx, pair.Name, func(ds []*pluginapi.Device) bool {
		return healthOfList(ds)[pairID] == pluginapi.Unhealthy
	})
	if err != nil {
		t.Fatalf("pair %s not withdrawn after its GPU failed: %v", pairID, err)
	}
	hl := healthOfList(u.Devices)
	for id, st := range hl {
		if id != pairID && st != pluginapi.Healthy {
			t.Errorf("after a fault on %s, %s is %s, want Healthy", gpu, id, st)
		}
	}
	// The kubelet would not allocate it; if asked anyway, the error names it.
	p, _, _ := h.stub.WaitPlugin(ctx, pair.Name)
	_, err = p.Client.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{pairID, "nope"}}}})
	if err == nil || !strings.Contains(err.Error(), pairID) || !strings.Contains(err.Error(), "nope") || !strings.Contains(err.Error(), "xid 79") {
		t.Errorf("Allocate(unhealthy %s, unknown nope) error = %v, want one naming both and the reason", pairID, err)
	}
	if err := h.p.Update(rs); err != nil {
		t.Fatal(err)
	}
	if _, err := h.stub.WaitDevices(ctx, pair.Name, func(ds []*pluginapi.Device) bool {
		return healthOfList(ds)[pairID] == pluginapi.Healthy
	}); err != nil {
		t.Fatalf("pair %s not back after recovery: %v", pairID, err)
	}
	if n := h.stub.Registrations(pair.Name); n != 1 {
		t.Errorf("Registrations(%s) = %d after health changes, want 1", pair.Name, n)
	}
}

// TestNVMLFailure models what the health monitor reports when NVML dies:
// every GPU unhealthy. The plugin must keep serving, withdraw every GPU,
// leave the HCAs alone, and keep answering the kubelet without errors.
func TestNVMLFailure(t *testing.T) {
	t.Parallel()
	rs := dgxResources(t, BuildOptions{})
	h := startHarness(t, Config{}, rs)
	ctx := h.waitCtx(t)
	gp, gdevs, err := h.stub.WaitPlugin(ctx, devices.ResourceGPU)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range gdevs {
		ids = append(ids, d.GetID())
	}
	if err := h.p.Update(withHealth(rs, false, "nvml: event wait: driver not loaded", ids...)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.stub.WaitDevices(ctx, devices.ResourceGPU, func(ds []*pluginapi.Device) bool {
		for _, d := range ds {
			if d.GetHealth() != pluginapi.Unhealthy {
				return false
			}
		}
		return len(ds) == 8
	}); err != nil {
		t.Fatalf("GPUs still advertised healthy after NVML failed: %v", err)
	}
	_, hdevs, err := h.stub.WaitPlugin(ctx, devices.ResourceHCA)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range hdevs {
		if d.GetHealth() != pluginapi.Healthy {
			t.Errorf("HCA %s is %s after an NVML failure, want Healthy", d.GetID(), d.GetHealth())
		}
	}
	resp, err := gp.Client.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{
		{AvailableDeviceIDs: []string{"GPU-gone"}, AllocationSize: 1},
	}})
	if err != nil || len(resp.GetContainerResponses()) != 1 || len(resp.GetContainerResponses()[0].GetDeviceIDs()) != 0 {
		t.Errorf("GetPreferredAllocation(unknown device) = %v, %v; want an empty answer and no error", resp, err)
	}
	if err := waitReady(t, h); err != nil {
		t.Errorf("Ready() = %v after an NVML failure, want nil (still serving)", err)
	}
}

func TestResourcesComeAndGo(t *testing.T) {
	t.Parallel()
	devs := loadFixture(t, "dgx-h100")
	all := byKind(devs)
	h := startHarness(t, Config{}, BuildResources(all, BuildOptions{}))
	ctx := h.waitCtx(t)
	for _, r := range []string{devices.ResourceGPU, devices.ResourceHCA} {
		if _, _, err := h.stub.WaitPlugin(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	hcaSock := socketOf(t, h.dir, devices.ResourceHCA)
	// Hot-unplug one GPU and drop the HCA resource.
	less := map[string][]devices.Device{devices.ResourceGPU: all[devices.ResourceGPU][1:]}
	if err := h.p.Update(BuildResources(less, BuildOptions{})); err != nil {
		t.Fatal(err)
	}
	if _, err := h.stub.WaitDevices(ctx, devices.ResourceGPU, func(ds []*pluginapi.Device) bool { return len(ds) == 7 }); err != nil {
		t.Fatalf("GPU list not updated after hot-unplug: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(hcaSock); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket %s still there after its resource was removed", hcaSock)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := h.stub.Registrations(devices.ResourceGPU); n != 1 {
		t.Errorf("Registrations(%s) = %d after a device change, want 1 (no restart)", devices.ResourceGPU, n)
	}
	// And the HCAs come back.
	if err := h.p.Update(BuildResources(all, BuildOptions{})); err != nil {
		t.Fatal(err)
	}
	if _, err := h.stub.WaitDevices(ctx, devices.ResourceHCA, func(ds []*pluginapi.Device) bool { return len(ds) == 10 }); err != nil {
		t.Fatalf("HCA resource did not come back: %v", err)
	}
}

func TestStopRemovesSockets(t *testing.T) {
	t.Parallel()
	dir := shortDir(t)
	stub, err := kubeletstub.Start(kubeletstub.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer stub.Stop()
	p, err := New(Config{KubeletDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Update(dgxResources(t, BuildOptions{})); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{p: p, exited: make(chan struct{})}
	go func() { h.runErr = p.Run(ctx); close(h.exited) }()
	// Not h.waitCtx: the call after the stop must fail for the plugin's
	// stop, not for the context's.
	wctx := waitCtx(t)
	gp, _, err := stub.WaitPlugin(h.waitCtx(t), devices.ResourceGPU)
	if err != nil {
		t.Fatal(err)
	}
	// An open ListAndWatch stream (the stub's) must not hold the stop up.
	cancel()
	select {
	case <-h.exited:
		if h.runErr != nil {
			t.Errorf("Run() = %v, want nil", h.runErr)
		}
	case <-time.After(DefaultStopTimeout + 5*time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 1 || ents[0].Name() != "kubelet.sock" {
		t.Errorf("kubelet dir after Run returned: %v, %v; want only kubelet.sock", ents, err)
	}
	if _, err := gp.Client.GetDevicePluginOptions(wctx, &pluginapi.Empty{}); err == nil {
		t.Errorf("GetDevicePluginOptions after stop succeeded, want an error")
	}
}

func TestTopologyAllOrNone(t *testing.T) {
	t.Parallel()
	rs := BuildResources(byKind(loadFixture(t, "broken")), BuildOptions{ExcludeTopology: []string{devices.ResourceFPGA}})
	h := startHarness(t, Config{}, rs)
	ctx := h.waitCtx(t)
	for _, tc := range []struct {
		resource string
		topology bool
	}{
		{devices.ResourceGPU, false},  // one GPU has no NUMA node
		{devices.ResourceHCA, true},   // all known
		{devices.ResourceFPGA, false}, // excluded by option
	} {
		_, devs, err := h.stub.WaitPlugin(ctx, tc.resource)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range devs {
			if got := d.GetTopology() != nil; got != tc.topology {
				t.Errorf("%s device %s has topology %v, want %v", tc.resource, d.GetID(), d.GetTopology(), tc.topology)
			}
		}
	}
}

func TestHealthzAndMetrics(t *testing.T) {
	t.Parallel()
	dir := shortDir(t)
	p, err := New(Config{KubeletDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	rs := dgxResources(t, BuildOptions{})
	if err := p.Update(rs); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /healthz before Run = %d %q, want 503", code, body)
	}
	// Serving but no kubelet yet: not ready.
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{p: p, exited: make(chan struct{})}
	go func() { h.runErr = p.Run(ctx); close(h.exited) }()
	defer func() { cancel(); <-h.exited }()
	time.Sleep(50 * time.Millisecond)
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not registered") {
		t.Errorf("GET /healthz without a kubelet = %d %q, want 503 naming unregistered resources", code, body)
	}
	stub, err := kubeletstub.Start(kubeletstub.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer stub.Stop()
	wctx := h.waitCtx(t)
	for _, r := range []string{devices.ResourceGPU, devices.ResourceHCA} {
		if _, _, err := stub.WaitPlugin(wctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitReady(t, h); err != nil {
		t.Fatal(err)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz when registered = %d %q, want 200", code, body)
	}
	if err := p.Update(withHealth(rs, false, "xid 48: double bit ECC error", "GPU-0b8c3f2e-7f1a-4c11-9d52-1a2b3c4d5e00")); err != nil {
		t.Fatal(err)
	}
	gp, _, _ := stub.WaitPlugin(wctx, devices.ResourceGPU)
	if _, err := gp.Client.Allocate(wctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{"GPU-0b8c3f2e-7f1a-4c11-9d52-1a2b3c4d5e01"}}}}); err != nil {
		t.Fatal(err)
	}
	_, body := get("/metrics")
	for _, want := range []string{
		`slipway_device_plugin_devices{health="Healthy",resource="nvidia.com/gpu"} 7`,
		`slipway_device_plugin_devices{health="Unhealthy",resource="nvidia.com/gpu"} 1`,
		`slipway_device_plugin_devices{health="Healthy",resource="slipway.dev/hca"} 10`,
		`slipway_device_plugin_registered{resource="nvidia.com/gpu"} 1`,
		`slipway_device_plugin_registrations_total{resource="nvidia.com/gpu",result="ok"} 1`,
		`slipway_device_plugin_allocations_total{resource="nvidia.com/gpu",result="ok"} 1`,
		`slipway_device_plugin_allocate_seconds_count{resource="nvidia.com/gpu"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /metrics lacks %s", want)
		}
	}
}

func TestUpdateRejectsInvalid(t *testing.T) {
	t.Parallel()
	p, err := New(Config{KubeletDir: shortDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	good := dgxResources(t, BuildOptions{})
	bad := []Resource{
		{Name: "gpu", Devices: good[0].Devices},
		{Name: "x.dev/dup", Devices: []Device{good[0].Devices[0], good[0].Devices[0]}},
		{Name: "x.dev/" + strings.Repeat("long", 30), Devices: good[0].Devices},
	}
	err = p.Update(append(slices.Clone(good), bad...))
	if err == nil {
		t.Fatal("Update(invalid resources) = nil, want an error naming them")
	}
	for _, want := range []string{`"gpu"`, "x.dev/dup", "the kubelet takes at most 63"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Update error %q does not mention %s", err, want)
		}
	}
	p.mu.Lock()
	n := len(p.servers)
	p.mu.Unlock()
	if n != len(good) {
		t.Errorf("after Update with %d valid resources, %d are served", len(good), n)
	}
}

func TestSocketGlob(t *testing.T) {
	const fpga = "slipway.dev/fpga-15bd0a5d0c6e4ba4b7c0d3e0f4a8c1e2"
	for _, tc := range []struct{ dir, name, want string }{
		{pluginapi.DevicePluginPath, "nvidia.com/gpu", pluginapi.DevicePluginPath + "slipway-nvidia.com_gpu-????????.sock"},
		{pluginapi.DevicePluginPath, "slipway.dev/hca", pluginapi.DevicePluginPath + "slipway-hca-????????.sock"},
		{pluginapi.DevicePluginPath, fpga, pluginapi.DevicePluginPath + "slipway-fpga-15bd0a5d0c6e4ba4b7c0d3e0f4a8c1e2-????????.sock"},
		// microk8s: the readable name would be 117 bytes.
		{"/var/snap/microk8s/common/var/lib/kubelet/device-plugins", fpga, "/var/snap/microk8s/common/var/lib/kubelet/device-plugins/slipway-h3b344b86-????????.sock"},
	} {
		got := SocketGlob(tc.dir, tc.name)
		if got != tc.want || len(got) > maxSocketPath {
			t.Errorf("SocketGlob(%s, %s) = %s (%d bytes), want %s", tc.dir, tc.name, got, len(got), tc.want)
		}
		if ok, _ := filepath.Match(got, newSocketPath(tc.dir, tc.name)); !ok {
			t.Errorf("newSocketPath(%s, %s) does not match SocketGlob", tc.dir, tc.name)
		}
	}
}

// TestFPGAIdentityUnderDeepKubeletDir: a per-identity FPGA resource is
// served and registered under a kubelet directory as deep as microk8s's,
// where its socket named in full would not fit a unix socket path (it was
// refused: "socket path is 117 bytes").
func TestFPGAIdentityUnderDeepKubeletDir(t *testing.T) {
	t.Parallel()
	base := shortDir(t)
	dir := filepath.Join(base, strings.Repeat("d", len("/var/snap/microk8s/common/var/lib/kubelet/device-plugins")-len(base)-1))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stub, err := kubeletstub.Start(kubeletstub.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer stub.Stop()
	p, err := New(Config{KubeletDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	rs := BuildResources(byKind(loadFixture(t, "fpga")), BuildOptions{})
	const name = "slipway.dev/fpga-15bd0a5d0c6e4ba4b7c0d3e0f4a8c1e2"
	rs = rs[:1]
	rs[0].Name = name
	if err := p.Update(rs); err != nil {
		t.Fatalf("Update(%s) under %s: %v", name, dir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{p: p, exited: make(chan struct{})}
	go func() { h.runErr = p.Run(ctx); close(h.exited) }()
	defer func() { cancel(); <-h.exited }()
	if _, devs, err := stub.WaitPlugin(h.waitCtx(t), name); err != nil || len(devs) != len(rs[0].Devices) {
		t.Fatalf("%s: %d devices, %v; want %d", name, len(devs), err, len(rs[0].Devices))
	}
}
