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

// benchProfiles is the mixed fleet of BenchmarkRackPXE: every vendor
// behaviour that a network boot meets, in equal parts.
var benchProfiles = []string{"generic", "ilo5", "idrac8", "megarac", "minimal"}

// BenchmarkRackPXE measures the provisioner's BMC sequence "power off, set
// one-time PXE and read it back, power on, confirm" on a mixed fleet of 200
// simulated Redfish BMCs over HTTPS: the vendor profiles in equal parts
// (iLO 5's boot override lands 1.5 s late, MegaRAC's goes through its
// settings object, iDRAC 8 refuses the mode and holds Legacy, so its nodes
// ask for legacy), each BMC adding 50 to 250 ms to every request. Polls use
// the production backoff (1 s, 2 s, ...). The peer is the same sequence on
// one node of each profile alone, in the same run; the ratio is the fleet's
// wall time over the slowest single node's, at the default --parallel and
// at 200 (all at once).
func BenchmarkRackPXE(b *testing.B) {
	const racks = 200
	sim := newSim(b)
	type node struct {
		n      inventory.Node
		legacy bool
	}
	var fleet []node
	for i := range racks {
		name := benchProfiles[i%len(benchProfiles)]
		p, _ := redfishsim.LookupProfile(name)
		cfg := p.Config
		cfg.TLS, cfg.PoweredOn = true, true
		cfg.Faults = redfishsim.Faults{Latency: time.Duration(50+50*(i%5)) * time.Millisecond}
		_, n := startBMC(b, sim, fmt.Sprintf("gpu-%03d", i+1), cfg)
		fleet = append(fleet, node{n: n, legacy: cfg.FirmwareMode == "Legacy"})
	}
	// run returns the wall time, how many nodes failed and the first
	// failure.
	var firstErr error
	run := func(nodes []node, par int) (time.Duration, int) {
		firstErr = nil
		start := time.Now()
		res := make(chan bmc.Result, len(nodes))
		// One Run per boot mode, side by side, sharing the parallelism as
		// the provisioner's node groups would.
		var uefi, legacy []inventory.Node
		for _, n := range nodes {
			if n.legacy {
				legacy = append(legacy, n.n)
			} else {
				uefi = append(uefi, n.n)
			}
		}
		groups := 0
		for _, g := range []struct {
			nodes  []inventory.Node
			legacy bool
		}{{uefi, false}, {legacy, true}} {
			if len(g.nodes) == 0 {
				continue
			}
			groups++
			p := max(1, par*len(g.nodes)/len(nodes))
			go func() {
				for _, r := range bmc.Run(context.Background(), g.nodes, bmc.RunConfig{Parallel: p},
					bmc.PowerStep(bmc.ActionOff), bmc.BootStep(bmc.BootPXE, bmc.BootOptions{Legacy: g.legacy}), bmc.PowerStep(bmc.ActionOn)) {
					res <- r
				}
			}()
		}
		failed := 0
		for range nodes {
			if r := <-res; r.Err != nil {
				failed++
				if failed == 1 {
					firstErr = r.Err
				}
			}
		}
		_ = groups
		return time.Since(start), failed
	}
	// The peer: one node of each profile alone.
	var slowest time.Duration
	var slowestName string
	for i := range benchProfiles {
		d, failed := run(fleet[i:i+1], 1)
		if failed > 0 {
			b.Fatalf("the %s node alone failed", benchProfiles[i])
		}
		if d > slowest {
			slowest, slowestName = d, benchProfiles[i]
		}
	}
	for _, par := range []int{bmc.DefaultParallel, 128, racks} {
		b.Run(fmt.Sprintf("parallel=%d", par), func(b *testing.B) {
			var all time.Duration
			failed := 0
			for b.Loop() {
				d, f := run(fleet, par)
				all += d
				failed += f
			}
			all /= time.Duration(b.N)
			ratio := all.Seconds() / slowest.Seconds()
			b.ReportMetric(slowest.Seconds(), "s/slowest-node")
			b.ReportMetric(all.Seconds(), "s/200-nodes")
			b.ReportMetric(ratio, "ratio")
			b.ReportMetric(float64(failed)/float64(b.N), "failed-nodes")
			b.Logf("parallel %d: slowest single node (%s) %.2fs, %d mixed nodes %.2fs, ratio %.2f, %d node(s) failed", par, slowestName, slowest.Seconds(), racks, all.Seconds(), ratio, failed/b.N)
			if firstErr != nil {
				b.Logf("parallel %d: first failure: %v", par, firstErr)
			}
		})
	}
}
