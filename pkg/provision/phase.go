package provision

import "time"

// Phase is where a node stands in provisioning.
type Phase string

// Phases, in the order a node normally passes them.
const (
	// PhasePending: not started yet (waiting for its turn or for the control plane).
	PhasePending Phase = "pending"
	// PhasePoweringOff: the BMC is asked to power the node off.
	PhasePoweringOff Phase = "powering-off"
	// PhaseSettingBoot: the BMC is asked for a one-time network boot.
	PhaseSettingBoot Phase = "setting-boot"
	// PhasePoweringOn: the BMC is asked to power the node on.
	PhasePoweringOn Phase = "powering-on"
	// PhaseWaitingDHCP: powered on, waiting for a DHCP request from the node's MAC.
	PhaseWaitingDHCP Phase = "waiting-dhcp"
	// PhaseNetbooting: the node is fetching its boot script, kernel and initrd.
	PhaseNetbooting Phase = "netbooting"
	// PhaseConfigFetched: the node's OS fetched its node config (netboot passed).
	PhaseConfigFetched Phase = "config-fetched"
	// PhaseJoining: the node reported that it ran kubeadm join (or init).
	PhaseJoining Phase = "joining"
	// PhaseReady: the Node object is Ready.
	PhaseReady Phase = "ready"
	// PhaseFailed: the node gave up; Reason says why.
	PhaseFailed Phase = "failed"
)

// Phases lists every phase in display order.
var phases = [...]Phase{PhasePending, PhasePoweringOff, PhaseSettingBoot, PhasePoweringOn,
	PhaseWaitingDHCP, PhaseNetbooting, PhaseConfigFetched, PhaseJoining, PhaseReady, PhaseFailed}

// AllPhases returns every phase in display order.
func AllPhases() []Phase { return append([]Phase(nil), phases[:]...) }

// Terminal reports whether the phase ends the node's run (ready or failed).
func (p Phase) Terminal() bool { return p == PhaseReady || p == PhaseFailed }

// PassedNetboot reports whether a node in this phase has already booted its
// OS from the network: such a node is never power-cycled again by a resume.
func (p Phase) PassedNetboot() bool {
	return p == PhaseConfigFetched || p == PhaseJoining || p == PhaseReady
}

// EventKind is something the boot services or the node itself report.
type EventKind string

// Event kinds the orchestrator understands.
const (
	// EventDHCP: a DHCP request (discover or request) from the node's MAC.
	EventDHCP EventKind = "dhcp"
	// EventTFTP: the iPXE binary was served over TFTP.
	EventTFTP EventKind = "tftp"
	// EventScript: the node's iPXE script was served.
	EventScript EventKind = "script"
	// EventKernel: the kernel was served.
	EventKernel EventKind = "kernel"
	// EventInitrd: the initrd was served.
	EventInitrd EventKind = "initrd"
	// EventConfig: the node's config (cloud-init with kubeadm) was served.
	EventConfig EventKind = "config"
	// EventJoined: the node phoned home after kubeadm join (or init).
	EventJoined EventKind = "joined"
	// EventReady: the Node object turned Ready.
	EventReady EventKind = "ready"
	// EventNodeFailed: the node reported that a step of its node config
	// failed before it joined (Detail says which); it fails the node at
	// once instead of at the join timeout.
	EventNodeFailed EventKind = "node-failed"
	// EventProgress: anything else worth showing (a phone-home step); it
	// never changes the phase.
	EventProgress EventKind = "progress"
)

// Event is one observation about a node.
type Event struct {
	// Node is the inventory node name. When empty, MAC identifies the node.
	Node string
	// MAC is the node's boot MAC (used when Node is empty).
	MAC string
	// Kind says what happened.
	Kind EventKind
	// Detail is a short free-form description (file name, IP, ...).
	Detail string
	// Time is when it happened (zero = when observed).
	Time time.Time
}

// Timeouts bounds how long a node may stay in each waiting phase. A zero
// field means the documented default.
type Timeouts struct {
	// DHCP is how long to wait for a DHCP request after power on (default 5m).
	DHCP time.Duration
	// Netboot is how long a netbooting node may go without progress (the
	// next of DHCP, TFTP, script, kernel, initrd, config) before it counts
	// as stalled (default 10m). Each step a node reaches for the first time
	// in a boot restarts it, so a slow but progressing boot is not cut.
	Netboot time.Duration
	// Join is how long from config fetched to the join phone-home (default 15m).
	Join time.Duration
	// Ready is how long from join to Node Ready (default 10m).
	Ready time.Duration
	// BMC bounds each single BMC call (default 30s).
	BMC time.Duration
	// Issue bounds issuing a node's config and token (default 30s).
	Issue time.Duration
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.DHCP, 5*time.Minute)
	def(&t.Netboot, 10*time.Minute)
	def(&t.Join, 15*time.Minute)
	def(&t.Ready, 10*time.Minute)
	def(&t.BMC, 30*time.Second)
	def(&t.Issue, 30*time.Second)
	return t
}
