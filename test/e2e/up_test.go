//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/bmc/ipmisim"
	"github.com/slipway-dev/slipway/pkg/bmc/redfishsim"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/phonehome"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/provision/assemble"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
	"github.com/slipway-dev/slipway/test/e2e/lab"
)

// upTimeout bounds one whole run of up in the lab: two BIOS boots one after
// the other (the worker waits for the control plane), each about 8-11 s
// under TCG on an idle machine, plus the BMC calls and their power-state
// polls, with room for a loaded 2-core machine.
const upTimeout = 4 * time.Minute

// TestUp runs `provisioner up`'s code path (package assemble, as
// cmd/provisioner/up.go calls it) against two lab VMs: bios-1, the control
// plane, behind OpenIPMI's ipmi_sim (bmclib's ipmitool provider), found
// running from its disk (where the diskless VM finds nothing), and par-1, a
// worker, behind Slipway's Redfish simulator (bmclib's Redfish provider),
// found powered off. up powers each off, sets a one-time PXE boot, powers
// it on and follows it through DHCP, the iPXE script, kernel and initrd,
// the node-config fetch and the join phone-home, serving the network boot
// itself.
//
// The lab has no Kubernetes API and no kubeadm: up runs in report-only
// mode, whose node config phones home the kubeadm step pkg/kubeadm's join
// script reports ("step=kubeadm-init status=ok" on the first control
// plane, "step=kubeadm-join status=ok" on the others) without running it,
// and a reported join counts as Ready. So this proves everything up to the
// join phone-home, not a real kubeadm join or a Node turning Ready.
//
// The first run is interrupted while the worker's OS runs its join; a
// second run on the same state directory resumes from the journal and
// takes the worker to Ready without power-cycling it, and a third finds
// both Ready and touches nothing. Each VM is power-cycled exactly once.
func TestUp(t *testing.T) {
	testenv.RequireCommands(t, "ipmi_sim", "ipmitool")
	const password = "lab-password"
	t.Setenv("SLIPWAY_E2E_BMC_PASSWORD", password)
	l := requireLab(t)
	img := requireImage(t)
	invPath := writeInventory(t, l, labInventory{Interface: l.Bridge(), RouterAdvertisements: true})
	inv, err := inventory.Load(invPath)
	if err != nil {
		t.Fatalf("inventory.Load(%s): %v", invPath, err)
	}

	cp := newVM(t, l, "bios-1", lab.FirmwareBIOS, "52:54:00:77:00:10")
	worker := newVM(t, l, "par-1", lab.FirmwareBIOS, "52:54:00:77:00:20")
	ipmiBMC := startIPMIBMC(t, l, cp, password)
	redfishBMC, redfishOn := startRedfishBMC(t, worker, password)
	// Only these two nodes are enabled; the BMC URLs are the simulators'.
	onlySimulated(inv, map[string]inventory.BMC{cp.Name(): ipmiBMC, worker.Name(): redfishBMC})
	// A server's default boot is its disk: only up's one-time override
	// makes it network-boot. The control plane is found running; a power
	// on is a no-op while a VM runs, so its netboot below also proves that
	// up's power off reached it.
	cp.SetBootDevice(lab.BootDisk)
	worker.SetBootDevice(lab.BootDisk)
	if err := cp.PowerOn(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !cp.PoweredOn() {
		t.Fatalf("%s: powered off right after PowerOn from disk", cp.Name())
	}

	state := filepath.Join(t.TempDir(), "state")
	rec := newUpRecorder()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("up's progress:\n%s", rec.progressText())
			t.Logf("boot events (seconds after the first run started):\n%s", rec.formatEvents(rec.start))
		}
	})

	// The first run takes both nodes from power-off through netboot, and is
	// interrupted (like ^C) while the worker's OS runs its join: after the
	// worker fetched its config and reported the join started.
	joinStarted := func(u provision.Update) bool {
		return u.Node == worker.Name() && strings.Contains(u.Event, "kubeadm-join status=started")
	}
	rep, err := runUpInLab(t, inv, img, state, rec, joinStarted)
	t.Logf("first run (interrupted):\n%s", summary(rep))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first run = %v, want it interrupted (context.Canceled)", err)
	}
	wantEnd := map[string]provision.Phase{cp.Name(): provision.PhaseReady, worker.Name(): provision.PhaseConfigFetched}
	if diff := cmp.Diff(wantEnd, endPhases(rep)); diff != "" {
		t.Fatalf("phases at the interruption (-want +got):\n%s", diff)
	}
	// Every node went through the chain in order (the boot server's events
	// may carry more between: retransmissions, Linux's own DHCP).
	wantPhases := map[string][]provision.Phase{
		cp.Name(): {provision.PhasePoweringOff, provision.PhaseSettingBoot, provision.PhasePoweringOn, provision.PhaseWaitingDHCP,
			provision.PhaseNetbooting, provision.PhaseConfigFetched, provision.PhaseJoining, provision.PhaseReady},
		worker.Name(): {provision.PhasePoweringOff, provision.PhaseSettingBoot, provision.PhasePoweringOn, provision.PhaseWaitingDHCP,
			provision.PhaseNetbooting, provision.PhaseConfigFetched},
	}
	wantEvents := []bootevent.Kind{bootevent.DHCPDiscover, bootevent.DHCPAck, bootevent.ScriptServed, bootevent.KernelServed,
		bootevent.InitrdServed, bootevent.ConfigFetched, bootevent.PhoneHome}
	for _, vm := range []*lab.VM{cp, worker} {
		name := vm.Name()
		if diff := cmp.Diff(wantPhases[name], rec.phases(name)); diff != "" {
			t.Errorf("phases %s entered in the first run (-want +got):\n%s", name, diff)
		}
		if got := rec.nodeEvents(name); !subsequence(got, wantEvents) {
			t.Errorf("boot events of %s = %v\nwant, in this order: %v", name, got, wantEvents)
		}
		// Power-cycled exactly once: one netboot.
		if got := rec.scripts(name); got != 1 {
			t.Errorf("iPXE scripts served to %s in the first run = %d, want 1 (one netboot)", name, got)
		}
	}
	if got := rec.joins(cp.Name()); got != 1 {
		t.Errorf("join phone-homes of %s = %d, want 1", cp.Name(), got)
	}

	// The resumed run: the worker booted its OS already, so up must not
	// power-cycle it; it waits for the join phone-home its node config
	// keeps retrying while up is away. The control plane is Ready.
	rec.resetCounts()
	rep, err = runUpInLab(t, inv, img, state, rec, nil)
	t.Logf("resumed run:\n%s", summary(rep))
	if err != nil {
		t.Fatalf("resumed run: %v", err)
	}
	wantEnd = map[string]provision.Phase{cp.Name(): provision.PhaseReady, worker.Name(): provision.PhaseReady}
	if diff := cmp.Diff(wantEnd, endPhases(rep)); diff != "" {
		t.Errorf("phases after the resumed run (-want +got):\n%s", diff)
	}
	wantPhases = map[string][]provision.Phase{worker.Name(): {provision.PhaseJoining, provision.PhaseReady}}
	for _, vm := range []*lab.VM{cp, worker} {
		name := vm.Name()
		if diff := cmp.Diff(wantPhases[name], rec.phases(name)); diff != "" {
			t.Errorf("phases %s entered in the resumed run (-want +got):\n%s", name, diff)
		}
		if got := rec.scripts(name); got != 0 {
			t.Errorf("iPXE scripts served to %s in the resumed run = %d, want 0 (no netboot)", name, got)
		}
		if got := rec.joins(name); got != 1 {
			t.Errorf("join phone-homes of %s over both runs = %d, want 1", name, got)
		}
	}

	// A third run finds both Ready in the journal and touches nothing.
	rec.resetCounts()
	rep, err = runUpInLab(t, inv, img, state, rec, nil)
	if err != nil {
		t.Fatalf("third run: %v", err)
	}
	if diff := cmp.Diff(wantEnd, endPhases(rep)); diff != "" {
		t.Errorf("phases after the third run (-want +got):\n%s", diff)
	}
	for _, r := range rep.Nodes {
		if !r.Resumed {
			t.Errorf("third run, node %s: not resumed from the journal", r.Node)
		}
		if got := rec.phases(r.Node); len(got) != 0 {
			t.Errorf("third run, node %s entered %v, want nothing", r.Node, got)
		}
	}

	// Over all three runs: each VM was power-cycled exactly once.
	if got := redfishOn(); got != 1 {
		t.Errorf("power-on requests the Redfish BMC of %s received = %d, want 1", worker.Name(), got)
	}
	rec.countAll()
	for _, vm := range []*lab.VM{cp, worker} {
		if got := rec.count(vm.Name(), provision.PhasePoweringOn); got != 1 {
			t.Errorf("%s entered %s %d times over all runs, want 1", vm.Name(), provision.PhasePoweringOn, got)
		}
		if got := rec.scripts(vm.Name()); got != 1 {
			t.Errorf("iPXE scripts served to %s over all runs = %d, want 1", vm.Name(), got)
		}
	}
	st, err := provision.ReadJournal(filepath.Join(state, provision.JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{cp.Name(), worker.Name()} {
		if r := st.Nodes[name]; r.Phase != provision.PhaseReady || r.Attempt != 1 {
			t.Errorf("journal record of %s = phase %s attempt %d, want phase %s attempt 1", name, r.Phase, r.Attempt, provision.PhaseReady)
		}
	}
	// Both VMs power themselves off after their own phone-home.
	for _, vm := range []*lab.VM{cp, worker} {
		select {
		case <-vm.Exited():
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not power off within 30 s of its phone-home", vm.Name())
		}
	}
}

// endPhases maps each node of rep to the phase it ended the run in.
func endPhases(rep *provision.Report) map[string]provision.Phase {
	m := map[string]provision.Phase{}
	for _, r := range rep.Nodes {
		m[r.Node] = r.Phase
	}
	return m
}

// runUpInLab runs up's assembly (package assemble, as cmd/provisioner/up.go
// calls it, in report-only mode: the lab has no Kubernetes API) with up's
// default attempts and BMC settings, until every node is Ready or failed,
// or until stop (when not nil) returns true for a progress update: then the
// run is interrupted as ^C interrupts up. It returns Run's report and
// error.
func runUpInLab(t *testing.T, inv *inventory.Inventory, img lab.NodeImage, state string, rec *upRecorder, stop func(provision.Update) bool) (*provision.Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), upTimeout)
	defer cancel()
	return runAssembly(ctx, t, assemble.Options{
		Inventory: inv, StateDir: state, Command: "provisioner up (e2e)",
		Boot: assemble.Boot{TFTPRoot: ipxeDir, AssetDir: img.Dir},
		// The lab has no cluster: the node config reports the kubeadm step
		// (after 2 s, as kubeadm takes a while) and the report counts as Ready.
		Join: assemble.JoinReportOnly, ReportDelay: 2 * time.Second,
		MaxAttempts: 3,
		Timeouts: provision.Timeouts{DHCP: time.Minute, Netboot: 2 * time.Minute, Join: 2 * time.Minute,
			Ready: time.Minute, BMC: 30 * time.Second},
	}, rec, stop)
}

