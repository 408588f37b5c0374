package devices_test

import (
	"context"
	"fmt"
	"slices"

	"github.com/slipway-dev/slipway/pkg/devices"
)

// Discover a node, map its devices to resources and pair each GPU with the
// HCA under its PCIe switch, as the device plugin does at start.
func Example() {
	devs, err := devices.Discover(context.Background(), devices.Config{
		Root: "testdata/dgx-h100", // "/" on a host
		NVML: devices.NVMLOff,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	byResource := devices.DefaultConfig().Assign(devs)
	names := make([]string, 0, len(byResource))
	for name := range byResource {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Printf("%s: %d\n", name, len(byResource[name]))
	}

	topo := devices.NewTopology(devs)
	var hcas []string
	for _, d := range byResource[devices.ResourceHCA] {
		hcas = append(hcas, d.ID)
	}
	gpu := byResource[devices.ResourceGPU][4]
	best := topo.Closest(gpu.ID, hcas)[0]
	fmt.Printf("GPU %s NUMA %d: closest HCA %s (%s)\n", gpu.PCIAddress, gpu.NUMANode, best, topo.Locality(gpu.ID, best))
	// Output:
	// nvidia.com/gpu: 8
	// slipway.dev/hca: 8
	// GPU 0000:9d:00.0 NUMA 1: closest HCA mlx5_6 (PIX)
}
