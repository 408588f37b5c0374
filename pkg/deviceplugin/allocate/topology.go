package allocate

import (
	"slices"

	"github.com/slipway-dev/slipway/pkg/devices"
)

// Costs of placing two devices in one allocation, by their locality
// (devices.LocalityOf); smaller is closer. They grow fast enough that a set
// spanning fewer levels of the PCIe tree always wins.
const (
	SameSwitch  = 1  // PIX: under one PCIe switch
	MultiSwitch = 4  // PXB: under one root port through several switches
	SameRoot    = 16 // PHB: under one PCIe root complex
	SameNUMA    = 32 // NODE: on one NUMA node, different roots
	Across      = 64 // SYS: across NUMA nodes, or NUMA unknown
)

// Distance returns the cost of placing a and b in one allocation.
func Distance(a, b devices.Device) int {
	switch devices.LocalityOf(a, b) {
	case devices.LocalitySame:
		return 0
	case devices.LocalitySwitch:
		return SameSwitch
	case devices.LocalityMultiSwitch:
		return MultiSwitch
	case devices.LocalityRoot:
		return SameRoot
	case devices.LocalityNUMA:
		return SameNUMA
	}
	return Across
}

// Topology holds the pairwise distances of one resource's devices. Build it
// once when the devices are discovered; it is read-only afterwards and safe
// for concurrent use.
type Topology struct {
	ids   []string
	index map[string]int
	dist  []uint8 // n*n, row-major
}

// NewTopology computes the pairwise distances of devs, identified by ID.
// The order of devs is the tie-break order of Preferred: pass them sorted
// (by PCI address) for stable answers.
func NewTopology(devs []devices.Device) *Topology {
	n := len(devs)
	t := &Topology{
		ids:   make([]string, n),
		index: make(map[string]int, n),
		dist:  make([]uint8, n*n),
	}
	for i, d := range devs {
		t.ids[i] = d.ID
		t.index[d.ID] = i
	}
	for i := range devs {
		for j := i + 1; j < n; j++ {
			d := uint8(Distance(devs[i], devs[j]))
			t.dist[i*n+j] = d
			t.dist[j*n+i] = d
		}
	}
	return t
}

// Len is the number of devices.
func (t *Topology) Len() int { return len(t.ids) }

// IDs returns the device IDs in tie-break order.
func (t *Topology) IDs() []string { return slices.Clone(t.ids) }

// Cost returns the sum of pairwise distances of the named devices, and false
// if one of them is unknown.
func (t *Topology) Cost(ids []string) (int, bool) {
	idx := make([]int, 0, len(ids))
	for _, id := range ids {
		i, ok := t.index[id]
		if !ok {
			return 0, false
		}
		idx = append(idx, i)
	}
	return t.cost(idx), true
}

func (t *Topology) cost(idx []int) int {
	n := len(t.ids)
	c := 0
	for a := range idx {
		for b := a + 1; b < len(idx); b++ {
			c += int(t.dist[idx[a]*n+idx[b]])
		}
	}
	return c
}
