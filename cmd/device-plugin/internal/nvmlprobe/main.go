//go:build cgo && linux

// Command nvmlprobe is the device plugin's RSS benchmark peer: a Go process
// that does nothing but (with -nvml) load libnvidia-ml and initialise NVML,
// as the plugin does, so that the benchmark can tell NVML's share of the
// plugin's memory from the plugin's own. It prints "ready" and waits for
// its standard input to close.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

func main() {
	withNVML := flag.Bool("nvml", true, "load libnvidia-ml and initialise NVML")
	flag.Parse()
	if *withNVML {
		lib := nvml.New()
		if ret := lib.Init(); ret != nvml.SUCCESS {
			fmt.Fprintf(os.Stderr, "nvmlprobe: nvml init: %v\n", ret)
			os.Exit(1)
		}
		// As the plugin does at start: count the GPUs and read one.
		if n, ret := lib.DeviceGetCount(); ret == nvml.SUCCESS && n > 0 {
			if d, ret := lib.DeviceGetHandleByIndex(0); ret == nvml.SUCCESS {
				_, _ = d.GetUUID()
			}
		}
		defer lib.Shutdown()
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
}
