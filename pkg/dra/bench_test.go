package dra

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"

	"github.com/slipway-dev/slipway/pkg/dra/drakubelet"
)

// noopPlugin is the peer of the prepare benchmark: a DRA plugin that does
// no work at all behind the same helper, gRPC and API client, so the ratio
// is what Slipway's prepare (CDI spec, synced checkpoint) costs over
// the framework's floor.
type noopPlugin struct{}

func (noopPlugin) PrepareResourceClaims(_ context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	out := map[types.UID]kubeletplugin.PrepareResult{}
	for _, c := range claims {
		var devs []kubeletplugin.Device
		for _, r := range c.Status.Allocation.Devices.Results {
			devs = append(devs, kubeletplugin.Device{Requests: []string{r.Request}, PoolName: r.Pool, DeviceName: r.Device})
		}
		out[c.UID] = kubeletplugin.PrepareResult{Devices: devs}
	}
	return out, nil
}

func (noopPlugin) UnprepareResourceClaims(_ context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	out := map[types.UID]error{}
	for _, c := range claims {
		out[c.UID] = nil
	}
	return out, nil
}

func (noopPlugin) HandleError(context.Context, error, string) {}

func (noopPlugin) WatchHealthStatus(context.Context, chan<- kubeletplugin.DeviceHealthReport) error {
	return kubeletplugin.ErrHealthNotSupported
}

// BenchmarkNodePrepareResources measures NodePrepareResources of a
// two-GPU claim over the real gRPC API (the kubelet's view: request to
// response), then its unprepare, 200 times per iteration, against the no-op
// plugin behind the same helper, and reports both p99s and their ratio.
// The disk is the test machine's temp directory (each prepare writes the
// spec by rename, unsynced, and syncs the checkpoint and its directory).
func BenchmarkNodePrepareResources(b *testing.B) {
	const samples = 200
	e := newEnv(b, "dgx-h100")
	cfg := e.config()
	quiet := slog.New(slog.DiscardHandler) // not a line per claim
	cfg.driver.Log, cfg.agent.Log = quiet, quiet
	r := e.start(cfg)
	k := e.register(r)
	e.waitFor(r, "slices", func() bool { return len(e.published()) == 16 })
	claims := make([]drakubelet.Claim, samples)
	for i := range claims {
		claims[i] = e.claim(fmt.Sprintf("bench-%d", i), gpu0, gpu1)
	}

	peerDir := b.TempDir()
	peerReg := filepath.Join(peerDir, "registry")
	for _, d := range []string{peerReg, filepath.Join(peerDir, "plugin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	peerHelper, err := kubeletplugin.Start(ctx, noopPlugin{},
		kubeletplugin.DriverName("noop.example.com"), kubeletplugin.NodeName(testNode), kubeletplugin.KubeClient(e.client),
		kubeletplugin.RegistrarDirectoryPath(peerReg), kubeletplugin.PluginDataDirectoryPath(filepath.Join(peerDir, "plugin")))
	if err != nil {
		b.Fatal(err)
	}
	defer peerHelper.Stop()
	peer, err := drakubelet.Register(ctx, filepath.Join(peerReg, "noop.example.com-reg.sock"), "noop.example.com")
	if err != nil {
		b.Fatal(err)
	}
	defer peer.Close()

	measure := func(k *drakubelet.Kubelet) []time.Duration {
		var lat []time.Duration
		for _, c := range claims {
			start := time.Now()
			resp, err := k.Prepare(ctx, c)
			lat = append(lat, time.Since(start))
			if err != nil || resp.Claims[c.UID].GetError() != "" {
				b.Fatalf("Prepare(%s) = %v, %v", c.Name, resp, err)
			}
			if uresp, err := k.Unprepare(ctx, c); err != nil || uresp.Claims[c.UID].GetError() != "" {
				b.Fatalf("Unprepare(%s) = %v, %v", c.Name, uresp, err)
			}
		}
		return lat
	}
	// The floor durability imposes: one synced write and rename of a
	// checkpoint-sized file in the same directory.
	cpData := make([]byte, 3000) // a checkpoint with one two-GPU claim is about 3 KB
	durable := func() []time.Duration {
		var lat []time.Duration
		for range samples {
			start := time.Now()
			if err := writeFileDurably(filepath.Join(e.plugins, "floor.json"), cpData, 0o600); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		return lat
	}
	var ours, base, floor []time.Duration
	b.ResetTimer()
	for range b.N {
		ours = append(ours, measure(k)...)
		base = append(base, measure(peer)...)
		floor = append(floor, durable()...)
	}
	b.StopTimer()
	op, pp, fp := p99(ours), p99(base), p99(floor)
	b.ReportMetric(float64(op.Microseconds()), "slipway-p99-us")
	b.ReportMetric(float64(pp.Microseconds()), "noop-plugin-p99-us")
	b.ReportMetric(float64(fp.Microseconds()), "synced-write-p99-us")
	b.ReportMetric(float64(op)/float64(pp), "ratio-noop")
	b.ReportMetric(float64(op)/float64(pp+fp), "ratio-noop+write")
	b.Logf("\n%-36s %12s %12s\n%-36s %12s %12s\n%-36s %12s %12s\n%-36s %12s %12s\n%-36s %12.1f\n%-36s %12.1f",
		"NodePrepareResources (2 GPUs)", "p50", "p99",
		"slipway (CDI spec + checkpoint)", p50(ours), op,
		"no-op plugin, same helper", p50(base), pp,
		"one synced file write (floor)", p50(floor), fp,
		"ratio p99 slipway / no-op", float64(op)/float64(pp),
		"ratio p99 slipway / (no-op + write)", float64(op)/float64(pp+fp))
}

func p99(d []time.Duration) time.Duration { return quantile(d, 0.99) }
func p50(d []time.Duration) time.Duration { return quantile(d, 0.50) }

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}
