//go:build cgo && linux

package devices

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// loadNVML returns the real NVML seam; libnvidia-ml is opened with dlopen
// by Init, so nothing is needed to build or to run without a GPU.
func loadNVML() NVML { return FromNVML(nvml.New()) }

// FromNVML wraps a go-nvml interface (the real library from nvml.New, or a
// mock server such as go-nvml's pkg/nvml/mock/dgxh100) as the NVML seam.
func FromNVML(lib nvml.Interface) NVML { return &goNVML{lib: lib} }

type goNVML struct {
	lib nvml.Interface
}

func nvmlErr(op string, ret nvml.Return) error {
	return fmt.Errorf("nvml %s: %s", op, ret.Error())
}

func (g *goNVML) Init() error {
	switch ret := g.lib.Init(); ret {
	case nvml.SUCCESS:
		return nil
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return fmt.Errorf("nvml init: %w", ErrNVMLNotFound)
	default:
		return nvmlErr("init", ret)
	}
}

func (g *goNVML) Shutdown() error {
	if ret := g.lib.Shutdown(); ret != nvml.SUCCESS {
		return nvmlErr("shutdown", ret)
	}
	return nil
}

func (g *goNVML) GPUs() ([]NVMLGPU, error) {
	count, ret := g.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, nvmlErr("get device count", ret)
	}
	out := make([]NVMLGPU, 0, count)
	for i := range count {
		dev, ret := g.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, nvmlErr(fmt.Sprintf("get device %d", i), ret)
		}
		gpu, ok := readNVMLGPU(dev, i)
		if !ok {
			// Without a PCI address the GPU cannot be matched to sysfs;
			// the sysfs GPU it is will be reported as not visible.
			continue
		}
		out = append(out, gpu)
	}
	return out, nil
}

// readNVMLGPU reads one GPU; it reports false when not even the PCI address
// can be read. Other failures are collected in Err.
func readNVMLGPU(dev nvml.Device, index int) (NVMLGPU, bool) {
	g := NVMLGPU{Minor: -1}
	pci, ret := dev.GetPciInfo()
	if ret != nvml.SUCCESS {
		return g, false
	}
	addr, ok := normalizeBusID(busIDString(pci.BusId))
	if !ok {
		return g, false
	}
	g.PCIAddress = addr
	var errs []error
	if g.UUID, ret = dev.GetUUID(); ret != nvml.SUCCESS {
		errs = append(errs, nvmlErr("get uuid", ret))
	}
	if g.Name, ret = dev.GetName(); ret != nvml.SUCCESS {
		errs = append(errs, nvmlErr("get name", ret))
	}
	if g.Minor, ret = dev.GetMinorNumber(); ret != nvml.SUCCESS {
		g.Minor = -1
		errs = append(errs, nvmlErr("get minor number", ret))
	}
	if mem, ret := dev.GetMemoryInfo(); ret == nvml.SUCCESS {
		g.MemoryBytes = mem.Total
	} else {
		errs = append(errs, nvmlErr("get memory info", ret))
	}
	switch cur, _, ret := dev.GetMigMode(); ret {
	case nvml.SUCCESS:
		g.MIGMode = "disabled"
		if cur == nvml.DEVICE_MIG_ENABLE {
			g.MIGMode = "enabled"
			var err error
			if g.MIG, err = readMIG(dev, g.MemoryBytes); err != nil {
				errs = append(errs, err)
			}
		}
	case nvml.ERROR_NOT_SUPPORTED:
	default:
		errs = append(errs, nvmlErr("get mig mode", ret))
	}
	for link := range nvml.NVLINK_MAX_LINKS {
		st, ret := dev.GetNvLinkState(link)
		if ret != nvml.SUCCESS {
			// NOT_SUPPORTED or INVALID_ARGUMENT past the last link.
			break
		}
		if st != nvml.FEATURE_ENABLED {
			continue
		}
		if rp, ret := dev.GetNvLinkRemotePciInfo(link); ret == nvml.SUCCESS {
			if a, ok := normalizeBusID(busIDString(rp.BusId)); ok {
				g.NVLinkPeers = append(g.NVLinkPeers, a)
			}
		}
	}
	if len(errs) > 0 {
		g.Err = fmt.Errorf("gpu %d (%s): %w", index, addr, errors.Join(errs...))
	}
	return g, true
}

// giSuffix names the GPU instance profiles whose names carry a suffix, as
// nvidia-smi writes them (media extensions, graphics).
var giSuffix = map[int]string{
	nvml.GPU_INSTANCE_PROFILE_1_SLICE_REV1:   "+me",
	nvml.GPU_INSTANCE_PROFILE_2_SLICE_REV1:   "+me",
	nvml.GPU_INSTANCE_PROFILE_1_SLICE_GFX:    "+gfx",
	nvml.GPU_INSTANCE_PROFILE_2_SLICE_GFX:    "+gfx",
	nvml.GPU_INSTANCE_PROFILE_3_SLICE_GFX:    "+gfx",
	nvml.GPU_INSTANCE_PROFILE_4_SLICE_GFX:    "+gfx",
	nvml.GPU_INSTANCE_PROFILE_1_SLICE_NO_ME:  "-me",
	nvml.GPU_INSTANCE_PROFILE_2_SLICE_NO_ME:  "-me",
	nvml.GPU_INSTANCE_PROFILE_1_SLICE_ALL_ME: "+me.all",
	nvml.GPU_INSTANCE_PROFILE_2_SLICE_ALL_ME: "+me.all",
}

