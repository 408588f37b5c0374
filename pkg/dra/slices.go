package dra

import (
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/dynamic-resource-allocation/deviceattribute"
	"k8s.io/dynamic-resource-allocation/resourceslice"

	"github.com/slipway-dev/slipway/pkg/devices"
)

// DefaultDriverName is the DRA driver name: the driver part of every
// allocation result, the kubelet plugin's name and the domain of the
// unqualified attribute names in its slices (kind means slipway.dev/kind).
const DefaultDriverName = "slipway.dev"

// TaintKey is the key of the taint an unhealthy device carries; its value
// is the reason, shortened to a label value.
const TaintKey = "slipway.dev/unhealthy"

// maxDevicesPerSlice is how many devices go in one ResourceSlice: the API's
// limit for slices that use taints.
const maxDevicesPerSlice = resourceapi.ResourceSliceMaxDevicesWithAdvancedFeatures

// Attribute and capacity names in the driver's domain (slipway.dev/...).
const (
	AttrKind         resourceapi.QualifiedName = "kind"
	AttrVendor       resourceapi.QualifiedName = "vendor"
	AttrPCIVendorID  resourceapi.QualifiedName = "pciVendorID"
	AttrPCIDeviceID  resourceapi.QualifiedName = "pciDeviceID"
	AttrModel        resourceapi.QualifiedName = "model"
	AttrDriver       resourceapi.QualifiedName = "driver"
	AttrResourceName resourceapi.QualifiedName = "resourceName"
	AttrPCIeSwitch   resourceapi.QualifiedName = "pcieSwitch"
	AttrUUID         resourceapi.QualifiedName = "uuid"
	AttrMinor        resourceapi.QualifiedName = "minor"
	AttrMIGCapable   resourceapi.QualifiedName = "migCapable"
	AttrMIGEnabled   resourceapi.QualifiedName = "migEnabled"
	AttrNVLinkDomain resourceapi.QualifiedName = "nvlinkDomain"
	AttrParentUUID   resourceapi.QualifiedName = "parentUUID"
	AttrMIGProfile   resourceapi.QualifiedName = "migProfile"
	AttrIBDev        resourceapi.QualifiedName = "ibdev"
	AttrLinkLayer    resourceapi.QualifiedName = "linkLayer"
	AttrLinkRate     resourceapi.QualifiedName = "linkRate"
	AttrPortState    resourceapi.QualifiedName = "portState"
	AttrPorts        resourceapi.QualifiedName = "ports"
	AttrNodeGUID     resourceapi.QualifiedName = "nodeGUID"
	AttrFirmware     resourceapi.QualifiedName = "firmware"
	AttrNetDev       resourceapi.QualifiedName = "netdev"
	AttrShell        resourceapi.QualifiedName = "shell"
	AttrInterfaceID  resourceapi.QualifiedName = "interfaceID"
	AttrAFUID        resourceapi.QualifiedName = "afuID"
	AttrBitstreamID  resourceapi.QualifiedName = "bitstreamID"
	AttrDriverAPI    resourceapi.QualifiedName = "driverAPI"
	AttrSerial       resourceapi.QualifiedName = "serial"

	// CapMemory is a GPU's framebuffer memory in bytes.
	CapMemory resourceapi.QualifiedName = "memory"
	// CapLinkSpeed is an HCA port's link rate in bits per second.
	CapLinkSpeed resourceapi.QualifiedName = "linkSpeed"
)

// entry is one device the driver publishes, under the resource name the
// config gave it.
type entry struct {
	name     string // the device's name in the pool
	resource string // resource name from the config (attribute resourceName)
	dev      devices.Device
}

// inventory is the set of published devices, by pool device name.
type inventory struct {
	entries []entry
	byName  map[string]int
	byID    map[string]int
}

