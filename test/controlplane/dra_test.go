package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/pkg/addons"
	"github.com/slipway-dev/slipway/pkg/dra/drakubelet"
)

// TestDRA runs the Slipway DRA driver for three fake nodes (two DGX H100,
// one FPGA node) against a real kube-apiserver, kube-controller-manager
// (resourceclaim controller) and kube-scheduler v1.37.2: the shipped
// DeviceClasses and RBAC apply, the driver publishes with a pod-bound
// service account token and may not write another node's slices, every
// example claim template is allocated by the scheduler's DRA allocator and
// prepared by the driver, the GPU+HCA claim gets a pair under one PCIe
// root, a pod asking nvidia.com/gpu: 2 gets two GPUs through the class's
// extended resource mapping, and a tainted device is never allocated.
func TestDRA(t *testing.T) {
	cp := startDRAControlPlane(t)
	ctx := context.Background()
	a, err := addons.New(addons.Config{REST: cp.adminREST, KindWait: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Everything the kustomization applies, the privileged DaemonSet too
	// (the API server runs with --allow-privileged, as kubeadm sets it):
	// its pods never run here (no DaemonSet controller, no kubelet), but
	// the API server validates and admits what a cluster would get.
	files := []string{
		filepath.Join(draManifests, "deviceclasses.yaml"),
		filepath.Join(draManifests, "rbac.yaml"),
		filepath.Join(draManifests, "daemonset.yaml"),
	}
	if _, err := a.ApplyFiles(ctx, files); err != nil {
		t.Fatalf("apply DRA manifests: %v", err)
	}
	if diff := cmp.Diff(kustomizationResources(t), []string{"deviceclasses.yaml", "rbac.yaml", "daemonset.yaml"}); diff != "" {
		t.Errorf("kustomization.yaml resources differ from what this test applies (-kustomization +applied):\n%s", diff)
	}
	// No service account controller runs here: the pods' namespace
	// needs its default account made by hand.
	if _, err := cp.admin.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"dgx-1", "dgx-2", "fpga-1"} {
		addNode(t, cp.admin, n)
	}
	dgx1 := startDriver(t, "dgx-1", "dgx-h100", tokenKubeconfig(cp.controlPlane, driverToken(t, cp.controlPlane, "dgx-1", "slipway-dra-dgx-1")))
	dgx2 := startDriver(t, "dgx-2", "dgx-h100", tokenKubeconfig(cp.controlPlane, driverToken(t, cp.controlPlane, "dgx-2", "slipway-dra-dgx-2")))
	fpga := startDriver(t, "fpga-1", "fpga-node", tokenKubeconfig(cp.controlPlane, driverToken(t, cp.controlPlane, "fpga-1", "slipway-dra-fpga-1")))
	devs := dgx1.waitPublished(t, cp.admin, 16)
	dgx2.waitPublished(t, cp.admin, 16)
	fpga.waitPublished(t, cp.admin, 3)

	t.Run("slices", func(t *testing.T) {
		g := devs["gpu-0000-1b-00-0"]
		for name, want := range map[resourceapi.QualifiedName]string{
			"resource.kubernetes.io/pcieRoot": "pci0000:15", "resource.kubernetes.io/pciBusID": "0000:1b:00.0",
			"kind": "gpu", "uuid": "GPU-0000001b-1111-2222-3333-444400000000", "pcieSwitch": "0000:16:00.0",
		} {
			if v := g.Attributes[name].StringValue; v == nil || *v != want {
				t.Errorf("stored gpu-0000-1b-00-0 attribute %s = %v, want %q", name, v, want)
			}
		}
		if n := g.Attributes["resource.kubernetes.io/numaNode"].IntValue; n == nil || *n != 0 {
			t.Errorf("stored numaNode = %v, want 0", n)
		}
	})

	t.Run("rbac", func(t *testing.T) {
		// The driver's identity on dgx-1 may not publish for dgx-2.
		c := tokenClient(cp.controlPlane, driverToken(t, cp.controlPlane, "dgx-1", "slipway-dra-dgx-1-again"))
		foreign := &resourceapi.ResourceSlice{
			ObjectMeta: metav1.ObjectMeta{Name: "foreign"},
			Spec: resourceapi.ResourceSliceSpec{
				Driver: driverName, NodeName: ptrTo("dgx-2"),
				Pool:    resourceapi.ResourcePool{Name: "dgx-2", ResourceSliceCount: 1},
				Devices: []resourceapi.Device{{Name: "fake"}},
			},
		}
		_, err := c.ResourceV1().ResourceSlices().Create(ctx, foreign, metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "may not write a ResourceSlice of node dgx-2") {
			t.Errorf("creating a slice of another node = %v, want the admission policy's refusal", err)
		}
		if _, err := c.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); err == nil {
			t.Errorf("the driver's identity can list secrets")
		}
	})

	k1 := dgx1.kubelet(t)
	tmpls := claimTemplates(t)
	if err := createTemplates(ctx, cp.admin, tmpls); err != nil {
		t.Fatal(err)
	}

	t.Run("templates", func(t *testing.T) {
		for _, tc := range []struct {
			template, node string
			// setup runs before the pod is created; it makes sure that
			// the scheduler's first fit would break the template's
			// constraint, so the check below can tell it was honoured.
			setup func(t *testing.T)
			check func(t *testing.T, results []resourceapi.DeviceRequestAllocationResult, devs map[string]resourceapi.Device)
		}{
			{"one-gpu", "dgx-1", nil, func(t *testing.T, rs []resourceapi.DeviceRequestAllocationResult, devs map[string]resourceapi.Device) {
				wantKinds(t, rs, devs, "gpu")
			}},
			{"two-gpus-one-numa", "dgx-1", func(t *testing.T) {
				// Hold two more GPUs (first fit: both on NUMA node 0) so
				// that node 0 has one free GPU left: the first two free
				// GPUs then span both nodes.
				scheduleClaim(t, cp, gpuCountPod("numa-blocker", "dgx-1", 2), "dgx-1")
				g := firstFree(t, cp.admin, "dgx-1", "gpu", 2)
				if a, b := intAttr(g[0], "resource.kubernetes.io/numaNode"), intAttr(g[1], "resource.kubernetes.io/numaNode"); a == b {
					t.Fatalf("setup: the first free GPUs %s and %s are both on NUMA node %d; first fit would pass without the constraint", g[0].Name, g[1].Name, a)
				}
			}, func(t *testing.T, rs []resourceapi.DeviceRequestAllocationResult, devs map[string]resourceapi.Device) {
				wantKinds(t, rs, devs, "gpu", "gpu")
				if a, b := intAttr(devs[rs[0].Device], "resource.kubernetes.io/numaNode"), intAttr(devs[rs[1].Device], "resource.kubernetes.io/numaNode"); a != b {
					t.Errorf("two GPUs on NUMA nodes %d and %d, want one", a, b)
				}
			}},
			{"gpu-hca-pair", "dgx-1", func(t *testing.T) {
				g, h := firstFree(t, cp.admin, "dgx-1", "gpu", 1)[0], firstFree(t, cp.admin, "dgx-1", "hca", 1)[0]
				if a, b := strAttr(g, "resource.kubernetes.io/pcieRoot"), strAttr(h, "resource.kubernetes.io/pcieRoot"); a == b {
					t.Fatalf("setup: the first free GPU %s and HCA %s share root %s; first fit would pass without the constraint", g.Name, h.Name, a)
				}
			}, func(t *testing.T, rs []resourceapi.DeviceRequestAllocationResult, devs map[string]resourceapi.Device) {
				wantKinds(t, rs, devs, "gpu", "hca")
				a, b := strAttr(devs[rs[0].Device], "resource.kubernetes.io/pcieRoot"), strAttr(devs[rs[1].Device], "resource.kubernetes.io/pcieRoot")
				if a == "" || a != b {
					t.Errorf("GPU under %q and HCA under %q, want one PCIe root", a, b)
				}
				if sa, sb := strAttr(devs[rs[0].Device], "pcieSwitch"), strAttr(devs[rs[1].Device], "pcieSwitch"); sa != sb {
					t.Errorf("GPU under switch %q and HCA under %q, want one (the DGX pairs share a switch)", sa, sb)
				}
			}},
			{"fpga-u250-shell", "fpga-1", nil, func(t *testing.T, rs []resourceapi.DeviceRequestAllocationResult, devs map[string]resourceapi.Device) {
				wantKinds(t, rs, devs, "fpga")
				if s := strAttr(devs[rs[0].Device], "shell"); s != "xilinx_u250_gen3x16_xdma_shell_4_1" {
					t.Errorf("FPGA shell %q, want the template's", s)
				}
			}},
		} {
			t.Run(tc.template, func(t *testing.T) {
				if tc.setup != nil {
					tc.setup(t)
				}
				pod := templatePod(tc.template, tc.node)
				claim := scheduleClaim(t, cp, pod, tc.node)
				ss, err := nodeSlices(ctx, cp.admin, tc.node)
				if err != nil {
					t.Fatal(err)
				}
				rs := claim.Status.Allocation.Devices.Results
				for _, r := range rs {
					if r.Driver != driverName || r.Pool != tc.node {
						t.Errorf("result %+v: want driver %s, pool %s", r, driverName, tc.node)
					}
				}
				tc.check(t, rs, sliceDevices(ss))
				if tc.node != "dgx-1" {
					return
				}
				// The kubelet side prepares what the scheduler decided.
				c := drakubelet.Claim{Namespace: claim.Namespace, Name: claim.Name, UID: string(claim.UID)}
				resp, err := k1.Prepare(ctx, c)
				if err != nil || resp.Claims[c.UID].GetError() != "" {
					t.Fatalf("NodePrepareResources(%s) = %v, %v", claim.Name, resp, err)
				}
				var got []string
				for _, d := range resp.Claims[c.UID].Devices {
					got = append(got, d.DeviceName)
				}
				var want []string
				for _, r := range rs {
					want = append(want, r.Device)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("prepared devices (-allocated +prepared):\n%s", diff)
				}
			})
		}
	})

	t.Run("extended-resource", func(t *testing.T) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "legacy-gpu-job", Namespace: "default"},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"kubernetes.io/hostname": "dgx-2"},
				Containers: []corev1.Container{{Name: "c", Image: "busybox",
					Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("2")}}}},
			},
		}
		claim := scheduleClaim(t, cp, pod, "dgx-2")
		ss, err := nodeSlices(ctx, cp.admin, "dgx-2")
		if err != nil {
			t.Fatal(err)
		}
		wantKinds(t, claim.Status.Allocation.Devices.Results, sliceDevices(ss), "gpu", "gpu")
	})

	t.Run("tainted-device-not-allocated", func(t *testing.T) {
		// Every GPU of dgx-2 but one is free; make that one unhealthy.
		ss, err := nodeSlices(ctx, cp.admin, "dgx-2")
		if err != nil {
			t.Fatal(err)
		}
		used := allocatedOn(t, cp.admin, "dgx-2")
		var free []string
		for name, d := range sliceDevices(ss) {
			if strAttr(d, "kind") == "gpu" && !used[name] {
				free = append(free, name)
			}
		}
		slices.Sort(free)
		if len(free) != 6 {
			t.Fatalf("free GPUs on dgx-2: %v, want 6", free)
		}
		bad := free[0]
		// As the health monitor sees it: the GPU's driver unbound.
		pci := strAttr(sliceDevices(ss)[bad], "resource.kubernetes.io/pciBusID")
		if err := os.Remove(filepath.Join(dgx2.root, "sys", "bus", "pci", "devices", pci, "driver")); err != nil {
			t.Fatal(err)
		}
		dgx2.waitFor(t, "taint on "+bad, 30*time.Second, func() (bool, error) {
			ss, err := nodeSlices(ctx, cp.admin, "dgx-2")
			d := sliceDevices(ss)[bad]
			return err == nil && len(d.Taints) == 1 && d.Taints[0].Effect == resourceapi.DeviceTaintEffectNoSchedule, err
		})
		// Six GPUs asked for, five healthy free: unschedulable.
		six := gpuCountPod("six-gpus", "dgx-2", 6)
		if _, err := cp.admin.CoreV1().Pods("default").Create(ctx, six, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitUnschedulable(t, cp, six.Name)
		// Five: scheduled, and the tainted GPU is not among them.
		five := gpuCountPod("five-gpus", "dgx-2", 5)
		claim := scheduleClaim(t, cp, five, "dgx-2")
		for _, r := range claim.Status.Allocation.Devices.Results {
			if r.Device == bad {
				t.Errorf("tainted device %s allocated to %s", bad, claim.Name)
			}
		}
		if n := len(claim.Status.Allocation.Devices.Results); n != 5 {
			t.Errorf("allocated %d devices, want 5", n)
		}
	})
}

