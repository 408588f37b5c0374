package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateExitCodes(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr []string
	}{
		{
			name:       "rack example is valid",
			args:       []string{"validate", "-f", "../../inventory/rack-gpu.yaml"},
			wantCode:   exitOK,
			wantStdout: "inventory ok: cluster hpc-a (Kubernetes v1.37.2), 21 nodes: 3 control-plane, 18 worker; by rack: r01 3, r02 16, r03 2\n",
		},
		{
			name:       "lab example is valid",
			args:       []string{"validate", "-f", "../../inventory/lab-qemu.yaml"},
			wantCode:   exitOK,
			wantStdout: "inventory ok: cluster lab (Kubernetes v1.37.2), 2 nodes: 1 control-plane, 1 worker; by rack: (no rack) 2\n",
		},
		{
			name:       "multi-file example directory is valid",
			args:       []string{"validate", "-f", "../../inventory/examples/rack/"},
			wantCode:   exitOK,
			wantStdout: "inventory ok: cluster hpc-a (Kubernetes v1.37.2), 21 nodes: 3 control-plane, 18 worker; by rack: r01 3, r02 16, r03 2\n",
		},
		{
			name:       "routed example names its networks",
			args:       []string{"validate", "-f", "../../inventory/examples/routed/"},
			wantCode:   exitOK,
			wantStdout: "inventory ok: cluster hpc-c (Kubernetes v1.37.2), 39 nodes: 3 control-plane, 36 worker; by rack: r10 3, r11 16, r12 16, r13 4; by network: mgmt 3, rack-r11 16, rack-r12 16, rack-r13 4\n",
		},
		{
			name:       "kueue example is valid",
			args:       []string{"validate", "-f", "../../inventory/examples/kueue/"},
			wantCode:   exitOK,
			wantStdout: "inventory ok: cluster hpc-b (Kubernetes v1.37.2), 27 nodes: 3 control-plane, 24 worker; by rack: r00 3, r01 8, r02 8, r03 8\n",
		},
		{
			name:       "a directory of two inventories is one problem",
			args:       []string{"validate", "-f", "../../inventory/"},
			wantCode:   exitFailure,
			wantStderr: []string{"inventory has 1 problem(s):", "2 inventories were loaded as one", "load one inventory at a time"},
		},
		{
			name:       "every problem with its position",
			args:       []string{"validate", "-f", "../../pkg/inventory/testdata/invalid-unknown-fields.yaml"},
			wantCode:   exitFailure,
			wantStderr: []string{"inventory has 5 problem(s):", "invalid-unknown-fields.yaml:21:5: nodes[0].profle: unknown field \"profle\", did you mean \"profile\"?"},
		},
		{
			name:       "even control plane warns but passes",
			args:       []string{"validate", "-f", "../../pkg/inventory/testdata/valid-even-control-plane.yaml"},
			wantCode:   exitOK,
			wantStdout: "inventory ok: cluster t (Kubernetes v1.37.2), 2 nodes: 2 control-plane, 0 worker; by rack: (no rack) 2\n",
			wantStderr: []string{"warning: ", "2 control-plane nodes"},
		},
		{
			name:       "missing file",
			args:       []string{"validate", "-f", "does-not-exist.yaml"},
			wantCode:   exitFailure,
			wantStderr: []string{"does-not-exist.yaml: no such file or directory"},
		},
		{
			name:       "broken add-on manifest",
			args:       []string{"validate", "-f", "testdata/broken-addon/inventory.yaml"},
			wantCode:   exitFailure,
			wantStderr: []string{"cni.yaml", "document 2"},
		},
		{name: "no inventory", args: []string{"validate"}, wantCode: exitUsage, wantStderr: []string{"no inventory given"}},
		{name: "unknown flag", args: []string{"validate", "--frobnicate"}, wantCode: exitUsage, wantStderr: []string{"unknown flag"}},
		{name: "zero watch interval", args: []string{"status", "--watch", "--interval", "0"}, wantCode: exitUsage, wantStderr: []string{"--interval 0s"}},
		{name: "bad flag value", args: []string{"power", "status", "--parallel", "abc"}, wantCode: exitUsage, wantStderr: []string{`invalid argument "abc"`}},
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: exitUsage, wantStderr: []string{"unknown command"}},
		{name: "bad output format", args: []string{"inventory", "show", "-o", "xml", "-f", "../../inventory/lab-qemu.yaml"}, wantCode: exitUsage, wantStderr: []string{`-o "xml"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("run(%q) = %d, want %d; stderr:\n%s", tt.args, code, tt.wantCode, stderr.String())
			}
			if tt.wantStdout != "" && stdout.String() != tt.wantStdout {
				t.Errorf("run(%q) stdout = %q, want %q", tt.args, stdout.String(), tt.wantStdout)
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("run(%q) stderr lacks %q:\n%s", tt.args, w, stderr.String())
				}
			}
		})
	}
}

func TestInventoryShowKeepsReferences(t *testing.T) {
	t.Setenv("RACK_BMC_PASSWORD", "do-not-print-me")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"inventory", "show", "-o", "json", "-f", "../../inventory/rack-gpu.yaml"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("inventory show = %d; stderr:\n%s", code, stderr.String())
	}
	if strings.Contains(stdout.String(), "do-not-print-me") {
		t.Fatal("inventory show printed a resolved secret")
	}
	var got struct {
		Profiles map[string]struct {
			BMC struct{ Password string }
		}
		Nodes []struct {
			Name    string
			Profile string
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("inventory show -o json is not JSON: %v", err)
	}
	if len(got.Nodes) != 21 || got.Nodes[5].Name != "gpu03" || got.Profiles[got.Nodes[5].Profile].BMC.Password != "env:RACK_BMC_PASSWORD" {
		t.Errorf("inventory show: %d nodes, node 5 = %+v with profile %+v; want 21 nodes, gpu03 with password env:RACK_BMC_PASSWORD", len(got.Nodes), got.Nodes[5], got.Profiles[got.Nodes[5].Profile])
	}
}

// What inventory show prints is an inventory: validate accepts it and finds
// the same nodes.
func TestInventoryShowValidates(t *testing.T) {
	for _, format := range []string{"yaml", "json"} {
		for _, src := range []string{"../../inventory/rack-gpu.yaml", "../../inventory/examples/rack/", "../../inventory/examples/routed/"} {
			var show, stderr bytes.Buffer
			if code := run(context.Background(), []string{"inventory", "show", "-o", format, "-f", src}, &show, &stderr); code != exitOK {
				t.Fatalf("inventory show -o %s -f %s = %d; stderr:\n%s", format, src, code, stderr.String())
			}
			var want bytes.Buffer
			if code := run(context.Background(), []string{"validate", "-f", src}, &want, &stderr); code != exitOK {
				t.Fatalf("validate -f %s = %d; stderr:\n%s", src, code, stderr.String())
			}
			file := filepath.Join(t.TempDir(), "resolved."+format)
			if err := os.WriteFile(file, show.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			stderr.Reset()
			if code := run(context.Background(), []string{"validate", "-f", file}, &got, &stderr); code != exitOK {
				t.Fatalf("validate -f (inventory show -o %s -f %s) = %d; stderr:\n%s\nshown:\n%s", format, src, code, stderr.String(), show.String())
			}
			if got.String() != want.String() {
				t.Errorf("validate of the shown %s inventory of %s = %q, want %q", format, src, got.String(), want.String())
			}
		}
	}
}
