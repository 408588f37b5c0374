package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/pkg/devices"
)

func TestAPIBadFlags(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--api", "grpc"}, `--api "grpc": want deviceplugin, dra or both`},
		{[]string{"--api", "dra"}, "needs --node-name"},
		{[]string{"--api", "both", "--node-name", "n1"}, "--api both needs --dra-resources"},
		{[]string{"--api", "dra", "--node-name", "n1", "--kubeconfig", "/nonexistent/kubeconfig"}, "/nonexistent/kubeconfig"},
	} {
		var stdout, stderr bytes.Buffer
		if c := run(context.Background(), tc.args, &stdout, &stderr); c == 0 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("run(%q) = %d, stderr %q; want a failure saying %q", tc.args, c, stderr.String(), tc.want)
		}
	}
}

// TestWithoutResources splits a DGX between the APIs with a config whose
// first resource takes the H100s and whose second takes any GPU: the
// device plugin must not get the H100s DRA serves through the second.
func TestWithoutResources(t *testing.T) {
	devs, err := devices.Discover(context.Background(), devices.Config{Root: filepath.Join("..", "..", "pkg", "devices", "testdata", "dgx-h100"), NVML: devices.NVMLOff})
	if err != nil {
		t.Fatal(err)
	}
	cfg := devices.DefaultConfig()
	cfg.Resources = append([]devices.Resource{{Name: "nvidia.com/h100", Selector: devices.Selector{Model: "*H100*"}}}, cfg.Resources...)
	var got devices.State
	w := withoutResources{Frontend: recorder{&got}, names: []string{"nvidia.com/h100"}}
	if err := w.Apply(devices.State{Devices: devs, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, a := range got.Config.Plan(got.Devices) {
		kinds = append(kinds, a.Name)
	}
	if diff := cmp.Diff([]string{devices.ResourceHCA}, kinds); diff != "" {
		t.Errorf("device plugin's resources (-want +got):\n%s", diff)
	}
}

type recorder struct{ st *devices.State }

func (r recorder) Apply(st devices.State) error { *r.st = st; return nil }
func (recorder) Run(context.Context) error      { return nil }
func (recorder) Ready() error                   { return nil }

// TestDRADeploymentMatchesFlags checks images/device-plugin/dra against
// the command: every argument is a flag, and the directories the flags
// name are mounted at the same paths on the host and in the container.
func TestDRADeploymentMatchesFlags(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "images", "device-plugin", "dra", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := sigsyaml.UnmarshalStrict(raw, &ds); err != nil {
		t.Fatalf("decode dra/daemonset.yaml: %v", err)
	}
	c := ds.Spec.Template.Spec.Containers[0]
	root := newRootCmd(&globals{stdout: io.Discard, stderr: io.Discard})
	if err := root.ParseFlags(c.Args); err != nil {
		t.Fatalf("dra/daemonset.yaml args %q do not parse as device-plugin flags: %v", c.Args, err)
	}
	flag := func(name string) string { return root.Flags().Lookup(name).Value.String() }
	if flag("api") != apiDRA {
		t.Errorf("--api = %q, want dra", flag("api"))
	}
	host := map[string]string{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil {
			host[v.Name] = v.HostPath.Path
		}
	}
	mounted := map[string]string{} // container path -> host path
	for _, m := range c.VolumeMounts {
		mounted[m.MountPath] = host[m.Name]
	}
	for _, f := range []string{"dra-plugins-dir", "dra-registry-dir", "dra-cdi-dir"} {
		if p := flag(f); mounted[p] != p {
			t.Errorf("--%s %s is mounted from host %q, want the same path (the kubelet and runtime use host paths)", f, p, mounted[p])
		}
	}
	if mounted[flag("root")] != "/" {
		t.Errorf("--root %s is not the host's /", flag("root"))
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "NODE_NAME" }) {
		t.Errorf("no NODE_NAME in the container's environment")
	}
}

// TestWithoutResourcesFPGA splits an FPGA node by the config's resource
// name slipway.dev/fpga: the config plans one resource per FPGA identity,
// and all of them go to DRA, none to the device plugin.
func TestWithoutResourcesFPGA(t *testing.T) {
	devs, err := devices.Discover(context.Background(), devices.Config{Root: filepath.Join("..", "..", "pkg", "devices", "testdata", "fpga-node"), NVML: devices.NVMLOff})
	if err != nil {
		t.Fatal(err)
	}
	var got devices.State
	w := withoutResources{Frontend: recorder{&got}, names: []string{devices.ResourceFPGA}}
	if err := w.Apply(devices.State{Devices: devs, Config: devices.DefaultConfig()}); err != nil {
		t.Fatal(err)
	}
	for _, d := range got.Devices {
		if d.Kind == devices.KindFPGA {
			t.Errorf("device plugin got FPGA %s, which --dra-resources %s gives to DRA", d.ID, devices.ResourceFPGA)
		}
	}
}
