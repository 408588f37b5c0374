package nodeagent

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/slipway-dev/slipway/pkg/deviceplugin/kubeletstub"
	"github.com/slipway-dev/slipway/pkg/devices"
)

// writeHealthConfig writes a config file with the default resources and
// the given poll interval and recovery period, and returns its path.
func writeHealthConfig(t testing.TB, poll, recovery string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, "apiVersion: slipway.dev/v1alpha1\nkind: DevicePluginConfig\nhealth:\n  pollInterval: "+poll+"\n  recoveryPeriod: "+recovery+"\n")
	return path
}

// writeConfig replaces the config file at path, as a ConfigMap update or
// an editor does (write aside, rename).
func writeConfig(t testing.TB, path, content string) {
	t.Helper()
	writeAtomic(t, path, content)
}

// TestHealthSurvivesRescansAndReloads is issue 14's defect 2: an HCA whose
// port went down stays unhealthy for its whole recovery period although
// its port is up again, a GPU is unplugged (the device set changes, the
// monitor restarts), the config is reloaded (the monitor restarts again)
// and the devices are rediscovered many times.
func TestHealthSurvivesRescansAndReloads(t *testing.T) {
	t.Parallel()
	root := copyFixture(t, "dgx-h100")
	cfg := writeHealthConfig(t, "20ms", "1h")
	h := startAgent(t, Config{
		Discovery:      devices.Config{Root: root, NVML: devices.NVMLOff},
		ConfigFile:     cfg,
		RescanInterval: 30 * time.Millisecond,
	})
	ctx := h.waitCtx(t)
	state := filepath.Join(root, "sys", "class", "infiniband", "mlx5_0", "ports", "1", "state")
	if _, _, err := h.stub.WaitPlugin(ctx, devices.ResourceHCA); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, state, "1: DOWN\n")
	if _, err := h.stub.WaitDevices(ctx, devices.ResourceHCA, healthIs("mlx5_0", pluginapi.Unhealthy)); err != nil {
		t.Fatalf("mlx5_0 not withdrawn after its port went down: %v", err)
	}
	writeAtomic(t, state, "4: ACTIVE\n")
	// A GPU is unplugged: the next rescan changes the device set.
	if err := os.Remove(filepath.Join(root, "sys", "bus", "pci", "devices", "0000:1b:00.0")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.stub.WaitDevices(ctx, devices.ResourceGPU, func(ds []*pluginapi.Device) bool { return len(ds) == 7 }); err != nil {
		t.Fatalf("the unplugged GPU is still advertised: %v", err)
	}
	// A config reload that changes the health settings restarts the
	// monitor on its own.
	writeConfig(t, cfg, "apiVersion: slipway.dev/v1alpha1\nkind: DevicePluginConfig\nhealth:\n  pollInterval: 25ms\n  recoveryPeriod: 1h\n")
	deadline := time.Now().Add(10 * time.Second)
	for h.a.State().Config.Health.PollInterval.Duration != 25*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatal("config reload not applied within 10s")
		}
		time.Sleep(10 * time.Millisecond)
		h.alive(t)
	}
	// Many rescans and polls later mlx5_0 is still withdrawn, in the
	// agent's state and in what the kubelet was last sent.
	time.Sleep(300 * time.Millisecond)
	for _, d := range h.a.State().Devices {
		if d.ID == "mlx5_0" && (d.Healthy || !strings.Contains(d.HealthReason, "DOWN")) {
			t.Errorf("agent state: mlx5_0 healthy=%v reason %q, want unhealthy for the port that went down", d.Healthy, d.HealthReason)
		}
	}
	ups := h.stub.Updates(devices.ResourceHCA)
	if got := healthOf(ups[len(ups)-1].Devices, "mlx5_0"); got != pluginapi.Unhealthy {
		t.Errorf("last ListAndWatch list has mlx5_0 %s, want Unhealthy for the 1h recovery period", got)
	}
	sawDown := false
	for _, u := range ups {
		got := healthOf(u.Devices, "mlx5_0")
		if got == pluginapi.Unhealthy {
			sawDown = true
		} else if sawDown {
			t.Errorf("ListAndWatch list at %s has mlx5_0 %s after it went down, want Unhealthy throughout", u.At.Format(time.StampMicro), got)
		}
	}
}

