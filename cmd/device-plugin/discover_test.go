package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/slipway-dev/slipway/pkg/devices"

	goldenfile "github.com/slipway-dev/slipway/internal/golden"
)

func runDiscover(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), append([]string{"discover"}, args...), &stdout, &stderr)
	return stdout.String(), stderr.String(), code
}

func TestDiscoverTable(t *testing.T) {
	for _, name := range []string{"dgx-h100", "fpga-node", "broken-node", "empty-node"} {
		t.Run(name, func(t *testing.T) {
			root := filepath.Join("..", "..", "pkg", "devices", "testdata", name)
			out, errOut, code := runDiscover(t, "--root", root, "--nvml", "off", "--log-level", "error")
			if code != 0 {
				t.Fatalf("discover --root %s = exit %d, stderr:\n%s", root, code, errOut)
			}
			goldenfile.Check(t, filepath.Join("testdata", "discover-"+name+".golden"), []byte(out))
		})
	}
}

func TestDiscoverConfig(t *testing.T) {
	root := filepath.Join("..", "..", "pkg", "devices", "testdata", "fpga-node")
	cfg := filepath.Join("..", "..", "pkg", "devices", "testdata", "config", "custom.yaml")
	out, errOut, code := runDiscover(t, "--root", root, "--nvml", "off", "--config", cfg)
	if code != 0 {
		t.Fatalf("discover --config %s = exit %d, stderr:\n%s", cfg, code, errOut)
	}
	for _, want := range []string{"slipway.dev/u250", "slipway.dev/n6001"} {
		if !strings.Contains(out, want) {
			t.Errorf("discover --config %s output lacks resource %s:\n%s", cfg, want, out)
		}
	}
	typo := filepath.Join("..", "..", "pkg", "devices", "testdata", "config", "typo.yaml")
	if _, errOut, code := runDiscover(t, "--root", root, "--nvml", "off", "--config", typo); code == 0 || !strings.Contains(errOut, "line 7") {
		t.Errorf("discover --config %s = exit %d, stderr %q; want a failure naming line 7", typo, code, errOut)
	}
}

func TestDiscoverJSON(t *testing.T) {
	root := filepath.Join("..", "..", "pkg", "devices", "testdata", "dgx-h100")
	out, errOut, code := runDiscover(t, "--root", root, "--nvml", "off", "-o", "json", "--log-level", "error")
	if code != 0 {
		t.Fatalf("discover -o json = exit %d, stderr:\n%s", code, errOut)
	}
	var devs []devices.Device
	if err := json.Unmarshal([]byte(out), &devs); err != nil {
		t.Fatalf("discover -o json: output is not a device list: %v", err)
	}
	kinds := map[devices.Kind]int{}
	for _, d := range devs {
		kinds[d.Kind]++
	}
	if diff := cmp.Diff(map[devices.Kind]int{devices.KindGPU: 8, devices.KindHCA: 12}, kinds); diff != "" {
		t.Errorf("discover -o json kinds (-want +got):\n%s", diff)
	}
}

func TestDiscoverErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-o", "yaml"}, `--output "yaml"`},
		{[]string{"--nvml", "maybe"}, `nvml mode "maybe"`},
		{[]string{"--root", "/nonexistent-root", "--nvml", "off"}, "list pci devices"},
	}
	for _, tc := range tests {
		_, errOut, code := runDiscover(t, tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("discover %v = exit %d, stderr %q; want a failure mentioning %q", tc.args, code, errOut, tc.want)
		}
	}
}