// runAssembly runs up's assembly with opts (its Bus, Progress and Log are
// set here: rec records every update and boot event) until every node is
// Ready or failed, or until stop (when not nil) returns true for a progress
// update: then the run is interrupted as ^C interrupts up. It returns Run's
// report and error.
func runAssembly(ctx context.Context, t *testing.T, opts assemble.Options, rec *upRecorder, stop func(provision.Update) bool) (*provision.Report, error) {
	t.Helper()
	bus := bootevent.NewBus()
	events, unsubscribe := bus.Subscribe(4096)
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		for e := range events {
			rec.event(e)
		}
	}()
	defer func() { unsubscribe(); <-recDone }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rec.newRun()
	progress := rec.update
	if stop != nil {
		progress = func(u provision.Update) {
			rec.update(u)
			if stop(u) {
				cancel()
			}
		}
	}
	opts.Bus, opts.Progress, opts.Log = bus, progress, testLogger(t)
	p, err := assemble.New(opts)
	if err != nil {
		t.Fatalf("assemble.New: %v", err)
	}
	res, err := p.Run(ctx)
	if res.Report == nil {
		t.Fatalf("up in the lab: no report: %v", err)
	}
	return res.Report, err
}

// upRecorder records up's progress updates and the boot services' events
// across runs, and answers readiness from the join phone-home.
type upRecorder struct {
	start time.Time

	mu       sync.Mutex
	updates  []provision.Update
	events   []bootevent.Event
	progress bytes.Buffer
	lines    func(provision.Update)
	// fromUpdate and fromEvent are the indexes in updates and events where
	// counting starts; runStarts where each run's updates start.
	fromUpdate, fromEvent int
	runStarts             []int
}

