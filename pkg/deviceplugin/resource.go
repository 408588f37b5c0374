package deviceplugin

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/slipway-dev/slipway/pkg/deviceplugin/allocate"
	"github.com/slipway-dev/slipway/pkg/devices"
)

// Resource is one extended resource the plugin advertises, with its own
// socket.
type Resource struct {
	// Name is the extended resource name, such as nvidia.com/gpu.
	Name string
	// Devices are what the resource advertises, in a stable order.
	Devices []Device
	// ExcludeTopology advertises the devices without NUMA topology.
	ExcludeTopology bool
	// Replicas, when more than 1, says that the devices are time-slicing
	// replicas, that many per discovered device (see Replicate): the
	// preferred allocation spreads a request over distinct devices.
	Replicas int
}

// ReplicaSeparator joins a device's ID and a replica number in the ID of a
// time-slicing replica: GPU-<uuid>::3.
const ReplicaSeparator = "::"

// Replicate returns r with each of its devices advertised n times, as
// <id>::0 to <id>::<n-1>, each with the same parts: time-slicing, with no
// isolation between the containers that share a device.
func Replicate(r Resource, n int) Resource {
	out := r
	out.Replicas = n
	out.Devices = make([]Device, 0, len(r.Devices)*n)
	for _, d := range r.Devices {
		for i := range n {
			out.Devices = append(out.Devices, Device{ID: d.ID + ReplicaSeparator + strconv.Itoa(i), Parts: d.Parts})
		}
	}
	return out
}

// Device is one advertised device: a discovered device or, for a
// composite resource such as a GPU-HCA pair, several that are always
// allocated together.
type Device struct {
	// ID is the ID the kubelet sees: the part's ID, or the parts' IDs
	// joined with "+" for a composite.
	ID string
	// Parts are the discovered devices; the first one's place on the PCIe
	// tree stands for the whole device.
	Parts []devices.Device
}

// Single returns the Device that advertises d alone.
func Single(d devices.Device) Device { return Device{ID: d.ID, Parts: []devices.Device{d}} }

// numaNodes returns the distinct known NUMA nodes of the parts, and false
// when a part's NUMA node is unknown.
func (d Device) numaNodes() ([]int64, bool) {
	var out []int64
	for _, p := range d.Parts {
		if p.NUMANode == devices.NoNUMA {
			return nil, false
		}
		if !slices.Contains(out, int64(p.NUMANode)) {
			out = append(out, int64(p.NUMANode))
		}
	}
	slices.Sort(out)
	return out, len(out) > 0
}

// locality is the device's place on the PCIe tree, for the allocation
// policy: the first part's, under the advertised ID.
func (d Device) locality() devices.Device {
	l := d.Parts[0]
	l.ID = d.ID
	return l
}

// PCIeRoot is the PCIe root complex of the device's first part (the value a
// DRA driver publishes as resource.kubernetes.io/pcieRoot).
func (d Device) PCIeRoot() string { return d.Parts[0].PCIeRoot }

// PairConfig makes a composite resource of GPU-HCA pairs under one PCIe
// switch, for GPUDirect RDMA.
type PairConfig struct {
	// Name is the composite resource's name, such as slipway.dev/gpu-hca-pair.
	Name string
	// GPUResource and HCAResource are the resources whose devices are
	// paired; a paired device is withdrawn from them so that it cannot be
	// allocated twice.
	GPUResource string
	HCAResource string
}

// BuildOptions says how discovered devices become resources.
type BuildOptions struct {
	// ExcludeTopology names the resources advertised without topology.
	ExcludeTopology []string
	// Pairs, when Name is set, adds the GPU-HCA pair resource.
	Pairs PairConfig
}

// ResourcesFor returns the resources the config of st assigns its devices
// to (devices.ResourceConfig.Plan), built with opts, with the replicas the
// config asks for.
func ResourcesFor(st devices.State, opts BuildOptions) []Resource {
	plan := st.Config.Plan(st.Devices)
	assigned := make(map[string][]devices.Device, len(plan))
	replicas := make(map[string]int, len(plan))
	for _, a := range plan {
		assigned[a.Name] = a.Devices
		replicas[a.Name] = a.Replicas
	}
	rs := BuildResources(assigned, opts)
	for i, r := range rs {
		if n := replicas[r.Name]; n > 1 {
			rs[i] = Replicate(r, n)
		}
	}
	return rs
}

