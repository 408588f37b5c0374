package devices

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MonitorConfig configures a health Monitor.
type MonitorConfig struct {
	// Root is the host root the devices were discovered under (as in
	// Config.Root). Empty means "/".
	Root string
	// NVML says whether GPUs are watched through NVML XID events, as in
	// Config.NVML. When NVML is wanted but fails (at start or later, other
	// than not being installed in NVMLAuto mode), every GPU is reported
	// unhealthy until it works again: a GPU is never advertised healthy on
	// the strength of a library that cannot see it.
	NVML NVMLMode
	// NVMLLib is the NVML seam; nil means the real libnvidia-ml.
	NVMLLib NVML
	// IgnoredXIDs do not mark a GPU unhealthy. Nil means
	// DefaultIgnoredXIDs(); empty ignores none.
	IgnoredXIDs []uint64
	// PollInterval is how often HCA ports, FPGA IDs and device presence are
	// polled (sysfs cannot be watched); a failed NVML is retried every 10
	// polls. Zero means DefaultPollInterval (1s).
	PollInterval time.Duration
	// RecoveryPeriod is how long a device must stay clean after its last
	// problem before it is reported healthy again. Zero means
	// DefaultRecoveryPeriod (5m); negative means never recover (the
	// reference NVIDIA plugin's behaviour).
	RecoveryPeriod time.Duration
	// Ledger is where health is recorded, by device ID. Give the same
	// ledger to every Monitor of a node (one per discovery, one per config)
	// so that health outlives each of them. Nil means a ledger of this
	// Monitor's own.
	Ledger *HealthLedger
	// Log receives health changes and NVML errors. Nil discards.
	Log *slog.Logger
}

// nvmlRetryPolls is how many polls pass between two attempts to bring a
// failed NVML back (10 s at the default poll interval).
const nvmlRetryPolls = 10

// nvmlWaitTimeout bounds one NVML event wait, so that a cancelled Run
// returns within it.
const nvmlWaitTimeout = 500 * time.Millisecond

// Monitor watches the health of discovered devices.
type Monitor struct {
	cfg     MonitorConfig
	n       node
	ignored map[uint64]bool
	now     func() time.Time
}

// NewMonitor checks cfg, applies its defaults and returns a Monitor.
func NewMonitor(cfg MonitorConfig) (*Monitor, error) {
	if cfg.NVML == "" {
		cfg.NVML = NVMLAuto
	}
	if _, err := ParseNVMLMode(string(cfg.NVML)); err != nil {
		return nil, fmt.Errorf("new health monitor: %w", err)
	}
	if cfg.PollInterval < 0 {
		return nil, fmt.Errorf("new health monitor: poll interval %s: want a positive duration", cfg.PollInterval)
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.RecoveryPeriod == 0 {
		cfg.RecoveryPeriod = DefaultRecoveryPeriod
	}
	if cfg.IgnoredXIDs == nil {
		cfg.IgnoredXIDs = DefaultIgnoredXIDs()
	}
	if cfg.NVML != NVMLOff && cfg.NVMLLib == nil {
		cfg.NVMLLib = loadNVML()
	}
	if cfg.Ledger == nil {
		cfg.Ledger = NewHealthLedger()
	}
	m := &Monitor{cfg: cfg, n: newNode(cfg.Root, cfg.Log), ignored: map[uint64]bool{}, now: time.Now}
	for _, x := range cfg.IgnoredXIDs {
		m.ignored[x] = true
	}
	return m, nil
}

// nvmlState is what the monitor knows of NVML in one Run.
type nvmlState struct {
	lib    NVML
	inited bool
	set    NVMLEventSet
	done   chan struct{} // closed when the wait goroutine exits
	global string        // problem of every GPU, "" when NVML works
	perGPU map[string]string
	absent bool // auto mode and the library is not installed
}

// nvmlMsg is sent by the wait goroutine: an XID, or the error it stopped on.
type nvmlMsg struct {
	xid XIDEvent
	err error
}

// Run watches devs until ctx is done and calls emit (from one goroutine, in
// order) on every health change, which it records in the ledger. Each
// device starts with the health the ledger holds for it, or with the health
// discovery gave it (Device.Healthy) when the ledger has none; a device
// found unhealthy must stay clean for the recovery period, like one that
// fails later. Problems: a critical XID not in IgnoredXIDs, NVML failing,
// an HCA port not ACTIVE or not LinkUp, an FPGA AFU or interface ID of all
// f, a device or one of its device nodes disappearing. It returns nil when
// ctx is done.
func (m *Monitor) Run(ctx context.Context, devs []Device, emit func(HealthEvent)) error {
	start := m.now()
	led := m.cfg.Ledger
	for _, ev := range led.Observe(devs, start) {
		m.logChange(ev)
		emit(ev)
	}
	// An XID names a GPU; it takes out the GPU and its MIG devices, whose
	// health is the parent's.
	byUUID := map[string][]string{}
	var gpus, all []Device
	for _, d := range devs {
		switch d.Kind {
		case KindGPU:
			gpus = append(gpus, d)
			all = append(all, d)
			if u := d.Attributes["uuid"]; u != "" {
				byUUID[u] = append(byUUID[u], d.ID)
			}
		case KindMIG:
			all = append(all, d)
			if u := d.Attributes["parent_uuid"]; u != "" {
				byUUID[u] = append(byUUID[u], d.ID)
			}
		}
	}
	nv := &nvmlState{lib: m.cfg.NVMLLib}
	// Deferred in this order so that cancel runs first and the wait
	// goroutine has stopped before the event set is freed.
	defer m.closeNVML(nv, true)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs := make(chan nvmlMsg)
	useNVML := m.cfg.NVML != NVMLOff && len(gpus) > 0
	if useNVML {
		m.openNVML(ctx, nv, gpus, msgs)
	}
	m.evaluate(devs, nv, useNVML, emit)

	tick := time.NewTicker(m.cfg.PollInterval)
	defer tick.Stop()
	polls := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-msgs:
			if msg.err != nil {
				m.n.log.Warn("nvml event wait failed, gpus unhealthy until it recovers", "err", msg.err)
				m.closeNVML(nv, false)
				nv.global = msg.err.Error()
				m.evaluate(devs, nv, useNVML, emit)
				continue
			}
			m.onXID(msg.xid, all, byUUID, emit)
		case <-tick.C:
			polls++
			if useNVML && nv.set == nil && !nv.absent && polls%nvmlRetryPolls == 0 {
				m.openNVML(ctx, nv, gpus, msgs)
			}
			m.evaluate(devs, nv, useNVML, emit)
		}
	}
}