func newUpRecorder() *upRecorder {
	r := &upRecorder{start: time.Now()}
	r.lines = provision.NewLinePrinter(&r.progress).Update
	return r
}

func (r *upRecorder) update(u provision.Update) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates = append(r.updates, u)
	r.lines(u)
}

func (r *upRecorder) event(e bootevent.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// resetCounts starts counting afresh (for the resumed run); Ready still
// sees every join.
func (r *upRecorder) resetCounts() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fromUpdate, r.fromEvent = len(r.updates), len(r.events)
}

// countAll counts from the first run again.
func (r *upRecorder) countAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fromUpdate, r.fromEvent = 0, 0
}

// phases returns the phases node entered since the last resetCounts. A
// run's first update of each node says where it starts (pending, or the
// journal's phase when resumed), not a phase it entered: it is left out.
func (r *upRecorder) phases(node string) []provision.Phase {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ps []provision.Phase
	first := false
	for i := r.fromUpdate; i < len(r.updates); i++ {
		if slices.Contains(r.runStarts, i) {
			first = true
		}
		u := r.updates[i]
		if u.Node != node {
			continue
		}
		if !first && u.PhaseChanged {
			ps = append(ps, u.Phase)
		}
		first = false
	}
	return ps
}

// newRun marks where a run's updates begin.
func (r *upRecorder) newRun() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runStarts = append(r.runStarts, len(r.updates))
}

