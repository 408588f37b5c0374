package devices

import (
	"cmp"
	"slices"
)

// Locality is how close two devices are on the PCIe fabric, from closest
// (LocalitySame) to farthest (LocalitySystem). Smaller is closer.
type Locality int

// Locality levels, named after nvidia-smi topo -m.
const (
	// LocalitySame is a device with itself ("X").
	LocalitySame Locality = iota
	// LocalitySwitch is two devices under one PCIe switch, at most one
	// switch crossed ("PIX").
	LocalitySwitch
	// LocalityMultiSwitch is two devices under one root port through
	// several switches ("PXB").
	LocalityMultiSwitch
	// LocalityRoot is two devices under one PCIe root (host bridge) with no
	// switch in common ("PHB").
	LocalityRoot
	// LocalityNUMA is two devices on one NUMA node under different roots
	// ("NODE").
	LocalityNUMA
	// LocalitySystem is two devices on different or unknown NUMA nodes
	// ("SYS").
	LocalitySystem
)

// String returns the nvidia-smi topo -m abbreviation: X, PIX, PXB, PHB,
// NODE or SYS.
func (l Locality) String() string {
	switch l {
	case LocalitySame:
		return "X"
	case LocalitySwitch:
		return "PIX"
	case LocalityMultiSwitch:
		return "PXB"
	case LocalityRoot:
		return "PHB"
	case LocalityNUMA:
		return "NODE"
	}
	return "SYS"
}

// LocalityOf computes how close a and b are from their PCIeRoot, Bridges
// and NUMANode.
func LocalityOf(a, b Device) Locality {
	if a.ID == b.ID && a.Kind == b.Kind {
		return LocalitySame
	}
	if a.PCIeRoot != "" && a.PCIeRoot == b.PCIeRoot {
		common := 0
		for common < len(a.Bridges) && common < len(b.Bridges) && a.Bridges[common] == b.Bridges[common] {
			common++
		}
		if common == 0 {
			return LocalityRoot
		}
		// Below the deepest shared bridge each device crosses its own
		// bridges; one switch means at most one downstream port each.
		if len(a.Bridges)-common <= 1 && len(b.Bridges)-common <= 1 {
			return LocalitySwitch
		}
		return LocalityMultiSwitch
	}
	if a.NUMANode != NoNUMA && a.NUMANode == b.NUMANode {
		return LocalityNUMA
	}
	return LocalitySystem
}

// Topology holds the pairwise locality of a set of devices, computed once
// (at start, not per allocation call). It is read-only after NewTopology
// and safe for concurrent use. Device IDs must be unique across kinds.
type Topology struct {
	index map[string]int
	dist  [][]Locality
}

// NewTopology computes the locality of every pair of devs.
func NewTopology(devs []Device) *Topology {
	t := &Topology{index: make(map[string]int, len(devs)), dist: make([][]Locality, len(devs))}
	for i, d := range devs {
		t.index[d.ID] = i
		t.dist[i] = make([]Locality, len(devs))
		for j, e := range devs {
			t.dist[i][j] = LocalityOf(d, e)
		}
	}
	return t
}

// Locality returns how close the devices with IDs a and b are;
// LocalitySystem when either is unknown.
func (t *Topology) Locality(a, b string) Locality {
	i, ok := t.index[a]
	if !ok {
		return LocalitySystem
	}
	j, ok := t.index[b]
	if !ok {
		return LocalitySystem
	}
	return t.dist[i][j]
}

// Closest returns the devices of candidates ordered from closest to
// farthest from the device with ID id (ties keep candidates' order); the
// plugin uses it to pair a GPU with the HCA under its switch.
func (t *Topology) Closest(id string, candidates []string) []string {
	out := slices.Clone(candidates)
	slices.SortStableFunc(out, func(a, b string) int {
		return cmp.Compare(t.Locality(id, a), t.Locality(id, b))
	})
	return out
}
