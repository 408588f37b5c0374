//go:build cgo && linux

package devices

import (
	"context"
	"testing"
)

// BenchmarkDiscoverNVMLMock times a full discovery of the dgx-h100 fixture
// with NVML mocked (go-nvml's DGX H100 mock server), the path a GPU node
// takes. Compare with BenchmarkDiscover's ns/op for the cost of the NVML
// merge.
func BenchmarkDiscoverNVMLMock(b *testing.B) {
	m := newMockNVML(b)
	cfg := Config{Root: fixture("dgx-h100"), NVML: NVMLOn, NVMLLib: FromNVML(m.srv), Log: discardLog()}
	want := goldenCount(b, "dgx-h100")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		devs, err := Discover(ctx, cfg)
		if err != nil || len(devs) != want {
			b.Fatalf("Discover(dgx-h100, mock nvml) = %d devices, %v; want %d (golden)", len(devs), err, want)
		}
	}
}
