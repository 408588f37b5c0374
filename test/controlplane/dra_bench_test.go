package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// waitSlice watches the node's slices until match holds for one of them
// and returns when it did, at most 60s after since.
func waitSlice(b *testing.B, w watch.Interface, match func(*resourceapi.ResourceSlice) bool) time.Time {
	b.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatal("slice watch closed")
			}
			if s, ok := ev.Object.(*resourceapi.ResourceSlice); ok && (ev.Type == watch.Added || ev.Type == watch.Modified) && match(s) {
				return time.Now()
			}
		case <-timeout:
			b.Fatal("slice not visible within 60s")
		}
	}
}

func watchNode(b *testing.B, c kubernetes.Interface, node string) watch.Interface {
	b.Helper()
	w, err := c.ResourceV1().ResourceSlices().Watch(context.Background(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		b.Fatal(err)
	}
	return w
}

// BenchmarkDRASlicePublication measures, against a real kube-apiserver,
// the time from starting the DRA driver on the DGX fixture (discovery, the
// kubelet plugin helper, its ResourceSlice controller) to its 16-device
// slice being visible through a watch, against the peer: creating the
// same slice with one client call and seeing it through the same watch.
func BenchmarkDRASlicePublication(b *testing.B) {
	cp := startControlPlane(b)
	quiet := slog.New(slog.DiscardHandler)
	var ours, peer time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		node := fmt.Sprintf("pub-%d", i)
		addNode(b, cp.admin, node)
		w := watchNode(b, cp.admin, node)
		b.StartTimer()
		start := time.Now()
		n := startDriver(b, node, "dgx-h100", cp.admin, quiet)
		seen := waitSlice(b, w, func(s *resourceapi.ResourceSlice) bool { return len(s.Spec.Devices) == 16 })
		ours += seen.Sub(start)
		b.StopTimer()
		w.Stop()
		pool, ok := n.driver.Pool()
		if !ok {
			b.Fatal("driver has no pool after publishing")
		}
		peerNode := fmt.Sprintf("pub-peer-%d", i)
		addNode(b, cp.admin, peerNode)
		w = watchNode(b, cp.admin, peerNode)
		slice := &resourceapi.ResourceSlice{
			ObjectMeta: metav1.ObjectMeta{Name: peerNode + "-slice"},
			Spec: resourceapi.ResourceSliceSpec{
				Driver: "peer.example.com", NodeName: &peerNode,
				Pool:    resourceapi.ResourcePool{Name: peerNode, ResourceSliceCount: 1},
				Devices: pool.Slices[0].Devices,
			},
		}
		b.StartTimer()
		start = time.Now()
		if _, err := cp.admin.ResourceV1().ResourceSlices().Create(context.Background(), slice, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		seen = waitSlice(b, w, func(s *resourceapi.ResourceSlice) bool { return len(s.Spec.Devices) == 16 })
		peer += seen.Sub(start)
		b.StopTimer()
		w.Stop()
		n.cancel()
		b.StartTimer()
	}
	b.StopTimer()
	o, p := float64(ours.Nanoseconds())/float64(b.N), float64(peer.Nanoseconds())/float64(b.N)
	b.ReportMetric(o/1e6, "slipway-ms/op")
	b.ReportMetric(p/1e6, "bare-create-ms/op")
	b.ReportMetric(o/p, "ratio")
	b.Logf("\n%-44s %10s\n%-44s %10.1f\n%-44s %10.1f\n%-44s %10.1f",
		"DGX slice visible in the API", "ms/op", "slipway: driver start to slice seen", o/1e6,
		"peer: one Create of the same slice to seen", p/1e6, "ratio (slipway/peer)", o/p)
}

// BenchmarkDRATaintLatency measures the time from a device health change
// reaching the driver (the agent's Apply after a monitor event; the
// monitor's poll interval, 1s by default, comes before it) to the taint being
// visible through a watch on a real kube-apiserver, against the peer: one
// client Update of the same slice with the same taint.
func BenchmarkDRATaintLatency(b *testing.B) {
	cp := startControlPlane(b)
	ctx := context.Background()
	addNode(b, cp.admin, "taint-1")
	n := startDriver(b, "taint-1", "dgx-h100", cp.admin, slog.New(slog.DiscardHandler))
	w := watchNode(b, cp.admin, "taint-1")
	defer w.Stop()
	waitSlice(b, w, func(s *resourceapi.ResourceSlice) bool { return len(s.Spec.Devices) == 16 })
	const gpu = "gpu-0000-1b-00-0"
	const uuid = "GPU-0000001b-1111-2222-3333-444400000000"
	tainted := func(want bool) func(*resourceapi.ResourceSlice) bool {
		return func(s *resourceapi.ResourceSlice) bool {
			for _, d := range s.Spec.Devices {
				if d.Name == gpu {
					return (len(d.Taints) > 0) == want
				}
			}
			return false
		}
	}
	// What the agent hands the driver when the monitor reports the GPU.
	st := n.agent.State()
	sick := st
	sick.Devices = slices.Clone(st.Devices)
	for i := range sick.Devices {
		if sick.Devices[i].ID == uuid {
			sick.Devices[i].Healthy, sick.Devices[i].HealthReason = false, "xid 79"
		}
	}
	var ours, peer time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := n.driver.Apply(sick); err != nil {
			b.Fatal(err)
		}
		ours += waitSlice(b, w, tainted(true)).Sub(start)
		b.StopTimer()
		if err := n.driver.Apply(st); err != nil {
			b.Fatal(err)
		}
		waitSlice(b, w, tainted(false))
		time.Sleep(200 * time.Millisecond) // let the controller settle before the peer writes
		b.StartTimer()
	}
	b.StopTimer()
	// The peer writes another node's slice so the driver's controller
	// does not fight it.
	addNode(b, cp.admin, "taint-peer")
	pool, _ := n.driver.Pool()
	peerNode := "taint-peer"
	slice, err := cp.admin.ResourceV1().ResourceSlices().Create(ctx, &resourceapi.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "taint-peer"},
		Spec: resourceapi.ResourceSliceSpec{
			Driver: "peer.example.com", NodeName: &peerNode,
			Pool:    resourceapi.ResourcePool{Name: peerNode, ResourceSliceCount: 1},
			Devices: pool.Slices[0].Devices,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	pw := watchNode(b, cp.admin, peerNode)
	defer pw.Stop()
	for range b.N {
		for i := range slice.Spec.Devices {
			if slice.Spec.Devices[i].Name == gpu {
				slice.Spec.Devices[i].Taints = []resourceapi.DeviceTaint{{Key: "slipway.dev/unhealthy", Value: "xid-79", Effect: resourceapi.DeviceTaintEffectNoSchedule}}
			}
		}
		b.StartTimer()
		start := time.Now()
		if slice, err = cp.admin.ResourceV1().ResourceSlices().Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		peer += waitSlice(b, pw, tainted(true)).Sub(start)
		b.StopTimer()
		for i := range slice.Spec.Devices {
			slice.Spec.Devices[i].Taints = nil
		}
		if slice, err = cp.admin.ResourceV1().ResourceSlices().Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		waitSlice(b, pw, tainted(false))
	}
	o, p := float64(ours.Nanoseconds())/float64(b.N), float64(peer.Nanoseconds())/float64(b.N)
	b.ReportMetric(o/1e6, "slipway-ms/op")
	b.ReportMetric(p/1e6, "bare-update-ms/op")
	b.ReportMetric(o/p, "ratio")
	b.Logf("\n%-44s %10s\n%-44s %10.1f\n%-44s %10.1f\n%-44s %10.1f",
		"health change to taint seen in the API", "ms/op", "slipway: SetHealth to taint seen", o/1e6,
		"peer: one Update with the taint to seen", p/1e6, "ratio (slipway/peer)", o/p)
}
