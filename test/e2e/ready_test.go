//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/kubeadm"
	"github.com/slipway-dev/slipway/pkg/phonehome"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/provision/assemble"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
	"github.com/slipway-dev/slipway/test/e2e/lab"
)

// EnvNodeImageDir overrides where the node image and the bundle are found
// (default images/node/.cache/out of this module, written by
// `make node-image image-bundle`).
const EnvNodeImageDir = "SLIPWAY_NODE_IMAGE_DIR"

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
	testenv.RequireBuilt(t, "run make node-image image-bundle as root", filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img"),
		filepath.Join(dir, "bundle", "control-plane.json"), filepath.Join(dir, "bundle", "worker.json"))
	return dir
}

// EnvNodeDebug adds slipway.debug to the node image's kernel command line:
// every minute each node writes its containers, their restarts and last log
// lines and the kubelet's journal to its serial console.
const EnvNodeDebug = "SLIPWAY_E2E_NODE_DEBUG"

type readyInventory struct {
	Interface             string
	IPMIPort, RedfishPort int
	// NodeArgs is appended to both profiles' kernel arguments.
	NodeArgs string
}

func nodeArgs() string {
	if os.Getenv(EnvNodeDebug) == "1" {
		return " slipway.debug"
	}
	return ""
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
// configuration and the imported image all work. Before it sleeps the pod
// looks at the node's /etc/kubernetes/pki: the cluster CA certificate must
// be there (kubeadm join wrote it) and the CA key must not, or the pod
// fails; so Running also means no CA key reached the node.
func runPodOn(ctx context.Context, t *testing.T, client kubernetes.Interface, node string, vm *lab.VM) {
	t.Helper()
	hostPathDir := corev1.HostPathDirectory
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ready-probe", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:      node,
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "check", Image: testPodImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"/bin/busybox", "sh", "-c",
					"test -e /host/pki/ca.crt || { echo no CA certificate; exit 2; }; " +
						"test ! -e /host/pki/ca.key || { echo CA key on a worker; exit 3; }; exec /bin/busybox sleep 3600"},
				VolumeMounts: []corev1.VolumeMount{{Name: "kubernetes", MountPath: "/host", ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{Name: "kubernetes", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: "/etc/kubernetes", Type: &hostPathDir}}}},
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
		switch p.Status.Phase {
		case corev1.PodRunning:
			return true, nil
		case corev1.PodFailed, corev1.PodSucceeded:
			return false, fmt.Errorf("pod ended: %s", podStatus(p))
		}
		return false, nil
	}, vm)
	if err != nil {
		t.Fatalf("pod %s on %s Running: %v (last status %s)", pod.Name, node, err, podStatus(last))
	}
	t.Logf("pod %s Running on %s (%s) after %.1fs: /etc/kubernetes/pki there holds ca.crt and no ca.key", pod.Name, node, last.Status.PodIP, time.Since(start).Seconds())
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
		if c.State.Terminated != nil {
			fmt.Fprintf(&b, " terminated=exit %d(%s)", c.State.Terminated.ExitCode, c.State.Terminated.Message)
		}
	}
	return b.String()
}

