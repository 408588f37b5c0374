package devices

import (
	"errors"
	"strings"
	"time"
)

// NVML is the narrow seam over the NVIDIA Management Library that discovery
// and the health monitor use. The real implementation wraps go-nvml (loaded
// with dlopen at run time, see FromNVML); tests wrap go-nvml's mock servers.
type NVML interface {
	// Init loads and initialises the library. It returns an error that
	// wraps ErrNVMLNotFound when libnvidia-ml is not installed.
	Init() error
	// Shutdown releases the library.
	Shutdown() error
	// GPUs lists the GPUs the library sees, in its index order. A GPU
	// whose facts cannot all be read is listed with Err set.
	GPUs() ([]NVMLGPU, error)
	// NewEventSet creates an empty event set.
	NewEventSet() (NVMLEventSet, error)
}

// NVMLEventSet is an NVML event set.
type NVMLEventSet interface {
	// Register adds the critical XID events of the GPU with this UUID.
	Register(uuid string) error
	// Wait blocks up to timeout for the next XID event. It returns
	// ok=false and a nil error on timeout.
	Wait(timeout time.Duration) (ev XIDEvent, ok bool, err error)
	// Close frees the event set.
	Close() error
}

// XIDEvent is one NVML critical XID error.
type XIDEvent struct {
	// UUID is the GPU the event is about; empty means all GPUs.
	UUID string
	// XID is the Xid error code.
	XID uint64
}

// NVMLGPU is what NVML reports about one GPU.
type NVMLGPU struct {
	// UUID is the GPU's UUID ("GPU-...").
	UUID string
	// Name is the product name ("NVIDIA H100 80GB HBM3").
	Name string
	// PCIAddress is the GPU's PCI function, DDDD:BB:DD.F, lower case.
	PCIAddress string
	// Minor is the minor number of /dev/nvidiaN, -1 when unknown.
	Minor int
	// MemoryBytes is the total framebuffer memory, 0 when unknown.
	MemoryBytes uint64
	// MIGMode is "enabled", "disabled" or "" when unsupported.
	MIGMode string
	// NVLinkPeers are the PCI addresses of the active NVLink peers.
	NVLinkPeers []string
	// MIG are the MIG devices of a GPU in MIG mode, by GPU instance then
	// compute instance.
	MIG []NVMLMIG
	// Err is set when some of this GPU's facts could not be read.
	Err error
}

// NVMLMIG is one MIG device (a compute instance of a GPU instance) as NVML
// reports it.
type NVMLMIG struct {
	// UUID is the MIG device's UUID ("MIG-..."); "" when NVML did not give
	// it.
	UUID string
	// GI and CI are the GPU instance and compute instance IDs.
	GI, CI int
	// Profile is the profile name as nvidia-smi writes it: "1g.10gb",
	// "1c.3g.40gb", "1g.10gb+me".
	Profile string
	// MemoryBytes is the GPU instance's memory.
	MemoryBytes uint64
}

// ErrNVMLNotFound is wrapped by NVML.Init when libnvidia-ml cannot be
// loaded; in NVMLAuto mode discovery then falls back to sysfs.
var ErrNVMLNotFound = errors.New("libnvidia-ml.so.1 not found (is the NVIDIA driver installed?)")

// errXIDNotSupported is wrapped by NVMLEventSet.Register when a GPU cannot
// report XID events (too old): its health then comes from sysfs only, as
// the reference plugin does.
var errXIDNotSupported = errors.New("gpu does not report xid events")

// normalizeBusID turns NVML's bus ID ("00000000:1B:00.0") into sysfs form
// ("0000:1b:00.0"); it reports false for anything else.
func normalizeBusID(s string) (string, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) == 16 && strings.HasPrefix(s, "0000") {
		s = s[4:]
	}
	if !isBDF(s) {
		return "", false
	}
	return s, true
}