// count returns how often node entered p since the last resetCounts.
func (r *upRecorder) count(node string, p provision.Phase) int {
	n := 0
	for _, q := range r.phases(node) {
		if q == p {
			n++
		}
	}
	return n
}

// nodeEvents returns the kinds of node's boot events since the last resetCounts.
func (r *upRecorder) nodeEvents(node string) []bootevent.Kind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ks []bootevent.Kind
	for _, e := range r.events[r.fromEvent:] {
		if e.Node == node {
			ks = append(ks, e.Kind)
		}
	}
	return ks
}

// scripts counts the iPXE scripts served to node since the last resetCounts.
func (r *upRecorder) scripts(node string) int {
	n := 0
	for _, k := range r.nodeEvents(node) {
		if k == bootevent.ScriptServed {
			n++
		}
	}
	return n
}

// joins counts node's successful join phone-homes, over every run.
func (r *upRecorder) joins(node string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind != bootevent.PhoneHome || e.Node != node {
			continue
		}
		if rep, err := phonehome.Parse(e.Detail); err == nil && rep.Joined() {
			n++
		}
	}
	return n
}

func (r *upRecorder) progressText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.progress.String()
}

// formatEvents prints every boot event, one a line, relative to t0.
func (r *upRecorder) formatEvents(t0 time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, e := range r.events {
		fmt.Fprintf(&b, "  %+7.2fs %-14s node=%s mac=%s ip=%s path=%s detail=%q\n",
			e.Time.Sub(t0).Seconds(), e.Kind, e.Node, e.MAC, e.IP, e.Path, e.Detail)
	}
	return b.String()
}

