//go:build cgo && linux

package nvmlmock

import (
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// GPU is one of the fixture's GPUs.
type GPU struct {
	// Bus is the PCI bus (0000:<bus>:00.0).
	Bus int
	// Minor is the minor of /dev/nvidia<minor>.
	Minor int
}

// GPUs are the dgx-h100 fixture's GPUs in NVML index order; minors 2 and 3
// are swapped against bus order, as on a real DGX.
var GPUs = []GPU{{0x1b, 0}, {0x43, 1}, {0x52, 3}, {0x61, 2}, {0x9d, 4}, {0xc3, 5}, {0xd1, 6}, {0xdf, 7}}

// UUID is the UUID of the fixture GPU on bus with minor.
func UUID(bus, minor int) string {
	return fmt.Sprintf("GPU-%08x-1111-2222-3333-4444%08x", bus, minor)
}

// DGX is the mock server.
type DGX struct {
	// Server is go-nvml's mock; tests may override its functions.
	Server *server.Server
	// WaitErr, when not 0, is the nvml.Return every event set Wait gives.
	WaitErr atomic.Int32
	// Created counts the event sets created.
	Created atomic.Int32

	events chan nvml.EventData
}

// NewDGXH100 returns the mock with the fixture's bus IDs, UUIDs and minors,
// XID events supported, and NVLink not supported.
func NewDGXH100() *DGX {
	m := &DGX{Server: dgxh100.New(), events: make(chan nvml.EventData, 16)}
	for i, d := range m.Server.Devices {
		dev := d.(*server.Device)
		g := GPUs[i]
		dev.UUID = UUID(g.Bus, g.Minor)
		dev.Minor = g.Minor
		dev.PciBusID = fmt.Sprintf("00000000:%02X:00.0", g.Bus)
		busID := dev.PciBusID
		dev.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
			var p nvml.PciInfo
			for j, c := range busID {
				p.BusId[j] = int8(c)
			}
			p.PciDeviceId = dev.Config.PciDeviceId
			return p, nvml.SUCCESS
		}
		dev.GetNvLinkStateFunc = func(int) (nvml.EnableState, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
		dev.GetSupportedEventTypesFunc = func() (uint64, nvml.Return) {
			return nvml.EventTypeXidCriticalError | nvml.EventTypeSingleBitEccError, nvml.SUCCESS
		}
		dev.RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS }
	}
	m.Server.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		m.Created.Add(1)
		return &mock.EventSet{
			WaitFunc: func(ms uint32) (nvml.EventData, nvml.Return) {
				if r := m.WaitErr.Load(); r != 0 {
					return nvml.EventData{}, nvml.Return(r)
				}
				select {
				case ev := <-m.events:
					return ev, nvml.SUCCESS
				case <-time.After(time.Duration(ms) * time.Millisecond):
					return nvml.EventData{}, nvml.ERROR_TIMEOUT
				}
			},
			FreeFunc: func() nvml.Return { return nvml.SUCCESS },
		}, nvml.SUCCESS
	}
	return m
}

// XID injects a critical XID error on GPU index i (-1: an event without a
// device, which counts against every GPU).
func (m *DGX) XID(i int, code uint64) {
	ev := nvml.EventData{EventType: nvml.EventTypeXidCriticalError, EventData: code}
	if i >= 0 {
		ev.Device = m.Server.Devices[i]
	}
	m.events <- ev
}

// Instance is a GPU instance to create with its compute instances: GI is a
// GPU instance profile (nvml.GPU_INSTANCE_PROFILE_*) and CI the slice
// count of each compute instance (0: one taking the whole GPU instance),
// CIs how many (0: one).
type Instance struct {
	GI       int
	CISlices int
	CIs      int
}

// MIGUUID is the UUID the mock gives the MIG device of GPU index gpu, GPU
// instance gi, compute instance ci.
func MIGUUID(gpu, gi, ci int) string {
	return fmt.Sprintf("MIG-%08x-aaaa-bbbb-cccc-%04x%04x%04x", GPUs[gpu].Bus, gpu, gi, ci)
}

// EnableMIG turns MIG mode on for GPU index gpu and creates the instances
// through the mock's own MIG API (its H100 profiles and placements). The
// mock lacks MIG device handles; EnableMIG adds GetMaxMigDeviceCount and
// GetMigDeviceHandleByIndex read from the instances the mock holds, each
// handle reporting its GPU instance, compute instance and MIGUUID.
func (m *DGX) EnableMIG(gpu int, instances ...Instance) error {
	dev := m.Server.Devices[gpu].(*server.Device)
	if ret, _ := dev.SetMigMode(nvml.DEVICE_MIG_ENABLE); ret != nvml.SUCCESS {
		return fmt.Errorf("set mig mode on gpu %d: %v", gpu, ret)
	}
	for _, in := range instances {
		gip, ret := dev.GetGpuInstanceProfileInfo(in.GI)
		if ret != nvml.SUCCESS {
			return fmt.Errorf("gpu instance profile %d: %v", in.GI, ret)
		}
		gi, ret := dev.CreateGpuInstance(&gip)
		if ret != nvml.SUCCESS {
			return fmt.Errorf("create gpu instance of profile %d: %v", in.GI, ret)
		}
		slices := in.CISlices
		if slices == 0 {
			slices = int(gip.SliceCount)
		}
		var cip nvml.ComputeInstanceProfileInfo
		found := false
		for c := range nvml.COMPUTE_INSTANCE_PROFILE_COUNT {
			p, ret := gi.GetComputeInstanceProfileInfo(c, nvml.COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
			if ret == nvml.SUCCESS && int(p.SliceCount) == slices {
				cip, found = p, true
				break
			}
		}
		if !found {
			return fmt.Errorf("no %d-slice compute instance profile in gpu instance profile %d", slices, in.GI)
		}
		for range max(in.CIs, 1) {
			if _, ret := gi.CreateComputeInstance(&cip); ret != nvml.SUCCESS {
				return fmt.Errorf("create compute instance: %v", ret)
			}
		}
	}
	// The handles in GPU instance, then compute instance order: the
	// mock keeps its instances in maps.
	handles := func() []nvml.Device {
		dev.RLock()
		defer dev.RUnlock()
		var ids [][2]int
		for gi := range dev.GpuInstances {
			gi.RLock()
			for ci := range gi.ComputeInstances {
				ids = append(ids, [2]int{int(gi.Info.Id), int(ci.Info.Id)})
			}
			gi.RUnlock()
		}
		sort.Slice(ids, func(a, b int) bool { return ids[a][0] < ids[b][0] || ids[a][0] == ids[b][0] && ids[a][1] < ids[b][1] })
		out := make([]nvml.Device, 0, len(ids))
		for _, id := range ids {
			g, c := id[0], id[1]
			out = append(out, &mock.Device{
				GetGpuInstanceIdFunc:     func() (int, nvml.Return) { return g, nvml.SUCCESS },
				GetComputeInstanceIdFunc: func() (int, nvml.Return) { return c, nvml.SUCCESS },
				GetUUIDFunc:              func() (string, nvml.Return) { return MIGUUID(gpu, g, c), nvml.SUCCESS },
			})
		}
		return out
	}
	dev.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) { return 7, nvml.SUCCESS }
	dev.GetMigDeviceHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		hs := handles()
		if i < 0 || i >= len(hs) {
			return nil, nvml.ERROR_NOT_FOUND
		}
		return hs[i], nvml.SUCCESS
	}
	return nil
}