// logChange logs a health change: a device going unhealthy is a warning
// an operator acts on, a recovery is information.
func (m *Monitor) logChange(ev HealthEvent) {
	if ev.Healthy {
		m.n.log.Info("device healthy", "device_id", ev.DeviceID, "reason", ev.Reason)
	} else {
		m.n.log.Warn("device unhealthy", "device_id", ev.DeviceID, "reason", ev.Reason)
	}
}

// onXID marks the GPU of a critical, not ignored XID unhealthy.
func (m *Monitor) onXID(ev XIDEvent, gpus []Device, byUUID map[string][]string, emit func(HealthEvent)) {
	if m.ignored[ev.XID] {
		m.n.log.Info("xid ignored", "device_id", ev.UUID, "xid", ev.XID)
		return
	}
	targets := byUUID[ev.UUID]
	if ev.UUID == "" {
		for _, g := range gpus {
			targets = append(targets, g.ID)
		}
	}
	if len(targets) == 0 {
		m.n.log.Warn("xid for unknown gpu", "device_id", ev.UUID, "xid", ev.XID)
		return
	}
	now := m.now()
	for _, id := range targets {
		if he, ok := m.cfg.Ledger.Bad(id, now, "xid "+strconv.FormatUint(ev.XID, 10)); ok {
			m.logChange(he)
			emit(he)
		}
	}
}

// evaluate checks every device now and emits the changes.
func (m *Monitor) evaluate(devs []Device, nv *nvmlState, useNVML bool, emit func(HealthEvent)) {
	now := m.now()
	for _, d := range devs {
		problems := m.check(d)
		if (d.Kind == KindGPU || d.Kind == KindMIG) && useNVML && !nv.absent {
			uuid := d.Attributes["uuid"]
			if d.Kind == KindMIG {
				uuid = d.Attributes["parent_uuid"]
			}
			if nv.global != "" {
				problems = append(problems, nvmlProblem(nv.global))
			} else if p := nv.perGPU[uuid]; p != "" {
				problems = append(problems, nvmlProblem(p))
			}
		}
		var he HealthEvent
		var changed bool
		if len(problems) > 0 {
			he, changed = m.cfg.Ledger.Bad(d.ID, now, strings.Join(problems, "; "))
		} else {
			he, changed = m.cfg.Ledger.Clean(d.ID, now, m.cfg.RecoveryPeriod)
		}
		if changed {
			m.logChange(he)
			emit(he)
		}
	}
}

// nvmlProblem makes sure an NVML problem says it is one.
func nvmlProblem(s string) string {
	if strings.HasPrefix(s, "nvml") {
		return s
	}
	return "nvml: " + s
}

