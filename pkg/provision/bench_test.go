package provision_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/provision/provisionfake"
)

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// orchestrate provisions n fake nodes (instant BMCs, 4ms boots) and returns
// the process CPU it took.
func orchestrate(b *testing.B, n int) time.Duration {
	b.Helper()
	nodes := testNodes(1, n-1)
	var machines []*provisionfake.Machine
	for _, nd := range nodes {
		machines = append(machines, &provisionfake.Machine{Name: nd.Name, Boot: 4 * time.Millisecond})
	}
	rack := provisionfake.New(machines...)
	o, err := provision.New(provision.Config{Nodes: nodes, StateDir: b.TempDir(), BMCs: rack, Issuer: rack,
		Readiness: rack, ReadyPoll: 5 * time.Millisecond, Parallel: n})
	if err != nil {
		b.Fatal(err)
	}
	rack.Deliver = o.Observe
	cpu0 := processCPU()
	rep, err := o.Run(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if rep.Ready != n {
		b.Fatalf("%d of %d ready", rep.Ready, n)
	}
	return processCPU() - cpu0
}

// BenchmarkOrchestrator measures the state machine, journal (fsync'd group
// commits) and event path per node, without boot services or BMC protocol
// (fake BMCs answer at once, fake machines report their boot events), at
// 1000 nodes against its peer, the same at 100 nodes: the ratio of the
// per-node costs shows how the loop scales.
func BenchmarkOrchestrator(b *testing.B) {
	var small, large time.Duration
	for b.Loop() {
		small = orchestrate(b, 100) / 100
		large = orchestrate(b, 1000) / 1000
	}
	b.ReportMetric(float64(small.Microseconds()), "cpu-µs/node@100")
	b.ReportMetric(float64(large.Microseconds()), "cpu-µs/node@1000")
	b.ReportMetric(float64(large)/float64(small), "ratio-1000/100")
	b.Logf("orchestrator CPU per node (fake BMCs and machines included): %s at 100 nodes, %s at 1000 nodes, ratio %.2f (target: under 2ms per node)",
		small, large, float64(large)/float64(small))
}
