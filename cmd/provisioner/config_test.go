package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-dev/slipway/pkg/kubeadm"
)

// renderInventory is a two-node lab inventory with a third, disabled node.
const renderInventory = `apiVersion: slipway.dev/v1alpha1
kind: Inventory
cluster:
  name: lab
  kubernetesVersion: v1.37.2
network:
  provisioner:
    interface: slipbr0
    address: 192.168.250.1
  subnet: 192.168.250.0/24
profiles:
  lab:
    boot:
      kernel: vmlinuz
      initrd: initrd.img
    bmc:
      username: admin
      password: env:LAB_BMC_PASSWORD
nodes:
  - name: cp1
    profile: lab
    role: control-plane
    mac: 52:54:00:99:00:11
    ip: 192.168.250.11
    bmc:
      url: ipmi://127.0.0.1:9623
  - name: cp2
    profile: lab
    role: control-plane
    mac: 52:54:00:99:00:13
    ip: 192.168.250.13
    bmc:
      url: ipmi://127.0.0.1:9625
  - name: w1
    profile: lab
    role: worker
    mac: 52:54:00:99:00:12
    ip: 192.168.250.12
    bmc:
      url: ipmi://127.0.0.1:9624
  - name: w2
    profile: lab
    role: worker
    disabled: true
    mac: 52:54:00:99:00:14
    ip: 192.168.250.14
    bmc:
      url: ipmi://127.0.0.1:9626
`

func renderFixture(t *testing.T) (inv, state string) {
	t.Helper()
	dir := t.TempDir()
	inv = filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(inv, []byte(renderInventory), 0o644); err != nil {
		t.Fatal(err)
	}
	state = filepath.Join(dir, "state")
	return inv, state
}

func TestConfigRender(t *testing.T) {
	inv, state := renderFixture(t)
	pki, err := kubeadm.EnsurePKI(kubeadm.PKIConfig{Dir: filepath.Join(state, "pki")})
	if err != nil {
		t.Fatal(err)
	}
	caKey, _ := os.ReadFile(filepath.Join(pki.Dir(), kubeadm.CAKeyFile))
	caKeyLine := strings.Split(string(caKey), "\n")[1]
	tests := []struct {
		name      string
		args      []string
		wantCode  int
		want      []string
		dontWant  []string
		wantError string
	}{
		{name: "first control plane, redacted", args: []string{"config", "render", "cp1"}, want: []string{
			"#cloud-config", "kind: InitConfiguration", "kind: ClusterConfiguration", "certificateKey: '[redacted]'",
			"/etc/kubernetes/pki/ca.key", "kubeadm init --config", "http://192.168.250.1:8080/phone-home/cp1",
		}, dontWant: []string{pki.CertificateKey(), caKeyLine}},
		{name: "first control plane, secrets shown", args: []string{"config", "render", "cp1", "--show-secrets"},
			want: []string{pki.CertificateKey(), caKeyLine}},
		{name: "second control plane", args: []string{"config", "render", "cp2", "--show-secrets"},
			want:     []string{"kind: JoinConfiguration", "controlPlane:", pki.CertificateKey(), pki.DiscoveryHash()},
			dontWant: []string{caKeyLine, "kind: InitConfiguration"}},
		{name: "worker as script", args: []string{"config", "render", "w1", "--format", "script", "--show-secrets"},
			want:     []string{"#!/bin/sh", "kind: JoinConfiguration", pki.DiscoveryHash(), "kubeadm join --config"},
			dontWant: []string{pki.CertificateKey(), caKeyLine, "controlPlane:", "unsafeSkipCAVerification"}},
		{name: "disabled node", args: []string{"config", "render", "w2"}, wantCode: exitFailure, wantError: "node is disabled"},
		{name: "unknown node", args: []string{"config", "render", "nope"}, wantCode: exitFailure, wantError: `node "nope" is not in the inventory`},
		{name: "no node", args: []string{"config", "render"}, wantCode: exitUsage, wantError: "one node name"},
		{name: "bad format", args: []string{"config", "render", "w1", "--format", "ignition"}, wantCode: exitUsage, wantError: "cloud-config or script"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append(tt.args, "-f", inv, "--state-dir", state)
			code := run(context.Background(), args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("run(%q) = %d, want %d; stderr:\n%s", args, code, tt.wantCode, stderr.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("run(%q) output lacks %q:\n%s", args, w, stdout.String())
				}
			}
			for _, w := range tt.dontWant {
				if strings.Contains(stdout.String()+stderr.String(), w) {
					t.Errorf("run(%q) output contains %q, which it must not", args, w)
				}
			}
			if tt.wantError != "" && !strings.Contains(stderr.String(), tt.wantError) {
				t.Errorf("run(%q) stderr lacks %q:\n%s", args, tt.wantError, stderr.String())
			}
		})
	}
}

func TestConfigRenderOut(t *testing.T) {
	inv, state := renderFixture(t)
	out := filepath.Join(t.TempDir(), "out")
	for _, tc := range []struct {
		secrets bool
		mode    os.FileMode
	}{{false, 0o644}, {true, 0o600}} {
		args := []string{"config", "render", "w1", "-f", inv, "--state-dir", state, "--out", out}
		if tc.secrets {
			args = append(args, "--show-secrets")
		}
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != exitOK {
			t.Fatalf("run(%q) = %d; stderr:\n%s", args, code, stderr.String())
		}
		for _, name := range []string{"w1.kubeadm.yaml", "w1.cloud-config.yaml"} {
			fi, err := os.Stat(filepath.Join(out, name))
			if err != nil {
				t.Fatalf("run(%q) did not write %s: %v", args, name, err)
			}
			if fi.Mode().Perm() != tc.mode {
				t.Errorf("run(%q): %s mode %04o, want %04o", args, name, fi.Mode().Perm(), tc.mode)
			}
		}
		// A preview never creates the cluster PKI in the state directory.
		if _, err := os.Stat(filepath.Join(state, "pki")); !os.IsNotExist(err) {
			t.Errorf("run(%q) created %s/pki (stat: %v)", args, state, err)
		}
		if !strings.Contains(stderr.String(), "throwaway CA") {
			t.Errorf("run(%q) does not warn about the throwaway CA:\n%s", args, stderr.String())
		}
	}
}

func TestConfigAddons(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inventory.yaml")
	os.WriteFile(filepath.Join(dir, "good.yaml"), []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: net\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("apiVersion: v1\nkind: [\n"), 0o644)
	write := func(addons string) {
		if err := os.WriteFile(inv, []byte(renderInventory+addons), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, addons, wantErr, wantOut string
		wantCode                       int
	}{
		{"none listed", "", "", "no add-ons listed", exitOK},
		{"broken manifest named before any cluster access", "addons: [good.yaml, bad.yaml]\n", "bad.yaml: document 1", "", exitFailure},
		{"no cluster PKI yet", "addons: [good.yaml]\n", "no cluster PKI in", "", exitFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			write(tt.addons)
			var stdout, stderr bytes.Buffer
			args := []string{"config", "addons", "-f", inv, "--state-dir", filepath.Join(dir, "state")}
			if code := run(context.Background(), args, &stdout, &stderr); code != tt.wantCode {
				t.Fatalf("run(%q) = %d, want %d; stderr:\n%s", args, code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantErr) || !strings.Contains(stdout.String(), tt.wantOut) {
				t.Errorf("run(%q): stdout %q, stderr %q; want %q and %q", args, stdout.String(), stderr.String(), tt.wantOut, tt.wantErr)
			}
		})
	}
}
