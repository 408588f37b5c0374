package devices

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jaypipes/ghw"
	"github.com/jaypipes/pcidb"
)

// discoverTarget is the goal for one full discovery of the DGX
// fixture.
const discoverTarget = 20 * time.Millisecond

// BenchmarkDiscover times one full discovery of the dgx-h100 fixture (sysfs
// only; see BenchmarkDiscoverNVMLMock for the NVML path), then compares it,
// in the same run, with ghw.PCI scanning the same root: ghw reads every PCI
// function and names it, but finds no HCA ports, device nodes, FPGA IDs or
// bridges chain, so it is a floor for "read the PCI bus", not a peer that
// does the same work. Reported: ns/op and allocs/op of Discover, ghw's
// figures, the ratio, and the ratio to the 20 ms target.
func BenchmarkDiscover(b *testing.B) {
	root := fixture("dgx-h100")
	cfg := Config{Root: root, NVML: NVMLOff, Log: discardLog()}
	want := goldenCount(b, "dgx-h100")
	ctx := context.Background()
	db, err := pcidb.New(pcidb.WithPath(filepath.Join(root, "usr", "share", "hwdata", "pci.ids")))
	if err != nil {
		b.Fatalf("load pci.ids under %s: %v", root, err)
	}
	discover := func() {
		devs, err := Discover(ctx, cfg)
		if err != nil || len(devs) != want {
			b.Fatalf("Discover(dgx-h100) = %d devices, %v; want %d (golden)", len(devs), err, want)
		}
	}
	ghwPCI := func() {
		info, err := ghw.PCI(ghw.WithChroot(root), ghw.WithPCIDB(db), ghw.WithDisableWarnings())
		if err != nil || len(info.Devices) == 0 {
			b.Fatalf("ghw.PCI(dgx-h100): %v", err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		discover()
	}
	b.StopTimer()

	// The comparison runs a fixed, interleaved sample (after one warm-up
	// run of each) so that it means the same under -benchtime 1x (make
	// bench) as under a long run, and load on a shared machine hits both.
	const rounds = 30
	discover()
	ghwPCI()
	var ours, peer sample
	for range rounds {
		ours.add(measure(discover))
		peer.add(measure(ghwPCI))
	}
	ours.div(rounds)
	peer.div(rounds)
	ratio := float64(ours.ns) / float64(peer.ns)
	b.ReportMetric(float64(peer.ns), "ghw-ns/op")
	b.ReportMetric(float64(peer.allocs), "ghw-allocs/op")
	b.ReportMetric(ratio, "x-ghw")
	b.ReportMetric(float64(ours.ns)/float64(discoverTarget), "x-target")
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-28s %12s %12s\n", "dgx-h100 fixture, "+fmt.Sprint(rounds)+" runs", "time/op", "allocs/op")
	fmt.Fprintf(&sb, "%-28s %12s %12d\n", "devices.Discover (nvml off)", time.Duration(ours.ns), ours.allocs)
	fmt.Fprintf(&sb, "%-28s %12s %12d\n", "ghw.PCI (same root)", time.Duration(peer.ns), peer.allocs)
	fmt.Fprintf(&sb, "Discover/ghw.PCI = %.2fx; Discover/target %s = %.3f\n", ratio, discoverTarget, float64(ours.ns)/float64(discoverTarget))
	b.Log(sb.String())
}

type sample struct{ ns, allocs int64 }

func (s *sample) add(o sample) { s.ns += o.ns; s.allocs += o.allocs }

func (s *sample) div(n int64) { s.ns /= n; s.allocs /= n }

// measure runs f once and returns its time and allocations.
func measure(f func()) sample {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	f()
	el := time.Since(start)
	runtime.ReadMemStats(&after)
	return sample{ns: el.Nanoseconds(), allocs: int64(after.Mallocs - before.Mallocs)}
}