// newInventory names the devices cfg assigns to a resource (to one of
// only, when set), in the order of devs (Discover's: kind, then PCI
// address). Excluded devices and devices no resource selects are left out,
// as the device plugin leaves them out.
func newInventory(cfg devices.ResourceConfig, devs []devices.Device, only []string) *inventory {
	resOf := map[string]string{}
	for _, a := range cfg.Plan(devs) {
		if len(only) > 0 && !Serves(only, a) {
			continue
		}
		for _, d := range a.Devices {
			resOf[string(d.Kind)+"\x00"+d.ID] = a.Name
		}
	}
	inv := &inventory{byName: map[string]int{}, byID: map[string]int{}}
	for _, d := range devs {
		res, ok := resOf[string(d.Kind)+"\x00"+d.ID]
		if !ok {
			continue
		}
		name := DeviceName(d)
		if _, taken := inv.byName[name]; taken {
			name = dnsLabel(name + "-" + d.ID)
		}
		inv.byName[name] = len(inv.entries)
		inv.byID[d.ID] = len(inv.entries)
		inv.entries = append(inv.entries, entry{name: name, resource: res, dev: d})
	}
	return inv
}

// Serves reports whether a driver whose Config.Resources are resources
// publishes the devices of a: a's name is listed, or a is one of the
// per-identity FPGA resources (<name>-<interface ID>) the config makes of a
// listed name. The split of --api both uses it too, so that every device
// goes to exactly one API.
func Serves(resources []string, a devices.Assignment) bool {
	if slices.Contains(resources, a.Name) {
		return true
	}
	if len(a.Devices) == 0 || a.Devices[0].Kind != devices.KindFPGA {
		return false
	}
	return slices.ContainsFunc(resources, func(r string) bool { return strings.HasPrefix(a.Name, r+"-") })
}

// lookup returns the entry named name.
func (inv *inventory) lookup(name string) (entry, bool) {
	i, ok := inv.byName[name]
	if !ok {
		return entry{}, false
	}
	return inv.entries[i], true
}

// DeviceName returns d's name in the node's pool: its kind and PCI address
// as a DNS label ("gpu-0000-1b-00-0"), stable across restarts and reboots
// while the card stays in its slot; a MIG device adds its GPU and compute
// instance ("mig-0000-1b-00-0-gi1-ci0").
func DeviceName(d devices.Device) string {
	if d.PCIAddress == "" {
		return dnsLabel(string(d.Kind) + "-" + d.ID)
	}
	name := string(d.Kind) + "-" + d.PCIAddress
	if d.Kind == devices.KindMIG && d.Attributes["gi"] != "" {
		name += "-gi" + d.Attributes["gi"] + "-ci" + d.Attributes["ci"]
	}
	return dnsLabel(name)
}

var notLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// dnsLabel lower-cases s, turns every run of other characters into "-" and
// trims it to a 63-character DNS label.
func dnsLabel(s string) string {
	s = notLabel.ReplaceAllString(strings.ToLower(s), "-")
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.Trim(s, "-")
}

var notLabelValue = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// labelValue shortens s to a label value (63 characters, alphanumerics,
// '-', '_' and '.', alphanumeric at both ends).
func labelValue(s string) string {
	s = notLabelValue.ReplaceAllString(s, "-")
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.TrimFunc(s, func(r rune) bool { return r == '-' || r == '_' || r == '.' })
}

// healthState is what the driver knows of one device's health.
type healthState struct {
	healthy bool
	reason  string
}

// sliceBuilder turns the inventory into slice devices.
type sliceBuilder struct {
	sysRoot string // ROOT/sys, for the deviceattribute helpers
	effect  resourceapi.DeviceTaintEffect
	log     *slog.Logger
}

// pool returns the node's pool: the devices in order, cut into slices of at
// most maxDevicesPerSlice.
func (b sliceBuilder) pool(inv *inventory, health map[string]healthState) resourceslice.Pool {
	devs := []resourceapi.Device{}
	domains := nvlinkDomains(inv)
	for _, e := range inv.entries {
		devs = append(devs, b.device(e, health[e.dev.ID], domains[e.dev.ID]))
	}
	var p resourceslice.Pool
	for len(devs) > maxDevicesPerSlice {
		p.Slices = append(p.Slices, resourceslice.Slice{Devices: devs[:maxDevicesPerSlice]})
		devs = devs[maxDevicesPerSlice:]
	}
	// An empty pool is still one slice: it says "this node has none"
	// (after a discovery that succeeded) instead of nothing at all.
	p.Slices = append(p.Slices, resourceslice.Slice{Devices: devs})
	return p
}