// BuildResources turns the devices assigned to each resource name (as
// devices.ResourceConfig.Assign returns them) into Resources sorted by
// name, with the composite pair resource when configured.
func BuildResources(assigned map[string][]devices.Device, opts BuildOptions) []Resource {
	plain := make(map[string][]devices.Device, len(assigned))
	for name, devs := range assigned {
		plain[name] = slices.Clone(devs)
	}
	var out []Resource
	if p := opts.Pairs; p.Name != "" {
		pairs, gpus, hcas := PairDevices(plain[p.GPUResource], plain[p.HCAResource])
		plain[p.GPUResource], plain[p.HCAResource] = gpus, hcas
		if len(pairs) > 0 {
			out = append(out, Resource{Name: p.Name, Devices: pairs, ExcludeTopology: slices.Contains(opts.ExcludeTopology, p.Name)})
		}
	}
	for name, devs := range plain {
		if len(devs) == 0 {
			continue
		}
		r := Resource{Name: name, ExcludeTopology: slices.Contains(opts.ExcludeTopology, name)}
		for _, d := range devs {
			r.Devices = append(r.Devices, Single(d))
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Resource) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// PairDevices pairs each GPU, in order, with the closest unpaired HCA under
// the same PCIe switch (PIX), or failing that under the same root port
// through several switches (PXB), so that GPUDirect RDMA traffic stays off
// the root complex; it returns the pairs and the GPUs and HCAs left
// unpaired.
func PairDevices(gpus, hcas []devices.Device) (pairs []Device, restGPUs, restHCAs []devices.Device) {
	used := make([]bool, len(hcas))
	for _, g := range gpus {
		best, bestDist := -1, 0
		for k, h := range hcas {
			if used[k] {
				continue
			}
			if d := allocate.Distance(g, h); d <= allocate.MultiSwitch && (best < 0 || d < bestDist) {
				best, bestDist = k, d
			}
		}
		if best < 0 {
			restGPUs = append(restGPUs, g)
			continue
		}
		used[best] = true
		h := hcas[best]
		pairs = append(pairs, Device{ID: g.ID + "+" + h.ID, Parts: []devices.Device{g, h}})
	}
	for k, h := range hcas {
		if !used[k] {
			restHCAs = append(restHCAs, h)
		}
	}
	return pairs, restGPUs, restHCAs
}

// socketTag is the length of the random part of a socket name.
const socketTag = 8

// SocketGlob matches the paths of the sockets of resource name in the
// kubelet's device plugin directory dir (filepath.Match syntax):
// dir/slipway-<name>-<tag>.sock, where <name> is the resource name without
// a "slipway.dev/" domain and with "/" as "_", and <tag> 8 hex digits that
// are new every time the resource is served (slipway-hca-1f2e3d4c.sock,
// slipway-nvidia.com_gpu-5a6b7c8d.sock). Each name is used once, so that the
// kubelet never mistakes a new server for an old one it has not yet
// dropped. Where that path would be longer than a unix socket allows (107
// bytes: an FPGA identity under microk8s's kubelet directory), <name> is
// "h" and 8 hex digits of the name's SHA-256.
func SocketGlob(dir, name string) string {
	return filepath.Join(dir, socketPrefix(dir, name)+strings.Repeat("?", socketTag)+".sock")
}

func socketPrefix(dir, name string) string {
	p := "slipway-" + strings.ReplaceAll(strings.TrimPrefix(name, "slipway.dev/"), "/", "_") + "-"
	if len(filepath.Join(dir, p+strings.Repeat("?", socketTag)+".sock")) > maxSocketPath {
		sum := sha256.Sum256([]byte(name))
		p = fmt.Sprintf("slipway-h%x-", sum[:4])
	}
	return p
}

// newSocketPath is a socket path of resource name in dir that SocketGlob
// matches, with a random tag.
func newSocketPath(dir, name string) string {
	return filepath.Join(dir, fmt.Sprintf("%s%0*x.sock", socketPrefix(dir, name), socketTag, rand.Uint32()))
}

// validateResource checks what the kubelet would refuse.
func validateResource(r Resource) error {
	if err := devices.CheckResourceName(r.Name); err != nil {
		return fmt.Errorf("resource %w", err)
	}
	seen := make(map[string]bool, len(r.Devices))
	for _, d := range r.Devices {
		if d.ID == "" || len(d.Parts) == 0 {
			return fmt.Errorf("resource %s: device %q has no ID or no parts", r.Name, d.ID)
		}
		if seen[d.ID] {
			return fmt.Errorf("resource %s: device %q listed twice", r.Name, d.ID)
		}
		seen[d.ID] = true
	}
	return nil
}
