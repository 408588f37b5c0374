package devices

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// migProfile names a MIG profile as nvidia-smi does: "<g>g.<mem>gb" when
// the compute instance takes the whole GPU instance, "<c>c.<g>g.<mem>gb"
// otherwise, then the GPU instance profile's suffix ("+me"). The memory
// size is the GPU instance's share of the GPU, rounded up to eighths, of
// the GPU's memory in whole GiB, so that an H100 80GB's 9856 MiB slice is
// "10gb".
func migProfile(ciSlices, giSlices int, memMiB, totalBytes uint64, suffix string) string {
	gb := memMiB >> 10
	if totalBytes > 0 {
		frac := math.Ceil(float64(memMiB<<20)/float64(totalBytes)*8) / 8
		totalGiB := (totalBytes + 1<<30 - 1) >> 30
		gb = uint64(math.Round(frac * float64(totalGiB)))
	}
	name := fmt.Sprintf("%dg.%dgb", giSlices, gb)
	if ciSlices != giSlices {
		name = fmt.Sprintf("%dc.%s", ciSlices, name)
	}
	return name + suffix
}

// migMinors reads /proc/driver/nvidia-caps/mig-minors: the minor number of
// each MIG capability ("gpu0/gi1/access 12"), whose device node is
// /dev/nvidia-caps/nvidia-cap<minor>.
func (n node) migMinors() (map[string]int, error) {
	path := n.proc("driver", "nvidia-caps", "mig-minors")
	buf := make([]byte, 256<<10)
	nr, err := readSmall(path, buf)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for line := range strings.Lines(string(buf[:nr])) {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if m, err := strconv.Atoi(f[1]); err == nil && m >= 0 {
			out[f[0]] = m
		}
	}
	return out, nil
}

// migDevices builds the MIG devices of gpu (already finished, with its
// device nodes) from what NVML listed: each gets the GPU's place and
// device nodes and the capability nodes of its GPU and compute instance
// (/dev/nvidia-caps/nvidia-cap<N>, minors from mig-minors). A MIG device
// whose capability nodes are unknown or missing is unhealthy, since a
// container could not open it.
func (n node) migDevices(gpu Device, migs []NVMLMIG, minors map[string]int, minorsErr error) []Device {
	out := make([]Device, 0, len(migs))
	parent := gpu.Attributes["uuid"]
	for _, m := range migs {
		d := gpu
		d.Kind = KindMIG
		d.ID = m.UUID
		if d.ID == "" {
			// The form NVIDIA's container toolkit accepts without a MIG
			// UUID: MIG-<GPU UUID>/<gi>/<ci>.
			d.ID = fmt.Sprintf("MIG-%s/%d/%d", parent, m.GI, m.CI)
		}
		d.Model = gpu.Model + " MIG " + m.Profile
		d.Attributes = map[string]string{
			"parent_uuid": parent, "profile": m.Profile,
			"gi": strconv.Itoa(m.GI), "ci": strconv.Itoa(m.CI),
			"memory_mib": strconv.FormatUint(m.MemoryBytes>>20, 10),
		}
		if m.UUID != "" {
			d.Attributes["uuid"] = m.UUID
		}
		if mi := gpu.Attributes["minor"]; mi != "" {
			d.Attributes["minor"] = mi
		}
		d.DeviceNodes = append([]DeviceNode(nil), gpu.DeviceNodes...)
		problems := []string{}
		if !gpu.Healthy {
			problems = append(problems, "parent gpu: "+gpu.HealthReason)
		}
		minor := gpu.Attributes["minor"]
		switch {
		case minorsErr != nil:
			problems = append(problems, "mig capability minors unknown: "+minorsErr.Error())
		case minor == "":
			problems = append(problems, "parent gpu minor unknown")
		default:
			for _, capName := range []string{
				fmt.Sprintf("gpu%s/gi%d/access", minor, m.GI),
				fmt.Sprintf("gpu%s/gi%d/ci%d/access", minor, m.GI, m.CI),
			} {
				cm, ok := minors[capName]
				if !ok {
					problems = append(problems, capName+" not in mig-minors")
					continue
				}
				p := fmt.Sprintf("/dev/nvidia-caps/nvidia-cap%d", cm)
				if !exists(n.dev(p)) {
					problems = append(problems, p+" missing")
					continue
				}
				d.DeviceNodes = append(d.DeviceNodes, DeviceNode{Path: p, Permissions: "rw"})
			}
		}
		setHealth(&d, problems)
		out = append(out, d)
	}
	return out
}
