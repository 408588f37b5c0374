package deviceplugin

import (
	"slices"

	"google.golang.org/protobuf/proto"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/slipway-dev/slipway/pkg/deviceplugin/allocate"
	"github.com/slipway-dev/slipway/pkg/devices"
)

// state is an immutable snapshot of one resource's devices and health. A
// change builds a new state and closes the old one's changed channel, which
// wakes every ListAndWatch stream.
type state struct {
	res      Resource
	byID     map[string]int
	parts    map[string]bool // IDs of the discovered devices in res
	healthy  []bool
	reasons  []string
	topo     *allocate.Topology // built once per device set, reused across health changes
	list     []*pluginapi.Device
	topology bool // whether the devices carry NUMA topology
	changed  chan struct{}
}

// partHealth is the advertised health of a discovered device: its Healthy
// and HealthReason, as the node agent's health ledger set them.
func partHealth(d devices.Device) (bool, string) {
	if !d.Healthy && d.HealthReason == "" {
		return false, "unhealthy at discovery"
	}
	return d.Healthy, d.HealthReason
}

// newState builds the snapshot of r. prev, when it has the same device set,
// lends its topology (distances are computed once per device set), and,
// when the list the kubelet sees is the same too, its changed channel, so
// that ListAndWatch streams are not woken to send the same list again.
func newState(r Resource, prev *state) *state {
	st := &state{
		res:     r,
		byID:    make(map[string]int, len(r.Devices)),
		parts:   make(map[string]bool, len(r.Devices)),
		healthy: make([]bool, len(r.Devices)),
		reasons: make([]string, len(r.Devices)),
		changed: make(chan struct{}),
	}
	for i, d := range r.Devices {
		st.byID[d.ID] = i
		st.healthy[i] = true
		for _, p := range d.Parts {
			st.parts[p.ID] = true
			if ok, why := partHealth(p); !ok {
				st.healthy[i] = false
				switch {
				case st.reasons[i] != "":
				case len(d.Parts) == 1:
					st.reasons[i] = why
				default:
					st.reasons[i] = p.ID + ": " + why
				}
			}
		}
	}
	switch {
	case r.Replicas > 1:
		// Replicas are spread, not placed by distance (and n² distances
		// of thousands of replicas would be a waste).
	case prev != nil && sameDevices(prev.res, r):
		st.topo = prev.topo
	default:
		loc := make([]devices.Device, len(r.Devices))
		for i, d := range r.Devices {
			loc[i] = d.locality()
		}
		st.topo = allocate.NewTopology(loc)
	}
	// Every device reports NUMA, or none does: the kubelet cannot align a
	// resource some of whose devices lack topology.
	numa := make([][]int64, len(r.Devices))
	st.topology = !r.ExcludeTopology && len(r.Devices) > 0
	for i, d := range r.Devices {
		n, ok := d.numaNodes()
		if !ok {
			st.topology = false
		}
		numa[i] = n
	}
	st.list = make([]*pluginapi.Device, len(r.Devices))
	for i, d := range r.Devices {
		pd := &pluginapi.Device{ID: d.ID, Health: pluginapi.Healthy}
		if !st.healthy[i] {
			pd.Health = pluginapi.Unhealthy
		}
		if st.topology {
			ti := &pluginapi.TopologyInfo{}
			for _, n := range numa[i] {
				ti.Nodes = append(ti.Nodes, &pluginapi.NUMANode{ID: n})
			}
			pd.Topology = ti
		}
		st.list[i] = pd
	}
	if prev != nil && slices.EqualFunc(prev.list, st.list, func(a, b *pluginapi.Device) bool { return proto.Equal(a, b) }) {
		st.changed = prev.changed
	}
	return st
}

// sameDevices reports whether a and b advertise the same devices with the
// same parts in the same places.
func sameDevices(a, b Resource) bool {
	if len(a.Devices) != len(b.Devices) {
		return false
	}
	for i := range a.Devices {
		da, db := a.Devices[i], b.Devices[i]
		if da.ID != db.ID || len(da.Parts) != len(db.Parts) {
			return false
		}
		for k := range da.Parts {
			pa, pb := da.Parts[k], db.Parts[k]
			if pa.ID != pb.ID || pa.PCIAddress != pb.PCIAddress || pa.NUMANode != pb.NUMANode || pa.PCIeRoot != pb.PCIeRoot || !slices.Equal(pa.Bridges, pb.Bridges) || !slices.Equal(pa.DeviceNodes, pb.DeviceNodes) {
				return false
			}
		}
	}
	return true
}

// counts returns the number of healthy and unhealthy devices.
func (st *state) counts() (healthy, unhealthy int) {
	for _, h := range st.healthy {
		if h {
			healthy++
		} else {
			unhealthy++
		}
	}
	return healthy, unhealthy
}
