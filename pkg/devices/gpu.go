package devices

import (
	"fmt"
	"strconv"
	"strings"
)

// isNVIDIAGPU reports whether f is an NVIDIA GPU: vendor 0x10de and class
// 3D controller (0x0302) or VGA (0x0300). NVSwitches (0x0680) and audio
// functions share the vendor and are not GPUs.
func isNVIDIAGPU(f *pciFunc) bool {
	if f.vendor != vendorNVIDIA {
		return false
	}
	c := f.classBase()
	return c == "0302" || c == "0300"
}

// gpuNodes are the device nodes every GPU container needs, besides its own
// /dev/nvidiaN; those that do not exist on the host are left out.
var gpuNodes = []string{"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"}

// driverInfo is what /proc/driver/nvidia/gpus/<bdf>/information says.
type driverInfo struct {
	model string
	uuid  string
	minor int // -1 when absent
}

// readDriverInfo parses the NVIDIA driver's information file of one GPU.
func (n node) readDriverInfo(addr string) (driverInfo, error) {
	info := driverInfo{minor: -1}
	path := n.proc("driver", "nvidia", "gpus", addr, "information")
	var buf [4096]byte
	nr, err := readSmall(path, buf[:])
	if err != nil {
		return info, err
	}
	if nr == 0 {
		return info, fmt.Errorf("read %s: empty", path)
	}
	for line := range strings.Lines(string(buf[:nr])) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "Model":
			info.model = v
		case "GPU UUID":
			if validGPUUUID(v) {
				info.uuid = v
			}
		case "Device Minor":
			m, err := strconv.Atoi(v)
			if err != nil || m < 0 || m > 254 {
				return info, fmt.Errorf("parse %s: device minor %q", path, v)
			}
			info.minor = m
		}
	}
	return info, nil
}

// validGPUUUID reports whether s is "GPU-" and a hex UUID; the driver
// prints question marks before the GPU is initialised.
func validGPUUUID(s string) bool {
	rest, ok := strings.CutPrefix(s, "GPU-")
	if !ok || len(rest) != 36 {
		return false
	}
	for i, c := range rest {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// gpuFromSysfs builds a GPU from sysfs and the driver's information file.
func (n node) gpuFromSysfs(f *pciFunc) Device {
	d := baseDevice(KindGPU, f)
	d.ID = f.addr
	info, err := n.readDriverInfo(f.addr)
	if err != nil {
		n.log.Warn("gpu driver information unreadable", "pci_addr", f.addr, "err", err)
	}
	if info.model != "" {
		d.Model = info.model
	}
	if info.uuid != "" {
		d.ID = info.uuid
		d.Attributes["uuid"] = info.uuid
	}
	n.finishGPU(&d, info.minor)
	return d
}

// finishGPU adds the device nodes of the GPU with the given minor (-1:
// unknown) and sets its health from what sysfs and /dev show.
func (n node) finishGPU(d *Device, minor int) {
	var problems []string
	if d.Driver != "nvidia" {
		problems = append(problems, fmt.Sprintf("driver %q bound, not nvidia", d.Driver))
	}
	if minor < 0 {
		problems = append(problems, "device minor unknown")
	} else {
		d.Attributes["minor"] = strconv.Itoa(minor)
		p := fmt.Sprintf("/dev/nvidia%d", minor)
		if exists(n.dev(p)) {
			d.DeviceNodes = append(d.DeviceNodes, DeviceNode{Path: p, Permissions: "rw"})
		} else {
			problems = append(problems, p+" missing")
		}
	}
	for _, p := range gpuNodes {
		if exists(n.dev(p)) {
			d.DeviceNodes = append(d.DeviceNodes, DeviceNode{Path: p, Permissions: "rw"})
		} else if p == "/dev/nvidiactl" {
			problems = append(problems, p+" missing")
		}
	}
	setHealth(d, problems)
}

// setHealth marks d unhealthy with the problems joined, or healthy.
func setHealth(d *Device, problems []string) {
	d.Healthy = len(problems) == 0
	d.HealthReason = strings.Join(problems, "; ")
}

// baseDevice fills the fields every kind shares from a PCI function.
func baseDevice(k Kind, f *pciFunc) Device {
	return Device{
		Kind:       k,
		Vendor:     vendorName(f.vendor),
		Model:      modelName(f),
		VendorID:   f.vendor,
		DeviceID:   f.device,
		Driver:     f.driver,
		PCIAddress: f.addr,
		NUMANode:   f.numa,
		PCIeRoot:   f.root,
		Bridges:    f.bridges,
		Attributes: map[string]string{},
	}
}

// mergeNVML replaces sysfs facts of the GPUs with NVML's and returns the
// MIG devices of GPUs in MIG mode besides. A sysfs GPU that NVML does not
// list is kept, unhealthy; an NVML GPU that sysfs lacks is skipped and
// logged, since its topology is unknown.
func (n node) mergeNVML(gpus []Device, nv []NVMLGPU) ([]Device, []Device) {
	byAddr := make(map[string]NVMLGPU, len(nv))
	for _, g := range nv {
		byAddr[g.PCIAddress] = g
	}
	out := gpus[:0]
	var migs []Device
	var minors map[string]int
	var minorsErr error
	minorsRead := false
	for _, d := range gpus {
		g, ok := byAddr[d.PCIAddress]
		delete(byAddr, d.PCIAddress)
		if !ok {
			d.Healthy = false
			d.HealthReason = joinReason(d.HealthReason, "not visible to nvml")
			out = append(out, d)
			continue
		}
		if g.UUID != "" {
			d.ID = g.UUID
			d.Attributes["uuid"] = g.UUID
		}
		if g.Name != "" {
			d.Model = g.Name
		}
		if g.MemoryBytes > 0 {
			d.Attributes["memory_mib"] = strconv.FormatUint(g.MemoryBytes>>20, 10)
		}
		if g.MIGMode != "" {
			d.Attributes["mig_mode"] = g.MIGMode
		}
		if len(g.NVLinkPeers) > 0 {
			d.Attributes["nvlink_peers"] = strings.Join(g.NVLinkPeers, ",")
		}
		minor := g.Minor
		if minor < 0 {
			if m, err := strconv.Atoi(d.Attributes["minor"]); err == nil {
				minor = m
			}
		}
		d.DeviceNodes = nil
		delete(d.Attributes, "minor")
		n.finishGPU(&d, minor)
		if g.Err != nil {
			d.Healthy = false
			d.HealthReason = joinReason(d.HealthReason, nvmlProblem(g.Err.Error()))
		}
		out = append(out, d)
		if len(g.MIG) > 0 {
			if !minorsRead {
				minors, minorsErr = n.migMinors()
				minorsRead = true
			}
			migs = append(migs, n.migDevices(d, g.MIG, minors, minorsErr)...)
		}
	}
	for addr := range byAddr {
		n.log.Warn("nvml gpu skipped: not in sysfs", "pci_addr", addr)
	}
	return out, migs
}

func joinReason(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
