package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/bmc/ipmisim"
	"github.com/slipway-dev/slipway/pkg/bmc/redfishsim"

	goldenfile "github.com/slipway-dev/slipway/internal/golden"
)

// update rewrites golden files under testdata/ (go test ./cmd/provisioner -run Golden -update).
// Other tests of this package may use it too.

// powerLab is a four-node inventory whose BMCs are simulated: n1 (rack r1,
// worker, plain HTTP), n2 (rack r1, worker, HTTPS checked against the
// simulator's CA), n3 (rack r2, control-plane, refuses the credentials) and
// n4 (disabled).
type powerLab struct {
	inv  string
	bmcs map[string]*redfishsim.BMC
}

func newPowerLab(t *testing.T) powerLab {
	t.Helper()
	sim, err := redfishsim.New(redfishsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	dir := t.TempDir()
	pw := filepath.Join(dir, "bmc-password")
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(pw, []byte("lab-Pa55\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, sim.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	lab := powerLab{bmcs: map[string]*redfishsim.BMC{}}
	start := func(name string, cfg redfishsim.BMCConfig) string {
		cfg.Name, cfg.Password = name, "lab-Pa55"
		cfg.Manufacturer, cfg.Model = "Supermicro", "SYS-421GE"
		b, err := sim.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		lab.bmcs[name] = b
		return b.URL()
	}
	u1 := start("n1", redfishsim.BMCConfig{})
	u2 := start("n2", redfishsim.BMCConfig{TLS: true})
	u3 := start("n3", redfishsim.BMCConfig{Faults: redfishsim.Faults{RejectCredentials: true}})
	u4 := start("n4", redfishsim.BMCConfig{})
	y := fmt.Sprintf(`apiVersion: slipway.dev/v1alpha1
kind: Inventory
cluster:
  name: t
  kubernetesVersion: v1.37.2
network:
  provisioner:
    interface: lo
    address: 127.0.0.1
  subnet: 127.0.0.0/8
profiles:
  p:
    boot:
      firmware: uefi
      kernel: vmlinuz
      initrd: initrd.gz
    bmc:
      username: admin
      password: file:%s
nodes:
  - {name: n1, profile: p, role: worker, rack: r1, mac: "52:54:00:00:00:01", ip: 127.0.0.11, bmc: {url: "%s"}}
  - {name: n2, profile: p, role: worker, rack: r1, mac: "52:54:00:00:00:02", ip: 127.0.0.12, bmc: {url: "%s", caFile: %s}}
  - {name: n3, profile: p, role: control-plane, rack: r2, mac: "52:54:00:00:00:03", ip: 127.0.0.13, bmc: {url: "%s"}}
  - {name: n4, profile: p, role: worker, rack: r2, mac: "52:54:00:00:00:04", ip: 127.0.0.14, disabled: true, bmc: {url: "%s"}}
`, pw, u1, u2, ca, u3, u4)
	lab.inv = filepath.Join(dir, "inv.yaml")
	if err := os.WriteFile(lab.inv, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return lab
}

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestPowerCommands(t *testing.T) {
	lab := newPowerLab(t)
	f := []string{"-f", lab.inv, "--connect-timeout", "2s", "--verify-timeout", "5s"}

	// A rack-wide status: the node that refuses the credentials fails on
	// its own row and in the exit status; the others are read.
	code, out, errOut := runCLI(t, append([]string{"power", "status", "--all"}, f...)...)
	t.Logf("power status --all:\n%s%s", out, errOut)
	if code != exitFailure {
		t.Errorf("power status --all = %d, want %d; stderr:\n%s", code, exitFailure, errOut)
	}
	for _, want := range []string{
		"NODE  BMC", "PROTOCOL  VENDOR      MODEL      POWER  TOOK",
		"redfish   Supermicro  SYS-421GE  off", " ok\n",
		"error: power status: connect: log in: credentials refused (HTTP 401: Invalid username or password.)",
		"3 node(s) in ", ": 2 ok, 1 failed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("power status --all stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "n4") {
		t.Errorf("power status --all listed the disabled node n4:\n%s", out)
	}
	if !strings.Contains(errOut, "provisioner: 1 of 3 node(s) failed") {
		t.Errorf("power status --all stderr = %q, want the failure count", errOut)
	}
	if strings.Contains(out+errOut, "lab-Pa55") {
		t.Errorf("the BMC password was printed")
	}

	// Act on named nodes, a rack and a role.
	steps := []struct {
		args  []string
		check func() error
	}{
		{[]string{"power", "on", "n1", "n2"}, func() error {
			return wantPower(lab, map[string]string{"n1": "On", "n2": "On", "n3": "Off"})
		}},
		{[]string{"bootdev", "pxe", "--persistent", "--rack", "r1"}, func() error {
			for _, n := range []string{"n1", "n2"} {
				if got, want := lab.bmcs[n].Boot(), (redfishsim.Boot{Target: "Pxe", Enabled: "Continuous", Mode: "UEFI"}); got != want {
					return fmt.Errorf("%s boot = %+v, want %+v", n, got, want)
				}
			}
			return nil
		}},
		{[]string{"bootdev", "disk", "--legacy", "n1"}, func() error {
			if got, want := lab.bmcs["n1"].Boot(), (redfishsim.Boot{Target: "Hdd", Enabled: "Once", Mode: "Legacy"}); got != want {
				return fmt.Errorf("n1 boot = %+v, want %+v", got, want)
			}
			return nil
		}},
		{[]string{"power", "cycle", "--role", "worker"}, func() error {
			for _, n := range []string{"n1", "n2"} {
				if got := lab.bmcs[n].Stats().Resets; !cmp.Equal(got, []string{"On", "PowerCycle"}) {
					return fmt.Errorf("%s resets = %v, want [On PowerCycle]", n, got)
				}
			}
			return nil
		}},
		{[]string{"power", "off", "--rack", "r1", "--parallel", "1"}, func() error {
			return wantPower(lab, map[string]string{"n1": "Off", "n2": "Off"})
		}},
	}
	for _, s := range steps {
		code, out, errOut := runCLI(t, append(s.args, f...)...)
		if code != exitOK {
			t.Errorf("%s = %d, want 0\nstdout:\n%s\nstderr:\n%s", strings.Join(s.args, " "), code, out, errOut)
			continue
		}
		if err := s.check(); err != nil {
			t.Errorf("after %s: %v", strings.Join(s.args, " "), err)
		}
	}
	for name, b := range lab.bmcs {
		if n := b.Sessions(); n != 0 {
			t.Errorf("bmc %s has %d sessions open after the commands, want 0", name, n)
		}
	}
}

func wantPower(lab powerLab, want map[string]string) error {
	for n, w := range want {
		if got := lab.bmcs[n].PowerState(); got != w {
			return fmt.Errorf("%s power = %s, want %s", n, got, w)
		}
	}
	return nil
}

func TestPowerUsage(t *testing.T) {
	lab := newPowerLab(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"power", "status"}, "no nodes given"},
		{[]string{"power", "status", "n1", "--all"}, "not both"},
		{[]string{"power", "status", "nX"}, `unknown node "nX"`},
		{[]string{"power", "status", "n4"}, "node n4 is disabled"},
		{[]string{"power", "status", "--rack", "r9"}, "no enabled node matches --rack r9"},
		{[]string{"power", "status", "--role", "boss"}, `--role "boss"`},
		{[]string{"power", "on", "--all", "--parallel", "0"}, "--parallel 0"},
		{[]string{"power", "frobnicate", "n1"}, `unknown power action "frobnicate"`},
		{[]string{"power"}, "name a power action"},
		{[]string{"bootdev", "floppy", "n1"}, `unknown boot device "floppy"`},
		{[]string{"bootdev", "pxe", "--efi", "--legacy", "n1"}, "--efi and --legacy exclude each other"},
		{[]string{"bootdev"}, "requires at least 1 arg"},
	}
	for _, tc := range tests {
		code, _, errOut := runCLI(t, append(tc.args, "-f", lab.inv)...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s = %d, stderr %q; want %d and %q", strings.Join(tc.args, " "), code, errOut, exitUsage, tc.want)
		}
	}
	for name, b := range lab.bmcs {
		if n := b.Stats().Requests; n != 0 {
			t.Errorf("usage errors reached bmc %s (%d requests), want none", name, n)
		}
	}
}

func TestPowerTableGolden(t *testing.T) {
	boot := bmc.BootOverride{Device: bmc.BootPXE}
	res := []bmc.Result{
		{Node: "gpu-01", BMC: "10.0.1.1:443", Info: bmc.Info{Protocol: "redfish", Vendor: "Dell Inc.", Model: "PowerEdge R760xa"},
			Power: bmc.PowerOn, Boot: &boot, BootFlagsVerified: true, Took: 1234 * time.Millisecond},
		{Node: "gpu-02", BMC: "10.0.1.2:623", Info: bmc.Info{Protocol: "ipmi", Vendor: "Supermicro", Model: "X12DPG-QT6"},
			Power: bmc.PowerOff, Boot: &boot, Took: 310 * time.Millisecond},
		{Node: "gpu-03", BMC: "10.0.1.3:443", Took: 5 * time.Second,
			Err: &bmc.OpError{Op: "set boot device pxe", Node: "gpu-03", BMC: "10.0.1.3:443", Err: errors.New("connect: no answer within 5s")}},
	}
	var buf bytes.Buffer
	if err := writeBMCTable(&buf, res, true); err != nil {
		t.Fatal(err)
	}
	goldenfile.Check(t, filepath.Join("testdata", "power-table.golden"), buf.Bytes())
}

// TestPowerIPMI runs the same commands against a real IPMI BMC (ipmi_sim,
// through bmclib's ipmitool provider).
func TestPowerIPMI(t *testing.T) {
	testenv.RequireCommands(t, "ipmi_sim", "ipmitool")
	dir := t.TempDir()
	sim, err := ipmisim.Start(context.Background(), ipmisim.Config{Dir: filepath.Join(dir), Password: "ipmi-Pa55"})
	if err != nil {
		t.Fatalf("ipmisim.Start: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("ipmi-Pa55"), 0o600); err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(t.TempDir(), "inv.yaml")
	y := fmt.Sprintf(`apiVersion: slipway.dev/v1alpha1
kind: Inventory
cluster: {name: t, kubernetesVersion: v1.37.2}
network:
  provisioner: {interface: lo, address: 127.0.0.1}
  subnet: 127.0.0.0/8
profiles:
  p:
    boot: {firmware: bios, kernel: vmlinuz, initrd: initrd.gz}
    bmc: {username: admin, password: "file:%s"}
nodes:
  - {name: vm1, profile: p, role: control-plane, mac: "52:54:00:00:00:01", ip: 127.0.0.11, bmc: {url: "%s"}}
`, pw, sim.URL())
	if err := os.WriteFile(inv, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"bootdev", "pxe", "--legacy", "vm1"},
		{"power", "on", "vm1"},
		{"power", "cycle", "--all"},
		{"power", "off", "--role", "control-plane"},
	} {
		code, out, errOut := runCLI(t, append(args, "-f", inv, "--verify-timeout", "10s")...)
		if code != exitOK {
			t.Errorf("%s = %d, want 0\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	code, out, errOut := runCLI(t, "power", "status", "vm1", "-f", inv)
	if code != exitOK || !strings.Contains(out, "vm1   127.0.0.1:"+fmt.Sprint(sim.Port())+"  ipmi      MontaVista Software, Inc.  -      off    ") {
		t.Errorf("power status vm1 = %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	log, err := sim.Log()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"set boot pxe", "set power 1", "set power 0", "set power 1", "set power 0"}
	if diff := cmp.Diff(want, log); diff != "" {
		t.Errorf("what ipmi_sim told the chassis (-want +got):\n%s", diff)
	}
}

// TestPowerInterrupt: Ctrl-C (the signal context ending) stops a rack-wide
// command, reports every node, exits 1 and leaves no session open.
func TestPowerInterrupt(t *testing.T) {
	lab := newPowerLab(t)
	for _, b := range lab.bmcs {
		b.SetFaults(redfishsim.Faults{Latency: 300 * time.Millisecond})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(100*time.Millisecond, cancel) // every login needs at least 600 ms
	var out, errb bytes.Buffer
	code := run(ctx, []string{"power", "on", "--all", "-f", lab.inv}, &out, &errb)
	if code != exitFailure || !strings.Contains(errb.String(), "interrupted: 3 of 3 node(s) not done") {
		t.Errorf("power on --all interrupted = %d, stderr %q; want 1 and the interruption", code, errb.String())
	}
	if n := strings.Count(out.String(), "cancelled"); n != 3 {
		t.Errorf("power on --all interrupted: %d rows say cancelled, want 3:\n%s", n, out.String())
	}
	for name, b := range lab.bmcs {
		if n := b.Sessions(); n != 0 {
			t.Errorf("bmc %s has %d sessions open after the interruption, want 0", name, n)
		}
		if r := b.Stats().Resets; len(r) != 0 {
			t.Errorf("bmc %s was told %v after the interruption, want nothing", name, r)
		}
	}
}
