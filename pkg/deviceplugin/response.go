package deviceplugin

import (
	"strings"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/slipway-dev/slipway/pkg/devices"
)

// Environment variables set by Allocate.
const (
	// EnvNVIDIAVisibleDevices lists the allocated GPUs' UUIDs for NVIDIA's
	// container toolkit; "none" when a GPU's UUID is unknown (sysfs-only
	// discovery), so the toolkit adds driver libraries but no GPUs of its
	// own choosing (devices.NVIDIAVisibleDevices).
	EnvNVIDIAVisibleDevices = devices.EnvNVIDIAVisibleDevices
	// EnvPrefix starts the per-kind variables SLIPWAY_GPU_DEVICES,
	// SLIPWAY_GPU_PCI_ADDRESSES, SLIPWAY_HCA_DEVICES (mlx5_0,... ready for
	// NCCL_IB_HCA), SLIPWAY_HCA_PCI_ADDRESSES, SLIPWAY_FPGA_DEVICES and
	// SLIPWAY_FPGA_PCI_ADDRESSES: comma-separated, in allocation order.
	EnvPrefix = "SLIPWAY_"
)

// CDIVendor is the vendor of the CDI specs the plugin writes; the class is
// the device kind, so GPUs are slipway.dev/gpu=<id>.
const CDIVendor = "slipway.dev"

// CDIName returns the fully qualified CDI device name of d.
func CDIName(d devices.Device) string {
	return CDIVendor + "/" + string(d.Kind) + "=" + cdiDeviceName(d)
}

// cdiDeviceName is d's ID as a CDI device name, which cannot hold "/" (a
// MIG device without a MIG UUID is MIG-<GPU UUID>/<gi>/<ci>).
func cdiDeviceName(d devices.Device) string { return strings.ReplaceAll(d.ID, "/", ":") }

// containerResponse is what one container gets for devs: the device nodes
// of every part (shared nodes once), the environment and, with cdi, the
// CDI device names.
func containerResponse(devs []Device, cdi bool) *pluginapi.ContainerAllocateResponse {
	resp := &pluginapi.ContainerAllocateResponse{Envs: map[string]string{}}
	seen := map[string]bool{}
	type lists struct{ ids, pci []string }
	byKind := map[devices.Kind]*lists{}
	var kinds []devices.Kind
	var gpus []devices.Device
	parts := map[string]bool{}
	for _, d := range devs {
		for _, p := range d.Parts {
			// Two replicas of one shared device are that device once.
			if parts[string(p.Kind)+"\x00"+p.ID] {
				continue
			}
			parts[string(p.Kind)+"\x00"+p.ID] = true
			for _, n := range p.DeviceNodes {
				if seen[n.Path] {
					continue
				}
				seen[n.Path] = true
				host := n.HostPath
				if host == "" {
					host = n.Path
				}
				perm := n.Permissions
				if perm == "" {
					perm = "rw"
				}
				resp.Devices = append(resp.Devices, &pluginapi.DeviceSpec{ContainerPath: n.Path, HostPath: host, Permissions: perm})
			}
			l := byKind[p.Kind]
			if l == nil {
				l = &lists{}
				byKind[p.Kind] = l
				kinds = append(kinds, p.Kind)
			}
			l.ids = append(l.ids, p.ID)
			l.pci = append(l.pci, p.PCIAddress)
			if p.Kind == devices.KindGPU || p.Kind == devices.KindMIG {
				gpus = append(gpus, p)
			}
			if cdi && hasCDIDevice(p) {
				resp.CdiDevices = append(resp.CdiDevices, &pluginapi.CDIDevice{Name: CDIName(p)})
			}
		}
	}
	for _, k := range kinds {
		up := strings.ToUpper(string(k))
		resp.Envs[EnvPrefix+up+"_DEVICES"] = strings.Join(byKind[k].ids, ",")
		resp.Envs[EnvPrefix+up+"_PCI_ADDRESSES"] = strings.Join(byKind[k].pci, ",")
	}
	if v, ok := devices.NVIDIAVisibleDevices(gpus); ok {
		resp.Envs[EnvNVIDIAVisibleDevices] = v
	}
	return resp
}