// TestUpToReady runs `provisioner up`'s code path (package assemble, as
// cmd/provisioner/up.go calls it, in its default kubeadm mode) on one
// control-plane node and one worker booting the real node image: cp-1
// behind OpenIPMI's ipmi_sim, worker-1 behind Slipway's Redfish simulator.
// up serves DHCP, TFTP and HTTP itself, gives cp-1 its kubeadm init
// configuration and worker-1 (which netboots early and is held) its join
// configuration with its own bootstrap token, both as cloud-config; the
// nodes import their images from the offline bundle and bring up the flat
// pod network, and up follows each Node object until it is Ready.
//
// The first run is interrupted (like ^C) once the worker reported that its
// kubeadm join started; a second run on the same state directory resumes
// from the journal and follows the worker to Ready without power-cycling
// it. Then a pod of the bundle's busybox runs on the worker, and checks
// from inside that the worker's disk holds no cluster CA key; the worker's
// bootstrap token must be gone from the cluster.
func TestUpToReady(t *testing.T) {
	testenv.RequireCommands(t, "ipmi_sim", "ipmitool")
	const password = "lab-password"
	t.Setenv("SLIPWAY_E2E_BMC_PASSWORD", password)
	l := requireLab(t)
	assets := requireNodeImage(t)
	_, inv := writeReadyInventory(t, l, readyInventory{Interface: l.Bridge(), IPMIPort: 9623, RedfishPort: 8443, NodeArgs: nodeArgs()})
	cpNode, _ := inv.Node("cp-1")
	workerNode, _ := inv.Node("worker-1")
	cp := newReadyVM(t, l, cpNode, controlPlaneCPUs, controlPlaneMiB)
	worker := newReadyVM(t, l, workerNode, workerCPUs, workerMiB)
	ipmiBMC := startIPMIBMC(t, l, cp, password)
	redfishBMC, redfishOn := startRedfishBMC(t, worker, password)
	onlySimulated(inv, map[string]inventory.BMC{cp.Name(): ipmiBMC, worker.Name(): redfishBMC})
	// A server's default boot is its disk (these VMs have none): only up's
	// one-time override makes them network-boot.
	cp.SetBootDevice(lab.BootDisk)
	worker.SetBootDevice(lab.BootDisk)

	ctx, cancel := context.WithTimeout(t.Context(), readyTimeout)
	defer cancel()
	state := filepath.Join(t.TempDir(), "state")
	rec := newUpRecorder()
	t.Cleanup(func() {
		t.Logf("up's progress:\n%s", rec.progressText())
		if t.Failed() {
			t.Logf("boot events (seconds after the first run started):\n%s", rec.formatEvents(rec.start))
		}
	})

	joinStarted := func(u provision.Update) bool {
		return u.Node == worker.Name() && strings.Contains(u.Event, "kubeadm-join status=started")
	}
	rep, err := runUpToReady(ctx, t, inv, assets, state, rec, joinStarted)
	t.Logf("first run (interrupted):\n%s", summary(rep))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first run = %v, want it interrupted (context.Canceled) once %s started its join", err, worker.Name())
	}
	wantEnd := map[string]provision.Phase{cp.Name(): provision.PhaseReady, worker.Name(): provision.PhaseConfigFetched}
	if diff := cmp.Diff(wantEnd, endPhases(rep)); diff != "" {
		t.Fatalf("phases at the interruption (-want +got):\n%s", diff)
	}

	rec.resetCounts()
	rep, err = runUpToReady(ctx, t, inv, assets, state, rec, nil)
	t.Logf("resumed run:\n%s", summary(rep))
	if err != nil {
		t.Fatalf("resumed run: %v", err)
	}
	wantEnd[worker.Name()] = provision.PhaseReady
	if diff := cmp.Diff(wantEnd, endPhases(rep)); diff != "" {
		t.Fatalf("phases after the resumed run (-want +got):\n%s", diff)
	}
	if got := rec.scripts(worker.Name()); got != 0 {
		t.Errorf("iPXE scripts served to %s in the resumed run = %d, want 0 (no second netboot)", worker.Name(), got)
	}
	rec.countAll()
	for _, vm := range []*lab.VM{cp, worker} {
		if got := rec.count(vm.Name(), provision.PhasePoweringOn); got != 1 {
			t.Errorf("%s entered %s %d times over both runs, want 1", vm.Name(), provision.PhasePoweringOn, got)
		}
	}
	if got := redfishOn(); got != 1 {
		t.Errorf("power-on requests the Redfish BMC of %s received = %d, want 1", worker.Name(), got)
	}
	for _, name := range []string{cp.Name(), worker.Name()} {
		on, ready := rec.entered(name, provision.PhasePoweringOn), rec.entered(name, provision.PhaseReady)
		t.Logf("%s: power-on to Ready %.0f s; %s", name, ready.Sub(on).Seconds(), rec.phaseTimes(name))
	}
	for _, vm := range []*lab.VM{cp, worker} {
		t.Logf("%s: QEMU resident memory at Ready %d MiB (guest %d MiB + TCG)", vm.Name(), qemuRSS(vm), map[string]int{cp.Name(): controlPlaneMiB, worker.Name(): workerMiB}[vm.Name()])
	}

	// The cluster the first node created: the worker's token is gone, and a
	// pod runs on the worker.
	pki, err := kubeadm.EnsurePKI(kubeadm.PKIConfig{Dir: filepath.Join(state, "pki")})
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(pki.AdminRESTConfig("https://"+inv.Cluster.ControlPlaneEndpoint, 0))
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := client.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: kubeadm.NodeLabel + "=" + worker.Name()})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		t.Errorf("bootstrap token secret %s of %s still exists after it joined", s.Name, worker.Name())
	}
	runPodOn(ctx, t, client, worker.Name(), worker)
}

// runUpToReady runs up's assembly in its default kubeadm mode with up's
// default timeouts and attempts, early netboot on (see runAssembly).
func runUpToReady(ctx context.Context, t *testing.T, inv *inventory.Inventory, assets, state string, rec *upRecorder, stop func(provision.Update) bool) (*provision.Report, error) {
	t.Helper()
	return runAssembly(ctx, t, assemble.Options{
		Inventory: inv, StateDir: state, Command: "provisioner up (e2e)",
		Boot:         assemble.Boot{TFTPRoot: ipxeDir, AssetDir: assets},
		EarlyNetboot: true,
	}, rec, stop)
}

// entered returns when node first entered phase p over all runs, or the
// zero time.
func (r *upRecorder) entered(node string, p provision.Phase) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range r.updates {
		if u.Node == node && u.PhaseChanged && u.Phase == p {
			return u.Time
		}
	}
	return time.Time{}
}

// phaseTimes lists, for node, when it first entered each phase and when its
// boot reached each milestone (initrd served, config fetched, kubeadm
// reports), in seconds after it was powered on.
func (r *upRecorder) phaseTimes(node string) string {
	on := r.entered(node, provision.PhasePoweringOn)
	r.mu.Lock()
	defer r.mu.Unlock()
	type mark struct {
		at   time.Time
		what string
	}
	var ms []mark
	seen := map[string]bool{}
	for _, u := range r.updates {
		if u.Node == node && u.PhaseChanged && !seen[string(u.Phase)] {
			seen[string(u.Phase)] = true
			ms = append(ms, mark{u.Time, string(u.Phase)})
		}
	}
	for _, e := range r.events {
		if e.Node != node {
			continue
		}
		what := ""
		switch e.Kind {
		case bootevent.InitrdServed, bootevent.ConfigFetched:
			what = string(e.Kind)
		case bootevent.PhoneHome:
			if rep, err := phonehome.Parse(e.Detail); err == nil && strings.HasPrefix(rep.Step, "kubeadm") {
				what = rep.Step + " " + string(rep.Status)
			}
		}
		if what != "" && !seen[what] {
			seen[what] = true
			ms = append(ms, mark{e.Time, what})
		}
	}
	slices.SortStableFunc(ms, func(a, b mark) int { return a.at.Compare(b.at) })
	var b strings.Builder
	for i, m := range ms {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %+.0fs", m.what, m.at.Sub(on).Seconds())
	}
	return b.String()
}