// device builds the slice device of e. An attribute that cannot be read is
// left out and logged.
func (b sliceBuilder) device(e entry, h healthState, nvlinkDomain string) resourceapi.Device {
	d := e.dev
	attrs := map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{}
	str := func(name resourceapi.QualifiedName, v string) {
		if v == "" {
			return
		}
		if len(v) > resourceapi.DeviceAttributeMaxValueLength {
			v = v[:resourceapi.DeviceAttributeMaxValueLength]
		}
		attrs[name] = resourceapi.DeviceAttribute{StringValue: &v}
	}
	integer := func(name resourceapi.QualifiedName, v int64) {
		attrs[name] = resourceapi.DeviceAttribute{IntValue: &v}
	}
	boolean := func(name resourceapi.QualifiedName, v bool) {
		attrs[name] = resourceapi.DeviceAttribute{BoolValue: &v}
	}
	std := func(a deviceattribute.DeviceAttribute, err error) {
		if err != nil {
			b.log.Debug("standard attribute left out", "device_id", d.ID, "pci_addr", d.PCIAddress, "err", err)
			return
		}
		attrs[a.Name] = a.Value
	}

	str(AttrKind, string(d.Kind))
	str(AttrVendor, d.Vendor)
	str(AttrPCIVendorID, strings.TrimPrefix(d.VendorID, "0x"))
	str(AttrPCIDeviceID, strings.TrimPrefix(d.DeviceID, "0x"))
	str(AttrModel, d.Model)
	str(AttrDriver, d.Driver)
	str(AttrResourceName, e.resource)
	if d.PCIAddress != "" {
		std(deviceattribute.GetPCIBusIDAttribute(d.PCIAddress))
		std(deviceattribute.GetPCIeRootAttributeByPCIBusID(d.PCIAddress, deviceattribute.WithFSFromRoot(b.sysRoot)))
		std(deviceattribute.GetNUMANodeAttributeByPCIBusID(d.PCIAddress, deviceattribute.ScalarAttribute, deviceattribute.WithFSFromRoot(b.sysRoot)))
	}
	// The nearest switch: pcieRoot alone is too coarse on boards with two
	// switches under one root, and wrong where a NIC hangs off a GPU's
	// switch through a "data direct" path. Bridges start at the root port;
	// a switch is an upstream and a downstream port below it, so with
	// fewer than three bridges there is none (a root port and a plain
	// bridge are not a switch).
	if n := len(d.Bridges); n >= 3 {
		str(AttrPCIeSwitch, d.Bridges[n-2])
	}
	caps := map[resourceapi.QualifiedName]resourceapi.DeviceCapacity{}
	a := d.Attributes
	switch d.Kind {
	case devices.KindGPU:
		str(AttrUUID, a["uuid"])
		if m, err := strconv.ParseInt(a["minor"], 10, 64); err == nil {
			integer(AttrMinor, m)
		}
		if mode, ok := a["mig_mode"]; ok {
			boolean(AttrMIGCapable, mode != "")
			boolean(AttrMIGEnabled, mode == "enabled")
		}
		str(AttrNVLinkDomain, nvlinkDomain)
		if mib, err := strconv.ParseInt(a["memory_mib"], 10, 64); err == nil && mib > 0 {
			caps[CapMemory] = resourceapi.DeviceCapacity{Value: *resource.NewQuantity(mib<<20, resource.BinarySI)}
		}
	case devices.KindMIG:
		str(AttrUUID, a["uuid"])
		str(AttrParentUUID, a["parent_uuid"])
		str(AttrMIGProfile, a["profile"])
		if mib, err := strconv.ParseInt(a["memory_mib"], 10, 64); err == nil && mib > 0 {
			caps[CapMemory] = resourceapi.DeviceCapacity{Value: *resource.NewQuantity(mib<<20, resource.BinarySI)}
		}
	case devices.KindHCA:
		str(AttrIBDev, a["ibdev"])
		str(AttrNodeGUID, a["node_guid"])
		str(AttrFirmware, a["fw_ver"])
		if nd, _, _ := strings.Cut(a["netdevs"], ","); nd != "" {
			str(AttrNetDev, nd)
		}
		integer(AttrPorts, int64(len(d.Ports)))
		if p, ok := mainPort(d.Ports); ok {
			str(AttrLinkLayer, p.LinkLayer)
			str(AttrLinkRate, p.Rate)
			str(AttrPortState, p.State)
			if bps, ok := linkBitsPerSecond(p.Rate); ok {
				caps[CapLinkSpeed] = resourceapi.DeviceCapacity{Value: *resource.NewQuantity(bps, resource.DecimalSI)}
			}
		}
	case devices.KindFPGA:
		str(AttrShell, a["shell"])
		str(AttrInterfaceID, a["interface_id"])
		str(AttrAFUID, a["afu_id"])
		str(AttrBitstreamID, a["bitstream_id"])
		str(AttrDriverAPI, a["driver_api"])
		str(AttrSerial, a["serial"])
	}
	out := resourceapi.Device{Name: e.name, Attributes: attrs}
	if len(caps) > 0 {
		out.Capacity = caps
	}
	if !h.healthy {
		reason := h.reason
		if reason == "" {
			reason = "unhealthy"
		}
		out.Taints = []resourceapi.DeviceTaint{{Key: TaintKey, Value: labelValue(reason), Effect: b.effect}}
	}
	return out
}