// readMIG lists the MIG devices of a GPU in MIG mode: every compute
// instance of every GPU instance, named by its profiles, with its UUID from
// the MIG device handles where NVML gives them. total is the GPU's memory,
// which the profile name's memory size is a fraction of.
func readMIG(dev nvml.Device, total uint64) ([]NVMLMIG, error) {
	var out []NVMLMIG
	for p := range nvml.GPU_INSTANCE_PROFILE_COUNT {
		gip, ret := dev.GetGpuInstanceProfileInfo(p)
		if ret != nvml.SUCCESS {
			continue // a profile this GPU does not have
		}
		gis, ret := dev.GetGpuInstances(&gip)
		if ret != nvml.SUCCESS {
			return nil, nvmlErr(fmt.Sprintf("get gpu instances of profile %d", p), ret)
		}
		for _, gi := range gis {
			info, ret := gi.GetInfo()
			if ret != nvml.SUCCESS {
				return nil, nvmlErr("get gpu instance info", ret)
			}
			for c := range nvml.COMPUTE_INSTANCE_PROFILE_COUNT {
				cip, ret := gi.GetComputeInstanceProfileInfo(c, nvml.COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
				if ret != nvml.SUCCESS {
					continue
				}
				cis, ret := gi.GetComputeInstances(&cip)
				if ret != nvml.SUCCESS {
					return nil, nvmlErr(fmt.Sprintf("get compute instances of gpu instance %d", info.Id), ret)
				}
				for _, ci := range cis {
					cinfo, ret := ci.GetInfo()
					if ret != nvml.SUCCESS {
						return nil, nvmlErr("get compute instance info", ret)
					}
					out = append(out, NVMLMIG{
						GI: int(info.Id), CI: int(cinfo.Id),
						Profile:     migProfile(int(cip.SliceCount), int(gip.SliceCount), gip.MemorySizeMB, total, giSuffix[p]),
						MemoryBytes: gip.MemorySizeMB << 20,
					})
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, nil // MIG mode on, no instances created yet
	}
	slices.SortFunc(out, func(a, b NVMLMIG) int { return cmp.Or(cmp.Compare(a.GI, b.GI), cmp.Compare(a.CI, b.CI)) })
	migUUIDs(dev, out)
	return out, nil
}

// migUUIDs fills in the UUIDs of migs from the GPU's MIG device handles;
// a MIG device NVML gives no handle or UUID for keeps an empty one.
func migUUIDs(dev nvml.Device, migs []NVMLMIG) {
	n, ret := dev.GetMaxMigDeviceCount()
	if ret != nvml.SUCCESS {
		return
	}
	for i := range n {
		h, ret := dev.GetMigDeviceHandleByIndex(i)
		if ret != nvml.SUCCESS {
			continue // no MIG device at this index
		}
		gi, r1 := h.GetGpuInstanceId()
		ci, r2 := h.GetComputeInstanceId()
		uuid, r3 := h.GetUUID()
		if r1 != nvml.SUCCESS || r2 != nvml.SUCCESS || r3 != nvml.SUCCESS {
			continue
		}
		for k := range migs {
			if migs[k].GI == gi && migs[k].CI == ci {
				migs[k].UUID = uuid
			}
		}
	}
}

// busIDString converts NVML's NUL-terminated C string.
func busIDString(b [32]int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

func (g *goNVML) NewEventSet() (NVMLEventSet, error) {
	set, ret := g.lib.EventSetCreate()
	if ret != nvml.SUCCESS {
		return nil, nvmlErr("create event set", ret)
	}
	return &goEventSet{lib: g.lib, set: set}, nil
}

type goEventSet struct {
	lib nvml.Interface
	set nvml.EventSet
}

func (s *goEventSet) Register(uuid string) error {
	dev, ret := s.lib.DeviceGetHandleByUUID(uuid)
	if ret != nvml.SUCCESS {
		return nvmlErr("get device "+uuid, ret)
	}
	supported, ret := dev.GetSupportedEventTypes()
	if ret == nvml.ERROR_NOT_SUPPORTED {
		return fmt.Errorf("register xid events of %s: %w", uuid, errXIDNotSupported)
	}
	if ret != nvml.SUCCESS {
		return nvmlErr("get supported events of "+uuid, ret)
	}
	if supported&nvml.EventTypeXidCriticalError == 0 {
		return fmt.Errorf("register xid events of %s: %w", uuid, errXIDNotSupported)
	}
	if ret := dev.RegisterEvents(nvml.EventTypeXidCriticalError, s.set); ret != nvml.SUCCESS {
		return nvmlErr("register xid events of "+uuid, ret)
	}
	return nil
}

func (s *goEventSet) Wait(timeout time.Duration) (XIDEvent, bool, error) {
	data, ret := s.set.Wait(uint32(timeout.Milliseconds()))
	switch ret {
	case nvml.SUCCESS:
	case nvml.ERROR_TIMEOUT:
		return XIDEvent{}, false, nil
	default:
		return XIDEvent{}, false, nvmlErr("wait for events", ret)
	}
	if data.EventType != nvml.EventTypeXidCriticalError {
		return XIDEvent{}, false, nil
	}
	ev := XIDEvent{XID: data.EventData}
	if data.Device != nil {
		// A failed UUID read leaves UUID empty: the event then counts
		// against every GPU, the safe side.
		if u, ret := data.Device.GetUUID(); ret == nvml.SUCCESS {
			ev.UUID = u
		}
	}
	return ev, true, nil
}

func (s *goEventSet) Close() error {
	if ret := s.set.Free(); ret != nvml.SUCCESS {
		return nvmlErr("free event set", ret)
	}
	return nil
}
