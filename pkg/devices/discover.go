package devices

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
)

// Discover finds every GPU, MIG device (NVML only), InfiniBand/RoCE HCA and
// FPGA under cfg.Root, sorted by kind (gpu, mig, hca, fpga) then PCI
// address, with stable IDs.
// A device with an unreadable attribute is reported without it; a device
// that cannot be identified is skipped with a logged reason. It returns an
// error only when the PCI device list cannot be read at all, or NVML is
// required (NVMLOn) and fails.
//
// With NVML in auto mode, a library that is not installed means sysfs only;
// a library that loads but fails to initialise marks every GPU unhealthy
// ("nvml init: ...") since the driver stack is broken.
func Discover(ctx context.Context, cfg Config) ([]Device, error) {
	mode := cfg.NVML
	if mode == "" {
		mode = NVMLAuto
	}
	if _, err := ParseNVMLMode(string(mode)); err != nil {
		return nil, err
	}
	n := newNode(cfg.Root, cfg.Log)
	var lib NVML
	var nvmlErr error
	if mode != NVMLOff {
		lib = cfg.NVMLLib
		if lib == nil {
			lib = loadNVML()
		}
		if err := lib.Init(); err != nil {
			lib = nil
			switch {
			case mode == NVMLOn:
				return nil, fmt.Errorf("discover devices: nvml required: %w", err)
			case errors.Is(err, ErrNVMLNotFound):
				n.log.Info("nvml not found, reading gpus from sysfs", "err", err)
			default:
				nvmlErr = err
			}
		} else {
			defer lib.Shutdown()
		}
	}
	return n.discover(ctx, lib, nvmlErr, cfg.IncludeHostNICs)
}

func newNode(root string, log *slog.Logger) node {
	if root == "" {
		root = "/"
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return node{root: root, log: log}
}

// discover runs one discovery with an initialised lib (nil: sysfs only);
// nvmlErr, when set, is why NVML is unusable and marks every GPU unhealthy.
func (n node) discover(ctx context.Context, lib NVML, nvmlErr error, includeHost bool) ([]Device, error) {
	funcs, err := n.scanPCI()
	if err != nil {
		return nil, fmt.Errorf("discover devices: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var gpus, fpgas []Device
	var xilinx []*pciFunc
	for _, f := range funcs {
		switch {
		case isNVIDIAGPU(f):
			gpus = append(gpus, n.gpuFromSysfs(f))
		case isXilinx(f):
			xilinx = append(xilinx, f)
		case isIntelFPGA(f.vendor, f.device):
			fpgas = append(fpgas, n.intelFPGA(f))
		}
	}
	slices.SortFunc(xilinx, func(a, b *pciFunc) int { return cmp.Compare(a.addr, b.addr) })
	fpgas = append(fpgas, n.discoverXilinx(xilinx)...)
	var migs []Device
	if lib != nil {
		nv, err := lib.GPUs()
		if err != nil {
			nvmlErr = fmt.Errorf("list gpus: %w", err)
		} else {
			gpus, migs = n.mergeNVML(gpus, nv)
		}
	}
	if nvmlErr != nil {
		for i := range gpus {
			gpus[i].Healthy = false
			gpus[i].HealthReason = joinReason(gpus[i].HealthReason, nvmlProblem(nvmlErr.Error()))
		}
	}
	hcas := n.discoverHCAs(funcs, includeHost)
	devs := slices.Concat(gpus, migs, hcas, fpgas)
	slices.SortStableFunc(devs, compareDevices)
	return devs, nil
}

// kindOrder is the order of kinds in Discover's result.
var kindOrder = map[Kind]int{KindGPU: 0, KindMIG: 1, KindHCA: 2, KindFPGA: 3}

func compareDevices(a, b Device) int {
	if c := cmp.Compare(kindOrder[a.Kind], kindOrder[b.Kind]); c != 0 {
		return c
	}
	if c := cmp.Compare(a.PCIAddress, b.PCIAddress); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}