// mainPort is the port that describes an HCA: the first usable one, else
// the first.
func mainPort(ports []devices.Port) (devices.Port, bool) {
	if len(ports) == 0 {
		return devices.Port{}, false
	}
	for _, p := range ports {
		if p.State == "ACTIVE" && p.PhysState == "LinkUp" {
			return p, true
		}
	}
	return ports[0], true
}

// linkBitsPerSecond parses sysfs's rate ("400 Gb/sec (4X NDR)").
func linkBitsPerSecond(rate string) (int64, bool) {
	f := strings.Fields(rate)
	if len(f) < 2 {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil || v <= 0 {
		return 0, false
	}
	switch f[1] {
	case "Gb/sec":
		return int64(v * 1e9), true
	case "Mb/sec":
		return int64(v * 1e6), true
	}
	return 0, false
}

// nvlinkDomains gives each GPU with NVLink peers the name of its NVLink
// domain: the lowest PCI address among the GPUs and peers it is connected
// to, directly or through others.
func nvlinkDomains(inv *inventory) map[string]string {
	parent := map[string]string{}
	var find func(string) string
	find = func(x string) string {
		p, ok := parent[x]
		if !ok || p == x {
			parent[x] = x
			return x
		}
		r := find(p)
		parent[x] = r
		return r
	}
	union := func(a, b string) {
		ra, rb := find(a), find(b)
		if ra == rb {
			return
		}
		if rb < ra {
			ra, rb = rb, ra
		}
		parent[rb] = ra
	}
	var linked []devices.Device
	for _, e := range inv.entries {
		if e.dev.Kind != devices.KindGPU || e.dev.Attributes["nvlink_peers"] == "" {
			continue
		}
		linked = append(linked, e.dev)
		for _, p := range strings.Split(e.dev.Attributes["nvlink_peers"], ",") {
			union(e.dev.PCIAddress, strings.TrimSpace(p))
		}
	}
	out := map[string]string{}
	for _, d := range linked {
		out[d.ID] = find(d.PCIAddress)
	}
	return out
}

// sysRoot returns ROOT/sys for a host root.
func sysRoot(root string) string {
	if root == "" {
		root = "/"
	}
	return filepath.Join(root, "sys")
}

// taintEffect parses the configured effect for unhealthy devices.
func taintEffect(noExecute bool) resourceapi.DeviceTaintEffect {
	if noExecute {
		return resourceapi.DeviceTaintEffectNoExecute
	}
	return resourceapi.DeviceTaintEffectNoSchedule
}