func createTemplates(ctx context.Context, c kubernetes.Interface, tmpls map[string]resourceapi.ResourceClaimTemplate) error {
	for _, tmpl := range tmpls {
		tmpl.Namespace = "default"
		if _, err := c.ResourceV1().ResourceClaimTemplates("default").Create(ctx, &tmpl, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create claim template %s: %w", tmpl.Name, err)
		}
	}
	return nil
}

// templatePod is a pod on node whose one claim comes from template.
func templatePod(template, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-" + template, Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeSelector:   map[string]string{"kubernetes.io/hostname": node},
			ResourceClaims: []corev1.PodResourceClaim{{Name: "devs", ResourceClaimTemplateName: &template}},
			Containers: []corev1.Container{{Name: "c", Image: "busybox",
				Resources: corev1.ResourceRequirements{Claims: []corev1.ResourceClaim{{Name: "devs"}}}}},
		},
	}
}

// gpuCountPod asks for count GPUs of one node through the one-gpu class.
func gpuCountPod(name, node string, count int) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"kubernetes.io/hostname": node},
			Containers: []corev1.Container{{Name: "c", Image: "busybox",
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{"nvidia.com/gpu": *resource.NewQuantity(int64(count), resource.DecimalSI)}}}},
		},
	}
}

// scheduleClaim creates pod, waits until the scheduler has bound it to
// node, and returns its (one) allocated claim.
func scheduleClaim(t *testing.T, cp *draControlPlane, pod *corev1.Pod, node string) *resourceapi.ResourceClaim {
	t.Helper()
	ctx := context.Background()
	c := cp.admin
	if _, err := c.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
	deadline := time.Now().Add(90 * time.Second)
	var p *corev1.Pod
	var err error
	for time.Now().Before(deadline) {
		p, err = c.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil && p.Spec.NodeName != "" {
			break
		}
		cp.alive(t)
		time.Sleep(100 * time.Millisecond)
	}
	if p == nil || p.Spec.NodeName == "" {
		t.Fatalf("pod %s not scheduled in 90s: %v; conditions %v", pod.Name, err, podConditions(p))
	}
	if p.Spec.NodeName != node {
		t.Fatalf("pod %s scheduled to %s, want %s", pod.Name, p.Spec.NodeName, node)
	}
	var name string
	switch {
	case len(p.Status.ResourceClaimStatuses) == 1 && p.Status.ResourceClaimStatuses[0].ResourceClaimName != nil:
		name = *p.Status.ResourceClaimStatuses[0].ResourceClaimName
	case p.Status.ExtendedResourceClaimStatus != nil:
		name = p.Status.ExtendedResourceClaimStatus.ResourceClaimName
	default:
		t.Fatalf("pod %s has no claim in its status: %+v", pod.Name, p.Status)
	}
	claim, err := c.ResourceV1().ResourceClaims(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("claim %s of pod %s: %v", name, pod.Name, err)
	}
	if claim.Status.Allocation == nil {
		t.Fatalf("claim %s of bound pod %s is not allocated", name, pod.Name)
	}
	return claim
}

