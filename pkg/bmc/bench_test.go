package bmc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/bmc/redfishsim"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

// BenchmarkRackPXE measures the provisioner's BMC sequence "power off, set
// one-time PXE, power on, confirm" on 200 simulated Redfish BMCs over HTTPS,
// each adding 250 ms to every request, against the same sequence on 1 node
// in the same run. It reports both wall times and their ratio; the goal is
// a ratio under 3 at the default parallelism. Each node's sequence is about
// 20 requests in a row, so the ratio is close to the number of waves,
// ceil(200/parallel): 4 at the default 64, 2 at 100, which is why both are
// measured.
func BenchmarkRackPXE(b *testing.B) {
	const racks = 200
	sim := newSim(b)
	var nodes []inventory.Node
	for i := range racks {
		_, n := startBMC(b, sim, fmt.Sprintf("gpu-%03d", i+1), redfishsim.BMCConfig{
			TLS: true, PoweredOn: true, Faults: redfishsim.Faults{Latency: 250 * time.Millisecond},
		})
		nodes = append(nodes, n)
	}
	// Confirmation polls start at 1 s as in production; the simulator
	// changes state at once, so the first poll already matches.
	steps := []bmc.Step{bmc.PowerStep(bmc.ActionOff), bmc.BootStep(bmc.BootPXE, bmc.BootOptions{}), bmc.PowerStep(bmc.ActionOn)}
	for _, par := range []int{bmc.DefaultParallel, 100} {
		b.Run(fmt.Sprintf("parallel=%d", par), func(b *testing.B) {
			cfg := bmc.RunConfig{Parallel: par}
			run := func(ns []inventory.Node) time.Duration {
				start := time.Now()
				for _, r := range bmc.Run(context.Background(), ns, cfg, steps...) {
					if r.Err != nil {
						b.Fatalf("Run: %v", r.Err)
					}
				}
				return time.Since(start)
			}
			var one, all time.Duration
			for b.Loop() {
				one += run(nodes[:1])
				all += run(nodes)
			}
			one /= time.Duration(b.N)
			all /= time.Duration(b.N)
			ratio := all.Seconds() / one.Seconds()
			b.ReportMetric(one.Seconds(), "s/1-node")
			b.ReportMetric(all.Seconds(), "s/200-nodes")
			b.ReportMetric(ratio, "ratio")
			b.Logf("parallel %d: 1 node %.2fs, %d nodes %.2fs, ratio %.2f (goal < 3)", par, one.Seconds(), racks, all.Seconds(), ratio)
		})
	}
}
