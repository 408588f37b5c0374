package devices

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
	return LocalitySystem
}

// Topology holds the pairwise locality of a set of devices, computed once
// (at start, not per allocation call).
type Topology struct {
	index map[string]int
	dist  [][]Locality
}

// NewTopology computes the locality of every pair of devs.
func NewTopology(devs []Device) *Topology {
	return &Topology{}
}

// Locality returns how close the devices with IDs a and b are;
// LocalitySystem when either is unknown.
func (t *Topology) Locality(a, b string) Locality {
	return LocalitySystem
}