func podConditions(p *corev1.Pod) []string {
	if p == nil {
		return nil
	}
	var out []string
	for _, c := range p.Status.Conditions {
		out = append(out, fmt.Sprintf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message))
	}
	return out
}

// waitUnschedulable waits for the scheduler to mark a pod unschedulable.
func waitUnschedulable(t *testing.T, cp *draControlPlane, name string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		cp.alive(t)
		p, err := cp.admin.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			if p.Spec.NodeName != "" {
				t.Fatalf("pod %s scheduled to %s, want unschedulable", name, p.Spec.NodeName)
			}
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodScheduled && cond.Reason == corev1.PodReasonUnschedulable {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("pod %s not marked unschedulable in 60s", name)
}

// allocatedOn lists the devices of node held by allocated claims.
func allocatedOn(t *testing.T, c kubernetes.Interface, node string) map[string]bool {
	t.Helper()
	l, err := c.ResourceV1().ResourceClaims("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, cl := range l.Items {
		if cl.Status.Allocation == nil {
			continue
		}
		for _, r := range cl.Status.Allocation.Devices.Results {
			if r.Pool == node {
				out[r.Device] = true
			}
		}
	}
	return out
}

// firstFree returns the first n devices of kind on node, in slice order,
// that no allocated claim holds: what the scheduler's allocator, which
// tries devices in that order, would pick for n devices of that class
// without constraints.
func firstFree(t *testing.T, c kubernetes.Interface, node, kind string, n int) []resourceapi.Device {
	t.Helper()
	ss, err := nodeSlices(context.Background(), c, node)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(ss, func(a, b resourceapi.ResourceSlice) int { return strings.Compare(a.Name, b.Name) })
	used := allocatedOn(t, c, node)
	var out []resourceapi.Device
	for _, s := range ss {
		for _, d := range s.Spec.Devices {
			if strAttr(d, "kind") == kind && !used[d.Name] && len(d.Taints) == 0 && len(out) < n {
				out = append(out, d)
			}
		}
	}
	if len(out) < n {
		t.Fatalf("%d free %s devices on %s, want %d", len(out), kind, node, n)
	}
	return out
}

// wantKinds checks the kinds of the allocated devices, in result order.
func wantKinds(t *testing.T, rs []resourceapi.DeviceRequestAllocationResult, devs map[string]resourceapi.Device, kinds ...string) {
	t.Helper()
	var got []string
	for _, r := range rs {
		got = append(got, strAttr(devs[r.Device], "kind"))
	}
	if diff := cmp.Diff(kinds, got); diff != "" {
		t.Errorf("allocated kinds (-want +got):\n%s", diff)
	}
}

func strAttr(d resourceapi.Device, name resourceapi.QualifiedName) string {
	if v := d.Attributes[name].StringValue; v != nil {
		return *v
	}
	return ""
}

func intAttr(d resourceapi.Device, name resourceapi.QualifiedName) int64 {
	if v := d.Attributes[name].IntValue; v != nil {
		return *v
	}
	return -1
}

// kustomizationResources lists the resources of the DRA kustomization.
func kustomizationResources(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(draManifests, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	return k.Resources
}

// TestDRADaemonSet decodes the DRA DaemonSet strictly and checks what the
// driver relies on: the kubelet's plugin directories at the same path
// inside and out, the persistent CDI directory, the node name, the service
// account the RBAC binds.
func TestDRADaemonSet(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(draManifests, "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(b, &ds); err != nil {
		t.Fatalf("daemonset.yaml: %v", err)
	}
	spec := ds.Spec.Template.Spec
	if spec.ServiceAccountName != "slipway-dra" {
		t.Errorf("service account %q, want slipway-dra", spec.ServiceAccountName)
	}
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	c := spec.Containers[0]
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[hostPaths[m.Name]] = m.MountPath
	}
	for _, p := range []string{"/var/lib/kubelet/plugins_registry", "/var/lib/kubelet/plugins", "/etc/cdi"} {
		if mounts[p] != p {
			t.Errorf("host %s mounted at %q, want the same path inside", p, mounts[p])
		}
	}
	for _, a := range []string{"--api=dra", "--node-name=$(NODE_NAME)", "--dra-cdi-dir=/etc/cdi"} {
		if !slices.Contains(c.Args, a) {
			t.Errorf("args %v lack %s", c.Args, a)
		}
	}
	if len(c.Env) == 0 || c.Env[0].Name != "NODE_NAME" || c.Env[0].ValueFrom == nil || c.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("NODE_NAME is not the pod's spec.nodeName: %+v", c.Env)
	}
}
