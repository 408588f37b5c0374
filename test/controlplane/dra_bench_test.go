package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
// the time from starting `device-plugin --api dra` on the DGX fixture
// (process start, discovery, the kubelet plugin helper and its
// ResourceSlice controller) to its 16-device slice being visible through a
// watch, against the peer: creating the same slice with one client call
// and seeing it through the same watch.
func BenchmarkDRASlicePublication(b *testing.B) {
	cp := startControlPlane(b)
	devicePluginBinary(b)
	ctx := context.Background()
	var ours, peer time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		node := fmt.Sprintf("pub-%d", i)
		addNode(b, cp.admin, node)
		w := watchNode(b, cp.admin, node)
		b.StartTimer()
		start := time.Now()
		n := startDriver(b, node, "dgx-h100", cp.adminKC)
		seen := waitSlice(b, w, func(s *resourceapi.ResourceSlice) bool { return len(s.Spec.Devices) == 16 })
		ours += seen.Sub(start)
		b.StopTimer()
		w.Stop()
		ss, err := nodeSlices(ctx, cp.admin, node)
		if err != nil || len(ss) != 1 {
			b.Fatalf("slices of %s: %d, %v", node, len(ss), err)
		}
		peerNode := fmt.Sprintf("pub-peer-%d", i)
		addNode(b, cp.admin, peerNode)
		w = watchNode(b, cp.admin, peerNode)
		slice := &resourceapi.ResourceSlice{
			ObjectMeta: metav1.ObjectMeta{Name: peerNode + "-slice"},
			Spec: resourceapi.ResourceSliceSpec{
				Driver: "peer.example.com", NodeName: &peerNode,
				Pool:    resourceapi.ResourcePool{Name: peerNode, ResourceSliceCount: 1},
				Devices: ss[0].Spec.Devices,
			},
		}
		b.StartTimer()
		start = time.Now()
		if _, err := cp.admin.ResourceV1().ResourceSlices().Create(ctx, slice, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		seen = waitSlice(b, w, func(s *resourceapi.ResourceSlice) bool { return len(s.Spec.Devices) == 16 })
		peer += seen.Sub(start)
		b.StopTimer()
		w.Stop()
		n.stop()
		b.StartTimer()
	}
	b.StopTimer()
	o, p := float64(ours.Nanoseconds())/float64(b.N), float64(peer.Nanoseconds())/float64(b.N)
	b.ReportMetric(o/1e6, "slipway-ms/op")
	b.ReportMetric(p/1e6, "bare-create-ms/op")
	b.ReportMetric(o/p, "ratio")
	b.Logf("\n%-44s %10s\n%-44s %10.1f\n%-44s %10.1f\n%-44s %10.1f",
		"DGX slice visible in the API", "ms/op", "slipway: process start to slice seen", o/1e6,
		"peer: one Create of the same slice to seen", p/1e6, "ratio (slipway/peer)", o/p)
}

// BenchmarkDRATaintLatency measures the time from a GPU's driver being
// unbound in the host tree to the device's taint being visible through a
// watch on a real kube-apiserver: the health monitor's poll (100ms here,
// 1s by default), the agent, the driver and the slice controller. The peer
// is one client Update of the same slice with the same taint.
func BenchmarkDRATaintLatency(b *testing.B) {
	cp := startControlPlane(b)
	ctx := context.Background()
	cfgFile := writeFile(b, filepath.Join(b.TempDir(), "config.yaml"), []byte(
		"apiVersion: slipway.dev/v1alpha1\nkind: DevicePluginConfig\nhealth:\n  pollInterval: 100ms\n  recoveryPeriod: 10ms\n"))
	addNode(b, cp.admin, "taint-1")
	n := startDriver(b, "taint-1", "dgx-h100", cp.adminKC, "--config="+cfgFile)
	w := watchNode(b, cp.admin, "taint-1")
	defer w.Stop()
	waitSlice(b, w, func(s *resourceapi.ResourceSlice) bool { return len(s.Spec.Devices) == 16 })
	const gpu = "gpu-0000-1b-00-0"
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
	link := filepath.Join(n.root, "sys", "bus", "pci", "devices", "0000:1b:00.0", "driver")
	target, err := os.Readlink(link)
	if err != nil {
		b.Fatal(err)
	}
	var ours, peer time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := os.Remove(link); err != nil {
			b.Fatal(err)
		}
		ours += waitSlice(b, w, tainted(true)).Sub(start)
		b.StopTimer()
		if err := os.Symlink(target, link); err != nil {
			b.Fatal(err)
		}
		waitSlice(b, w, tainted(false))
		time.Sleep(200 * time.Millisecond) // let the controller settle
		b.StartTimer()
	}
	b.StopTimer()
	// The peer writes another node's slice so the driver's controller
	// does not fight it.
	peerNode := "taint-peer"
	addNode(b, cp.admin, peerNode)
	ss, err := nodeSlices(ctx, cp.admin, "taint-1")
	if err != nil || len(ss) != 1 {
		b.Fatalf("slices of taint-1: %d, %v", len(ss), err)
	}
	slice, err := cp.admin.ResourceV1().ResourceSlices().Create(ctx, &resourceapi.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "taint-peer"},
		Spec: resourceapi.ResourceSliceSpec{
			Driver: "peer.example.com", NodeName: &peerNode,
			Pool:    resourceapi.ResourcePool{Name: peerNode, ResourceSliceCount: 1},
			Devices: ss[0].Spec.Devices,
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
				slice.Spec.Devices[i].Taints = []resourceapi.DeviceTaint{{Key: "slipway.dev/unhealthy", Value: "driver-nvidia-unbound", Effect: resourceapi.DeviceTaintEffectNoSchedule}}
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
		"health change to taint seen in the API", "ms/op", "slipway: driver unbound to taint seen", o/1e6,
		"peer: one Update with the taint to seen", p/1e6, "ratio (slipway/peer)", o/p)
}