// summary is the report as up prints it.
func summary(rep *provision.Report) string {
	var b bytes.Buffer
	rep.WriteSummary(&b)
	return b.String()
}

// onlySimulated points each node named in sims at its simulator's address
// and disables every other node of inv.
func onlySimulated(inv *inventory.Inventory, sims map[string]inventory.BMC) {
	for i := range inv.Nodes {
		n := &inv.Nodes[i]
		if sim, ok := sims[n.Name]; ok {
			n.BMC = withBMC(n.BMC, sim)
		} else {
			n.Disabled = true
		}
	}
}

// withBMC returns the inventory's BMC settings of a node (credentials from
// the profile) pointed at a simulator's address.
func withBMC(b, sim inventory.BMC) inventory.BMC {
	b.URL, b.Protocol, b.Scheme, b.Host, b.Port = sim.URL, sim.Protocol, sim.Scheme, sim.Host, sim.Port
	return b
}

// followPowerOff makes the simulated BMC in sim read Off once vm's running
// QEMU exits on its own (the node powered itself off, or panicked), as a
// real BMC reads the host's power instead of remembering the last request.
// Call it after every power change the BMC made.
func followPowerOff(sim *atomic.Pointer[redfishsim.BMC], vm *lab.VM) {
	done := vm.Exited()
	if done == nil {
		return
	}
	go func() {
		<-done
		// A later power on started another QEMU: that one is the host now.
		if b := sim.Load(); b != nil && vm.Exited() == done {
			b.SetPowerState(false)
		}
	}()
}

// startIPMIBMC runs ipmi_sim with a chassis_control program that powers vm,
// until the test ends, and returns its address as an inventory BMC.
func startIPMIBMC(t *testing.T, l *lab.Lab, vm *lab.VM, password string) inventory.BMC {
	t.Helper()
	pc, err := l.StartPowerControl(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	script, err := pc.ChassisScript(vm, l.Dir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sim, err := ipmisim.Start(t.Context(), ipmisim.Config{Dir: dir, Password: password, ChassisControl: script})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sim.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "ipmi_sim.log"))
			t.Logf("ipmi_sim.log:\n%s", tail(string(b), 4000))
		}
	})
	return inventory.BMC{URL: sim.URL(), Protocol: inventory.ProtocolIPMI, Host: "127.0.0.1", Port: uint16(sim.Port())}
}

// startRedfishBMC runs a Redfish simulator whose power and boot override
// drive vm, until the test ends. It returns its address as an inventory BMC
// and a function that counts the power-on requests it received.
func startRedfishBMC(t *testing.T, vm *lab.VM, password string) (inventory.BMC, func() int) {
	t.Helper()
	sim, err := redfishsim.New(redfishsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	var mu sync.Mutex
	ons := 0
	var self atomic.Pointer[redfishsim.BMC]
	b, err := sim.Start(redfishsim.BMCConfig{
		Name: vm.Name(), Username: "admin", Password: password,
		OnPower: func(ctx context.Context, ev redfishsim.PowerEvent) error {
			if ev.Action != lab.PowerOff {
				mu.Lock()
				ons++
				mu.Unlock()
				if ev.Boot.Target == "Pxe" {
					vm.SetBootDevice(lab.BootNetwork)
				} else {
					vm.SetBootDevice(lab.BootDisk)
				}
			}
			if err := vm.ApplyPower(ctx, ev.Action); err != nil {
				return err
			}
			followPowerOff(&self, vm)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	self.Store(b)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return ons
	}
	return inventory.BMC{URL: b.URL(), Protocol: inventory.ProtocolRedfish, Scheme: "http", Host: "127.0.0.1", Port: b.Addr().Port()}, count
}