// check returns the problems sysfs and /dev show for d now.
func (m *Monitor) check(d Device) []string {
	var problems []string
	if d.Kind == KindFPGA {
		// Re-reading the card covers presence, IDs and device nodes.
		return m.n.fpgaProblems(d)
	}
	pci := m.n.sys(pciDevicesDir, d.PCIAddress)
	if !exists(pci) {
		return []string{"pci device " + d.PCIAddress + " gone"}
	}
	if d.Driver != "" {
		// Unbound, or rebound to another driver (vfio-pci): the device
		// nodes may linger but the device is not usable through them.
		if drv, err := linkBase(filepath.Join(pci, "driver")); err != nil {
			problems = append(problems, "driver "+d.Driver+" unbound")
		} else if drv != d.Driver {
			problems = append(problems, "driver now "+drv+", was "+d.Driver)
		}
	}
	for _, dn := range d.DeviceNodes {
		host := dn.HostPath
		if host == "" {
			host = dn.Path
		}
		if !exists(m.n.dev(host)) {
			problems = append(problems, dn.Path+" missing")
		}
	}
	// What discovery found missing stays missing: the device lists never
	// gain a node, so without these checks such a device would "recover".
	switch d.Kind {
	case KindGPU, KindMIG:
		if d.Driver != "nvidia" {
			problems = append(problems, fmt.Sprintf("driver %q bound, not nvidia", d.Driver))
		}
		if !slices.ContainsFunc(d.DeviceNodes, isGPUNode) {
			problems = append(problems, "no /dev/nvidiaN device node (minor unknown)")
		}
	case KindHCA:
		if !slices.ContainsFunc(d.DeviceNodes, func(n DeviceNode) bool { return strings.HasPrefix(n.Path, "/dev/infiniband/uverbs") }) {
			problems = append(problems, "no uverbs device")
		}
		if len(d.Ports) == 0 {
			problems = append(problems, "no ports")
		}
	}
	if d.Kind == KindHCA {
		ibdir := m.n.sys("class", "infiniband", d.ID)
		if !exists(ibdir) {
			return append(problems, "rdma device "+d.ID+" gone")
		}
		// Watched: the ports that were up at discovery (a port never
		// cabled does not make the HCA unhealthy). With none up then, the
		// HCA is clean as soon as any port comes up.
		now := nowPorts(ibdir, d.Ports)
		var watched []Port
		for i, p := range d.Ports {
			if p.usable() {
				watched = append(watched, now[i])
			}
		}
		if len(watched) > 0 {
			problems = append(problems, portProblems(watched)...)
		} else if !slices.ContainsFunc(now, Port.usable) {
			problems = append(problems, portProblems(now)...)
		}
	}
	return problems
}

// isGPUNode reports whether n is a GPU's own /dev/nvidiaN.
func isGPUNode(n DeviceNode) bool {
	num, ok := strings.CutPrefix(n.Path, "/dev/nvidia")
	if !ok || num == "" {
		return false
	}
	_, err := strconv.Atoi(num)
	return err == nil
}

// nowPorts re-reads the given ports.
func nowPorts(ibdir string, ports []Port) []Port {
	out := make([]Port, 0, len(ports))
	for _, p := range ports {
		out = append(out, readPort(filepath.Join(ibdir, "ports", strconv.Itoa(p.Number)), p.Number))
	}
	return out
}

// openNVML initialises NVML, registers every GPU for XID events and starts
// the wait goroutine; failures become GPU problems in nv.
func (m *Monitor) openNVML(ctx context.Context, nv *nvmlState, gpus []Device, msgs chan<- nvmlMsg) {
	if !nv.inited {
		if err := nv.lib.Init(); err != nil {
			if m.cfg.NVML == NVMLAuto && errors.Is(err, ErrNVMLNotFound) {
				m.n.log.Info("nvml not found, gpu health from sysfs only", "err", err)
				nv.absent = true
				return
			}
			nv.global = err.Error()
			return
		}
		nv.inited = true
	}
	set, err := nv.lib.NewEventSet()
	if err != nil {
		nv.global = err.Error()
		return
	}
	nv.perGPU = map[string]string{}
	for _, g := range gpus {
		u := g.Attributes["uuid"]
		if u == "" {
			nv.perGPU[u] = "gpu uuid unknown"
			continue
		}
		if err := set.Register(u); err != nil {
			if errors.Is(err, errXIDNotSupported) {
				m.n.log.Warn("gpu does not report xid events; health from sysfs only", "device_id", g.ID)
				continue
			}
			nv.perGPU[u] = err.Error()
		}
	}
	nv.set, nv.global = set, ""
	nv.done = make(chan struct{})
	go waitXIDs(ctx, set, msgs, nv.done)
}

// waitXIDs forwards XID events until ctx is done or Wait fails; the failure
// is its last message.
func waitXIDs(ctx context.Context, set NVMLEventSet, msgs chan<- nvmlMsg, done chan<- struct{}) {
	defer close(done)
	for ctx.Err() == nil {
		ev, ok, err := set.Wait(nvmlWaitTimeout)
		if err != nil {
			select {
			case msgs <- nvmlMsg{err: err}:
			case <-ctx.Done():
			}
			return
		}
		if !ok {
			continue
		}
		select {
		case msgs <- nvmlMsg{xid: ev}:
		case <-ctx.Done():
			return
		}
	}
}

// closeNVML stops the wait goroutine (it has returned or returns within
// nvmlWaitTimeout once ctx is cancelled), frees the set and, at the end of
// Run, shuts NVML down.
func (m *Monitor) closeNVML(nv *nvmlState, shutdown bool) {
	if nv.done != nil {
		<-nv.done
		nv.done = nil
	}
	if nv.set != nil {
		if err := nv.set.Close(); err != nil {
			m.n.log.Debug("nvml event set close failed", "err", err)
		}
		nv.set = nil
	}
	if shutdown && nv.inited {
		if err := nv.lib.Shutdown(); err != nil {
			m.n.log.Debug("nvml shutdown failed", "err", err)
		}
		nv.inited = false
	}
}
