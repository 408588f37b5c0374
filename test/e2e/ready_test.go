//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/kubeadm"
	"github.com/slipway-dev/slipway/pkg/pxe"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
	"github.com/slipway-dev/slipway/pkg/pxe/httpboot"
	"github.com/slipway-dev/slipway/test/e2e/lab"
)

// EnvNodeImageDir overrides where the node image and the bundle are found
// (default images/node/.cache/out of this module, written by
// `make node-image image-bundle`).
const EnvNodeImageDir = "SLIPWAY_NODE_IMAGE_DIR"

// EnvReady opts in to the tests that boot the real node image.
const EnvReady = "SLIPWAY_E2E_READY"

// Lab VM sizes for the real node image, measured (see the README's
// benchmark table): kubeadm's preflight wants 2 CPUs and 1700 MB on a
// control plane.
const (
	controlPlaneMiB  = 3072
	controlPlaneCPUs = 2
	workerMiB        = 2048
	workerCPUs       = 1
)

// readyTimeout bounds power-on to Ready for the whole cluster under TCG.
const readyTimeout = 40 * time.Minute

// testPodImage is the bundle's extra image the test pod runs (busybox-static).
const testPodImage = "localhost/slipway/busybox:1.35"

// requireNodeImage returns the asset directory holding vmlinuz, initrd.img
// and bundle/ (the image bundle).
func requireNodeImage(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(EnvNodeImageDir)
	if dir == "" {
		wd, _ := os.Getwd()
		dir = filepath.Join(wd, "..", "..", "images", "node", ".cache", "out")
	}
	testenv.RequireFiles(t, filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img"),
		filepath.Join(dir, "bundle", "control-plane.json"), filepath.Join(dir, "bundle", "worker.json"))
	return dir
}

type readyInventory struct {
	Interface             string
	IPMIPort, RedfishPort int
}

func writeReadyInventory(t testing.TB, l *lab.Lab, ri readyInventory) (string, *inventory.Inventory) {
	t.Helper()
	tmpl, err := template.ParseFiles(filepath.Join("testdata", "ready-inventory.yaml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, ri); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(l.Dir(), "inventory.yaml")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Load(path)
	if err != nil {
		t.Fatalf("inventory.Load(%s): %v", path, err)
	}
	return path, inv
}

// eventLog records the boot events of a bus.
type eventLog struct {
	mu     sync.Mutex
	events []bootevent.Event
}

func (e *eventLog) follow(bus *bootevent.Bus) func() {
	ch, unsubscribe := bus.Subscribe(4096)
	go func() {
		for ev := range ch {
			e.mu.Lock()
			e.events = append(e.events, ev)
			e.mu.Unlock()
		}
	}()
	return unsubscribe
}

// first returns the time of node's first event matching, or the zero time.
func (e *eventLog) first(node string, match func(bootevent.Event) bool) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.events {
		if ev.Node == node && match(ev) {
			return ev.Time
		}
	}
	return time.Time{}
}

func (e *eventLog) phoneHomes(node string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.events {
		if ev.Node == node && ev.Kind == bootevent.PhoneHome {
			out = append(out, ev.Detail)
		}
	}
	return out
}

func kindIs(k bootevent.Kind) func(bootevent.Event) bool {
	return func(e bootevent.Event) bool { return e.Kind == k }
}

func stepReport(step, status string) func(bootevent.Event) bool {
	return func(e bootevent.Event) bool {
		return e.Kind == bootevent.PhoneHome && strings.Contains(e.Detail, "step="+step) && strings.Contains(e.Detail, "status="+status)
	}
}

// nodeTimes is one node's path from power-on to Ready.
type nodeTimes struct {
	name              string
	powerOn           time.Time
	registered, ready time.Time
	qemuRSSMiB        int
}

func (n nodeTimes) phases(ev *eventLog, kubeadmStep string) string {
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return fmt.Sprintf("%.1fs", t.Sub(n.powerOn).Seconds())
	}
	return fmt.Sprintf("%s: firmware+dhcp %s, netboot script %s, image fetched %s, config fetched %s, kubeadm started %s, kubeadm done %s, node registered %s, Ready %s, qemu rss %d MiB",
		n.name,
		at(ev.first(n.name, kindIs(bootevent.DHCPAck))),
		at(ev.first(n.name, kindIs(bootevent.ScriptServed))),
		at(ev.first(n.name, kindIs(bootevent.InitrdServed))),
		at(ev.first(n.name, kindIs(bootevent.ConfigFetched))),
		at(ev.first(n.name, stepReport(kubeadmStep, "started"))),
		at(ev.first(n.name, stepReport(kubeadmStep, "ok"))),
		at(n.registered), at(n.ready), n.qemuRSSMiB)
}