// TestSteadyStateLogIsQuiet is issue 14's defect 5: on a healthy host
// (abi_version files beside the RDMA class links, as on every host with the
// RDMA modules loaded) the agent logs no warning at start or over many
// rescans, and an empty host says once that it found nothing.
func TestSteadyStateLogIsQuiet(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		tree     string
		wantOnce string
	}{
		{"dgx-h100", ""},
		{"fpga-node", ""},
		{"empty-node", "no gpus, hcas or fpgas found"},
	} {
		t.Run(tc.tree, func(t *testing.T) {
			t.Parallel()
			h := startAgent(t, Config{
				Discovery:      devices.Config{Root: fixture(tc.tree), NVML: devices.NVMLOff},
				ConfigFile:     writeHealthConfig(t, "10ms", "1h"),
				RescanInterval: 10 * time.Millisecond,
			})
			before := readDiscoveries(t, h)
			deadline := time.Now().Add(20 * time.Second)
			for readDiscoveries(t, h) < before+20 {
				if time.Now().After(deadline) {
					t.Fatal("fewer than 20 rescans in 20s")
				}
				time.Sleep(10 * time.Millisecond)
				h.alive(t)
			}
			if w := h.log.lines("level=WARN"); len(w) > 0 {
				t.Errorf("warnings on a healthy %s:\n%s", tc.tree, strings.Join(w, "\n"))
			}
			if tc.wantOnce != "" {
				if got := h.log.lines(tc.wantOnce); len(got) != 1 {
					t.Errorf("%q logged %d times over 20 rescans, want once:\n%s", tc.wantOnce, len(got), strings.Join(got, "\n"))
				}
			}
		})
	}
}

// readDiscoveries returns how many discoveries the agent has run, from its
// metrics.
func readDiscoveries(t *testing.T, h *harness) int {
	t.Helper()
	mfs, err := h.a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() == "slipway_devices_discoveries_total" {
			for _, m := range mf.GetMetric() {
				n += int(m.GetCounter().GetValue())
			}
		}
	}
	return n
}

// TestDefaultConfigDGX is issue 14's "done when" for defect 3, end to end:
// with the built-in config (no file) the agent on the DGX tree advertises
// the 8 GPUs and exactly the 8 InfiniBand rails as slipway.dev/hca, and
// the storage ConnectX-7s in Ethernet mode under no resource at all.
func TestDefaultConfigDGX(t *testing.T) {
	t.Parallel()
	h := startAgent(t, Config{Discovery: devices.Config{Root: fixture("dgx-h100"), NVML: devices.NVMLOff}})
	ctx := h.waitCtx(t)
	want := map[string][]string{
		devices.ResourceGPU: {
			"GPU-0000001b-1111-2222-3333-444400000000", "GPU-00000043-1111-2222-3333-444400000001",
			"GPU-00000052-1111-2222-3333-444400000003", "GPU-00000061-1111-2222-3333-444400000002",
			"GPU-0000009d-1111-2222-3333-444400000004", "GPU-000000c3-1111-2222-3333-444400000005",
			"GPU-000000d1-1111-2222-3333-444400000006", "GPU-000000df-1111-2222-3333-444400000007",
		},
		devices.ResourceHCA: {"mlx5_0", "mlx5_10", "mlx5_11", "mlx5_3", "mlx5_4", "mlx5_5", "mlx5_6", "mlx5_9"},
	}
	for name, ids := range want {
		_, devs, err := h.stub.WaitPlugin(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range devs {
			got = append(got, d.GetID())
		}
		slices.Sort(got)
		if !slices.Equal(ids, got) {
			t.Errorf("%s lists %v, want %v", name, got, ids)
		}
	}
	if err := h.stub.Wait(ctx, func(ps map[string]*kubeletstub.Plugin, _ map[string][]kubeletstub.Update) bool { return len(ps) >= 2 }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // any other resource would have registered by now
	if err := h.stub.Wait(ctx, func(ps map[string]*kubeletstub.Plugin, _ map[string][]kubeletstub.Update) bool {
		if len(ps) != 2 {
			t.Errorf("registered resources: %v, want only %s and %s", slices.Collect(maps.Keys(ps)), devices.ResourceGPU, devices.ResourceHCA)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
}
