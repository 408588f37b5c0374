package devices

import (
	"fmt"
	"log/slog"
)

// NVMLMode says whether discovery uses NVML for GPUs.
type NVMLMode string

// NVML modes. The zero value means NVMLAuto.
const (
	// NVMLAuto uses NVML when libnvidia-ml loads, and sysfs otherwise.
	NVMLAuto NVMLMode = "auto"
	// NVMLOn requires NVML: discovery fails when it does not load.
	NVMLOn NVMLMode = "on"
	// NVMLOff never loads NVML: GPUs come from sysfs and procfs only.
	NVMLOff NVMLMode = "off"
)

// ParseNVMLMode parses "auto", "on" or "off" (the --nvml flag).
func ParseNVMLMode(s string) (NVMLMode, error) {
	switch m := NVMLMode(s); m {
	case NVMLAuto, NVMLOn, NVMLOff:
		return m, nil
	case "":
		return NVMLAuto, nil
	}
	return "", fmt.Errorf("parse nvml mode %q: want auto, on or off", s)
}

// Config configures discovery. The zero value discovers under "/" with NVML
// in auto mode and no logging.
type Config struct {
	// Root is the host root: sysfs is read at Root/sys, procfs at
	// Root/proc and device nodes are checked at Root/dev. Empty means "/".
	Root string
	// NVML says whether GPUs are read through NVML. Empty means NVMLAuto.
	NVML NVMLMode
	// NVMLLib is the NVML seam. Nil means the real libnvidia-ml, loaded at
	// run time (tests pass a mock here). Ignored when NVML is NVMLOff.
	NVMLLib NVML
	// IncludeHostNICs also reports Ethernet (RoCE) RDMA devices whose
	// network interface the host uses itself (it carries the default route,
	// or is a bond or bridge member), such as storage NICs. False leaves
	// them out. InfiniBand HCAs are always reported.
	IncludeHostNICs bool
	// Log receives one record per skipped device or unreadable attribute.
	// Nil discards.
	Log *slog.Logger
}
