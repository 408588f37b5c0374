package allocate

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/devices"
)

// tree builds devices on numa nodes × roots × switches × per-switch slots,
// named g<n>, in PCI order.
func tree(numa, roots, switches, per int) []devices.Device {
	var out []devices.Device
	bus := 0
	for n := range numa {
		for r := range roots {
			root := fmt.Sprintf("pci0000:%02x", n*roots+r)
			rp := fmt.Sprintf("0000:%02x:01.0", n*roots+r)
			for range switches {
				usp := fmt.Sprintf("0000:%02x:00.0", 0x10+bus)
				for range per {
					dsp := fmt.Sprintf("0000:%02x:%02x.0", 0x11+bus, len(out))
					out = append(out, devices.Device{
						ID:         fmt.Sprintf("g%d", len(out)),
						Kind:       devices.KindGPU,
						PCIAddress: fmt.Sprintf("0000:%02x:00.0", 0x40+len(out)),
						NUMANode:   n,
						PCIeRoot:   root,
						Bridges:    []string{rp, usp, dsp},
					})
				}
				bus += 2
			}
		}
	}
	return out
}

func ids(devs []devices.Device) []string {
	out := make([]string, len(devs))
	for i, d := range devs {
		out[i] = d.ID
	}
	return out
}

func TestDistance(t *testing.T) {
	t.Parallel()
	devs := tree(2, 2, 2, 2) // g0,g1 share a switch; g0..g3 a root port; g0..g7 a NUMA node
	tests := []struct {
		a, b int
		want int
	}{
		{0, 0, 0},
		{0, 1, SameSwitch},
		{0, 2, MultiSwitch}, // one root port, two switches below it
		{0, 4, SameNUMA},    // different root complex, same NUMA node
		{0, 8, Across},
	}
	for _, tc := range tests {
		if got := Distance(devs[tc.a], devs[tc.b]); got != tc.want {
			t.Errorf("Distance(%s, %s) = %d, want %d", devs[tc.a].ID, devs[tc.b].ID, got, tc.want)
		}
	}
	// Two root ports of one root complex.
	a := devices.Device{ID: "a", PCIeRoot: "pci0000:00", Bridges: []string{"0000:00:01.0"}, NUMANode: 0}
	b := devices.Device{ID: "b", PCIeRoot: "pci0000:00", Bridges: []string{"0000:00:02.0"}, NUMANode: 0}
	if got := Distance(a, b); got != SameRoot {
		t.Errorf("Distance(two root ports of one root) = %d, want %d", got, SameRoot)
	}
	// Unknown NUMA on both sides is not "the same NUMA node".
	a.PCIeRoot, b.PCIeRoot, a.NUMANode, b.NUMANode = "pci0000:00", "pci0000:80", devices.NoNUMA, devices.NoNUMA
	if got := Distance(a, b); got != Across {
		t.Errorf("Distance(no NUMA, different roots) = %d, want %d", got, Across)
	}
}