// TestNodeImageToReady boots the real node image (images/node) on two lab
// VMs from Slipway's boot services with real kubeadm configurations: the
// first runs kubeadm init from a cloud-config, the second kubeadm join from
// a script; images come from the offline bundle and the pod network is the
// flat one. Both Nodes must become Ready and a pod must run on the worker.
// It drives the kubeadm Bootstrapper directly (power through the lab, not
// a BMC); TestUpToReady does the same through up's own code path.
func TestNodeImageToReady(t *testing.T) {
	if os.Getenv(EnvReady) != "1" {
		// Opt-in until it has passed on this machine and its cold cost is
		// in .ci/run: it needs make node-image image-bundle (root, ~20 min of
		// builds cold) and 10-40 min of TCG.
		t.Skipf("set %s=1 after make node-image image-bundle to run the real node image to Ready", EnvReady)
	}
	l := requireLab(t)
	assets := requireNodeImage(t)
	_, inv := writeReadyInventory(t, l, readyInventory{Interface: l.Bridge(), IPMIPort: 9623, RedfishPort: 8443})
	cp, _ := inv.Node("cp-1")
	worker, _ := inv.Node("worker-1")

	pki, err := kubeadm.EnsurePKI(kubeadm.PKIConfig{Dir: filepath.Join(t.TempDir(), "pki")})
	if err != nil {
		t.Fatal(err)
	}
	boot := func(f kubeadm.Format) *kubeadm.Bootstrapper {
		b, err := kubeadm.New(kubeadm.Config{Inventory: inv, PKI: pki, Format: f,
			PhoneHomeURL: "http://10.77.0.1:8080", Log: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Both forms the provisioner renders: cloud-config for the first
	// control plane, a plain script for the worker.
	cpBoot, workerBoot := boot(kubeadm.FormatCloudConfig), boot(kubeadm.FormatScript)
	workerIssued := make(chan struct{})
	render := httpboot.RendererFunc(func(ctx context.Context, n inventory.Node) ([]byte, error) {
		if n.Name == worker.Name {
			// Held until the cluster can take the worker's token, as up's
			// early netboot holds it.
			select {
			case <-workerIssued:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return workerBoot.Render(ctx, n)
		}
		return cpBoot.Render(ctx, n)
	})

	ctx, cancel := context.WithTimeout(t.Context(), readyTimeout)
	defer cancel()
	bus := bootevent.NewBus()
	ev := &eventLog{}
	defer ev.follow(bus)()
	svc, err := pxe.New(pxe.Config{Inventory: inv, TFTPRoot: ipxeDir, AssetDir: assets, Renderer: render, Bus: bus, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	svcCtx, stopSvc := context.WithCancel(context.Background())
	svcDone := make(chan error, 1)
	go func() { svcDone <- svc.Run(svcCtx) }()
	defer func() {
		stopSvc()
		if err := <-svcDone; err != nil {
			t.Errorf("boot services: %v", err)
		}
	}()
	for _, r := range []<-chan struct{}{svc.HTTP().Ready(), svc.TFTP().Ready(), svc.DHCP().Ready()} {
		select {
		case <-r:
		case err := <-svcDone:
			t.Fatalf("boot services stopped at start: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("boot services not ready within 10 s")
		}
	}

	cpVM := newReadyVM(t, l, cp, controlPlaneCPUs, controlPlaneMiB)
	workerVM := newReadyVM(t, l, worker, workerCPUs, workerMiB)
	if err := cpBoot.Issue(ctx, cp, kubeadm.KindInit); err != nil {
		t.Fatal(err)
	}
	times := map[string]*nodeTimes{cp.Name: {name: cp.Name}, worker.Name: {name: worker.Name}}
	for _, vm := range []*lab.VM{cpVM, workerVM} {
		if err := vm.PowerOn(ctx); err != nil {
			t.Fatal(err)
		}
		times[vm.Name()].powerOn = vm.PoweredOnAt()
	}
	defer func() {
		for _, n := range []string{cp.Name, worker.Name} {
			t.Logf("node %s reports: %q", n, ev.phoneHomes(n))
		}
		t.Logf("timeline:\n  %s\n  %s", times[cp.Name].phases(ev, "kubeadm-init"), times[worker.Name].phases(ev, "kubeadm-join"))
	}()

	// The API answers once kubeadm init has started the control plane.
	server := "https://" + cpBoot.Endpoint()
	client, err := kubernetes.NewForConfig(pki.AdminRESTConfig(server, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := pollUntil(ctx, 5*time.Second, func() (bool, error) {
		_, err := client.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
		return err == nil, nil
	}, cpVM); err != nil {
		t.Fatalf("cluster API at %s: %v", server, err)
	}
	cpBoot.SetClient(client)
	workerBoot.SetClient(client)
	if err := workerBoot.Issue(ctx, worker, kubeadm.KindWorker); err != nil {
		t.Fatal(err)
	}
	close(workerIssued)
	tok, _ := workerBoot.Token(worker.Name)

	for _, n := range []struct {
		name string
		vm   *lab.VM
	}{{cp.Name, cpVM}, {worker.Name, workerVM}} {
		nt := times[n.name]
		err := pollUntil(ctx, 2*time.Second, func() (bool, error) {
			node, err := client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			if err != nil {
				return false, nil // the API restarting under kubeadm
			}
			if nt.registered.IsZero() {
				nt.registered = node.CreationTimestamp.Time
			}
			if kubeadm.NodeReady(node) {
				nt.ready = time.Now()
				nt.qemuRSSMiB = qemuRSS(n.vm)
				return true, nil
			}
			return false, nil
		}, n.vm)
		if err != nil {
			t.Fatalf("node %s Ready: %v", n.name, err)
		}
	}
	if err := workerBoot.WaitJoined(ctx, worker.Name); err != nil {
		t.Fatalf("WaitJoined(%s): %v", worker.Name, err)
	}
	if _, err := client.CoreV1().Secrets("kube-system").Get(ctx, tok.SecretName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("worker's bootstrap token %s after the join: %v, want it deleted", tok.ID, err)
	}
	runPodOn(ctx, t, client, worker.Name, workerVM)
}

func newReadyVM(t testing.TB, l *lab.Lab, n inventory.Node, cpus, mib int) *lab.VM {
	t.Helper()
	vm, err := l.NewVM(t.Context(), lab.VMConfig{Name: n.Name, MAC: net.HardwareAddr(n.MAC), Firmware: lab.FirmwareBIOS, CPUs: cpus, MemoryMiB: mib})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serial console of %s (%s):\n%s", n.Name, vm.ConsolePath(), vm.Console())
		}
	})
	return vm
}

// pollUntil calls cond every interval until it is true, ctx ends or vm's
// QEMU exits (a node that panicked will never answer).
func pollUntil(ctx context.Context, interval time.Duration, cond func() (bool, error), vm *lab.VM) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-vm.Exited():
			return fmt.Errorf("vm %s powered off (see its console)", vm.Name())
		case <-t.C:
		}
	}
}

// qemuRSS returns the resident memory of vm's QEMU in MiB (what the guest
// has touched), or 0 when it cannot be read.
func qemuRSS(vm *lab.VM) int {
	out, err := exec.Command("sh", "-c", "ps -o rss= -C qemu-system-x86_64 -o args= | grep -- 'console-"+vm.Name()+".log' | awk '{print $1}'").Output()
	if err != nil {
		return 0
	}
	var kib int
	fmt.Sscan(string(out), &kib)
	return kib / 1024
}

// runPodOn runs a pod of the bundle's busybox image on node and waits for it
// to run: the worker's kubelet, containerd, pause, the flat network's CNI
// configuration and the imported image all work.
func runPodOn(ctx context.Context, t *testing.T, client kubernetes.Interface, node string, vm *lab.VM) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ready-probe", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName: node,
			Containers: []corev1.Container{{
				Name: "sleep", Image: testPodImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"/bin/busybox", "sleep", "3600"},
			}},
		},
	}
	if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var last *corev1.Pod
	err := pollUntil(ctx, 2*time.Second, func() (bool, error) {
		p, err := client.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return p.Status.Phase == corev1.PodRunning, nil
	}, vm)
	if err != nil {
		t.Fatalf("pod %s on %s Running: %v (last status %+v)", pod.Name, node, err, podStatus(last))
	}
	t.Logf("pod %s Running on %s (%s) after %.1fs", pod.Name, node, last.Status.PodIP, time.Since(start).Seconds())
}

func podStatus(p *corev1.Pod) string {
	if p == nil {
		return "none"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase=%s", p.Status.Phase)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, " %s=%s(%s)", c.Type, c.Status, c.Message)
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Waiting != nil {
			fmt.Fprintf(&b, " waiting=%s(%s)", c.State.Waiting.Reason, c.State.Waiting.Message)
		}
	}
	return b.String()
}
