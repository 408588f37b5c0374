package devices

import "time"

// Kind is the kind of a device.
type Kind string

// Device kinds.
const (
	KindGPU  Kind = "gpu"
	KindHCA  Kind = "hca"
	KindFPGA Kind = "fpga"
	// KindMIG is a MIG device: a GPU instance and compute instance of a
	// GPU in MIG mode, found through NVML. It shares its parent GPU's PCI
	// address and topology; its ID is its MIG UUID.
	KindMIG Kind = "mig"
)

// NoNUMA is the NUMANode of a device whose NUMA node is unknown (sysfs -1).
const NoNUMA = -1

// Device is one discovered device, the same model for every kind.
type Device struct {
	// ID is stable across restarts and unique on the node: the GPU UUID
	// (from NVML or the driver's /proc information file; the PCI address
	// when neither gives one), the HCA name (mlx5_0), the FPGA's PCI
	// address (an Alveo card's user function).
	ID string `json:"id"`
	// Kind is gpu, hca or fpga.
	Kind Kind `json:"kind"`
	// Vendor and Model are human-readable names.
	Vendor string `json:"vendor"`
	Model  string `json:"model"`
	// VendorID and DeviceID are the PCI IDs in sysfs form ("0x10de").
	VendorID string `json:"vendorID"`
	DeviceID string `json:"deviceID"`
	// Driver is the bound kernel driver, if any.
	Driver string `json:"driver,omitempty"`
	// PCIAddress is the device's PCI function, DDDD:BB:DD.F.
	PCIAddress string `json:"pciAddress"`
	// NUMANode is the device's NUMA node, or NoNUMA when unknown.
	NUMANode int `json:"numaNode"`
	// PCIeRoot is the root complex, "pciDDDD:BB" (the value of
	// resource.kubernetes.io/pcieRoot).
	PCIeRoot string `json:"pcieRoot"`
	// Bridges are the PCI addresses of the upstream bridges (switch ports)
	// from the root down to the device.
	Bridges []string `json:"bridges,omitempty"`
	// DeviceNodes are the character devices a container needs for this
	// device, as paths inside the container (host path = DevRoot + Path).
	DeviceNodes []DeviceNode `json:"deviceNodes,omitempty"`
	// Attributes are kind-specific facts: GPU uuid, memory_mib, mig_mode;
	// MIG uuid, parent_uuid, profile, gi, ci, memory_mib; HCA node_guid,
	// port states, link_layer, rate; FPGA interface_id, logic_uuid,
	// afu_id, shell, serial.
	Attributes map[string]string `json:"attributes,omitempty"`
	// Ports are an HCA's ports, in port number order.
	Ports []Port `json:"ports,omitempty"`
	// Healthy reports whether the device can be used now.
	Healthy bool `json:"healthy"`
	// HealthReason says why a device is unhealthy.
	HealthReason string `json:"healthReason,omitempty"`
}

// DeviceNode is a device file a container needs.
type DeviceNode struct {
	// Path is the path in the container, such as /dev/nvidia0.
	Path string `json:"path"`
	// HostPath is the path on the host; empty means the same as Path.
	HostPath string `json:"hostPath,omitempty"`
	// Permissions are cgroup permissions, "rw" or "rwm".
	Permissions string `json:"permissions"`
}

// HealthEvent reports a change in one device's health.
type HealthEvent struct {
	// DeviceID is the Device.ID whose health changed.
	DeviceID string
	// Healthy is the new state.
	Healthy bool
	// Reason says why (an XID code, a port state, a missing device).
	Reason string
	// Time is when the change was observed.
	Time time.Time
}

// Port is one InfiniBand/RoCE HCA port.
type Port struct {
	// Number is the port number, from 1.
	Number int `json:"number"`
	// State is the logical state: DOWN, INIT, ARMED, ACTIVE, ACTIVE_DEFER.
	State string `json:"state"`
	// PhysState is the physical state, such as LinkUp or Disabled.
	PhysState string `json:"physState"`
	// LinkLayer is InfiniBand or Ethernet (RoCE).
	LinkLayer string `json:"linkLayer"`
	// Rate is the link rate as sysfs writes it ("400 Gb/sec (4X NDR)").
	Rate string `json:"rate,omitempty"`
	// NetDev is the Ethernet interface of a RoCE port, if any.
	NetDev string `json:"netdev,omitempty"`
}

// State is the node's devices as the node agent hands them to its front
// ends (the device plugin, DRA) on every change: every discovered device,
// with Healthy and HealthReason as the HealthLedger holds them now (not
// only as discovery saw them), and the resource config in force.
type State struct {
	// Devices are in Discover's order.
	Devices []Device
	// Config is the resource config in force (DefaultConfig without a
	// file).
	Config ResourceConfig
}