func TestPreferred(t *testing.T) {
	t.Parallel()
	devs := tree(2, 2, 2, 2) // 16 devices
	topo := NewTopology(devs)
	all := ids(devs)
	tests := []struct {
		name string
		req  Request
		want []string
	}{
		{"pair under one switch", Request{Available: all, Size: 2}, []string{"g0", "g1"}},
		{"four under one root", Request{Available: all, Size: 4}, []string{"g0", "g1", "g2", "g3"}},
		{"eight on one NUMA node", Request{Available: all, Size: 8}, []string{"g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7"}},
		{"must include pulls in its switch mate", Request{Available: all, MustInclude: []string{"g13"}, Size: 2}, []string{"g12", "g13"}},
		{"switch mate taken: same root next", Request{Available: slices.Delete(slices.Clone(all), 1, 2), Size: 2}, []string{"g2", "g3"}},
		{"fragmented: best root", Request{Available: []string{"g0", "g2", "g5", "g6", "g7", "g9"}, Size: 3}, []string{"g5", "g6", "g7"}},
		{"all of them", Request{Available: []string{"g3", "g1"}, Size: 2}, []string{"g1", "g3"}},
		{"must is everything", Request{Available: all, MustInclude: []string{"g9", "g2"}, Size: 2}, []string{"g2", "g9"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := topo.Preferred(tc.req)
			if err != nil {
				t.Fatalf("Preferred(%+v): %v", tc.req, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Preferred(%+v) mismatch (-want +got):\n%s", tc.req, diff)
			}
		})
	}
}

func TestPreferredErrors(t *testing.T) {
	t.Parallel()
	topo := NewTopology(tree(1, 1, 2, 2))
	tests := []struct {
		name string
		req  Request
	}{
		{"unknown available", Request{Available: []string{"g0", "nope"}, Size: 1}},
		{"must not available", Request{Available: []string{"g0", "g1"}, MustInclude: []string{"g2"}, Size: 2}},
		{"too many", Request{Available: []string{"g0", "g1"}, Size: 3}},
		{"zero size", Request{Available: []string{"g0"}, Size: 0}},
		{"must exceeds size", Request{Available: []string{"g0", "g1"}, MustInclude: []string{"g0", "g1"}, Size: 1}},
	}
	for _, tc := range tests {
		if got, err := topo.Preferred(tc.req); err == nil {
			t.Errorf("%s: Preferred(%+v) = %v, want an error", tc.name, tc.req, got)
		}
	}
}

// naive is the baseline peer: every combination, distances computed from
// the devices on each request (what a plugin without precomputed scores
// does).
func naive(devs []devices.Device, req Request) []string {
	byID := make(map[string]devices.Device, len(devs))
	for _, d := range devs {
		byID[d.ID] = d
	}
	var must, cand []devices.Device
	for _, id := range req.Available {
		if slices.Contains(req.MustInclude, id) {
			must = append(must, byID[id])
		} else {
			cand = append(cand, byID[id])
		}
	}
	need := req.Size - len(must)
	var best []devices.Device
	bestCost := -1
	var rec func(from int, set []devices.Device)
	rec = func(from int, set []devices.Device) {
		if len(set) == len(must)+need {
			c := 0
			for a := range set {
				for b := a + 1; b < len(set); b++ {
					c += Distance(set[a], set[b])
				}
			}
			if bestCost < 0 || c < bestCost {
				best, bestCost = slices.Clone(set), c
			}
			return
		}
		for k := from; k < len(cand); k++ {
			rec(k+1, append(set, cand[k]))
		}
	}
	rec(0, slices.Clone(must))
	out := ids(best)
	sort.Strings(out)
	return out
}

// randomTree gives each device a random place among a few NUMA nodes,
// roots and switches, some with unknown NUMA.
func randomTree(r *rand.Rand, n int) []devices.Device {
	out := make([]devices.Device, n)
	for i := range out {
		numa := r.IntN(2)
		root := numa*4 + r.IntN(4)
		sw := r.IntN(3)
		br := []string{fmt.Sprintf("rp%d-%d", root, sw/2), fmt.Sprintf("usp%d-%d", root, sw)}
		if r.IntN(4) == 0 {
			br = br[:1]
		}
		if r.IntN(8) == 0 {
			numa = devices.NoNUMA
		}
		out[i] = devices.Device{ID: fmt.Sprintf("d%02d", i), NUMANode: numa, PCIeRoot: fmt.Sprintf("pci0000:%02x", root), Bridges: br}
	}
	return out
}

// TestPreferredIsOptimal checks the bounded search against the exhaustive
// peer on random trees: the chosen set must cost as little as the best one.
func TestPreferredIsOptimal(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 300 {
		n := 2 + r.IntN(11)
		devs := randomTree(r, n)
		topo := NewTopology(devs)
		avail := ids(devs)
		r.Shuffle(len(avail), func(i, j int) { avail[i], avail[j] = avail[j], avail[i] })
		avail = avail[:1+r.IntN(n)]
		size := 1 + r.IntN(len(avail))
		var must []string
		if r.IntN(2) == 0 {
			must = avail[:r.IntN(size+1)]
		}
		req := Request{Available: avail, MustInclude: must, Size: size}
		got, err := topo.Preferred(req)
		if err != nil {
			t.Fatalf("trial %d: Preferred(%+v): %v", trial, req, err)
		}
		want := naive(devs, req)
		gc, _ := topo.Cost(got)
		wc, _ := topo.Cost(want)
		if gc != wc || len(got) != size {
			t.Fatalf("trial %d: Preferred(%+v) = %v (cost %d), want cost %d as %v", trial, req, got, gc, wc, want)
		}
		for _, m := range must {
			if !slices.Contains(got, m) {
				t.Fatalf("trial %d: Preferred(%+v) = %v lacks must-include %s", trial, req, got, m)
			}
		}
	}
}

// BenchmarkPreferred measures p50/p99 of Preferred for 8 and 16 devices
// and, in the same run, the exhaustive peer, reporting the p99 ratio.
func BenchmarkPreferred(b *testing.B) {
	for _, tc := range []struct {
		devs []devices.Device
		size int
	}{
		{tree(2, 2, 1, 2), 4}, // 8 devices
		{tree(2, 2, 2, 2), 8}, // 16 devices
		{tree(2, 2, 2, 2), 5}, // 16 devices, an odd size that crosses switches
	} {
		b.Run(fmt.Sprintf("devices=%d/size=%d", len(tc.devs), tc.size), func(b *testing.B) {
			topo := NewTopology(tc.devs)
			req := Request{Available: ids(tc.devs), Size: tc.size}
			// Many samples per iteration, so that percentiles mean
			// something under make bench's -benchtime 1x.
			lat := make([]time.Duration, 0, 1024)
			for b.Loop() {
				for range 500 {
					t0 := time.Now()
					if _, err := topo.Preferred(req); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
			}
			b.StopTimer()
			peer := make([]time.Duration, 0, 20)
			for range 20 {
				t0 := time.Now()
				_ = naive(tc.devs, req)
				peer = append(peer, time.Since(t0))
			}
			p50, p99 := percentiles(lat)
			n50, n99 := percentiles(peer)
			b.ReportMetric(float64(p50.Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(p99.Nanoseconds())/1e3, "p99-µs")
			b.ReportMetric(float64(n99.Nanoseconds())/1e3, "naive-p99-µs")
			b.ReportMetric(float64(n99)/float64(max(p99, 1)), "naive/bounded-p99")
			b.Logf("%-28s p50 %9v p99 %9v | naive exhaustive p50 %9v p99 %9v | ratio p99 %.1fx",
				b.Name(), p50, p99, n50, n99, float64(n99)/float64(max(p99, 1)))
		})
	}
}

func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	if len(lat) == 0 {
		return 0, 0
	}
	slices.Sort(lat)
	return lat[len(lat)*50/100], lat[min(len(lat)-1, len(lat)*99/100)]
}

// TestPreferredBudget checks that an exhausted search budget still answers
// with a valid set (the greedy one or better), never an error.
func TestPreferredBudget(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	for trial := range 50 {
		devs := randomTree(r, 16)
		topo := NewTopology(devs)
		all := ids(devs)
		must := []string{all[r.IntN(16)]}
		for _, budget := range []int{1, 10, 100} {
			req := Request{Available: all, MustInclude: must, Size: 6, Budget: budget}
			got, err := topo.Preferred(req)
			if err != nil {
				t.Fatalf("trial %d: Preferred(budget %d): %v", trial, budget, err)
			}
			if len(got) != 6 || !slices.Contains(got, must[0]) {
				t.Fatalf("trial %d: Preferred(budget %d) = %v, want 6 devices including %s", trial, budget, got, must[0])
			}
			full, _ := topo.Preferred(Request{Available: all, MustInclude: must, Size: 6})
			gc, _ := topo.Cost(got)
			fc, _ := topo.Cost(full)
			if gc < fc {
				t.Fatalf("trial %d: budget %d found cost %d below the full search's %d", trial, budget, gc, fc)
			}
		}
	}
}
