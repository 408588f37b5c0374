package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
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
				// No reboot evidence on these BMCs: cycled by hand.
				if got := lab.bmcs[n].Stats().Resets; !cmp.Equal(got, []string{"On", "ForceOff", "On"}) {
					return fmt.Errorf("%s resets = %v, want [On ForceOff On]", n, got)
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

// goldenResults are rows of every kind: verified, device-only (IPMI),
// pending in a settings object, legacy read back against a UEFI request,
// virtual media, sent but not verifiable, and failed.
func goldenResults() []bmc.Result {
	uefi := bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.ModeUEFI, FlagsRead: true}
	ipmi := bmc.BootOverride{Device: bmc.BootPXE}
	pending := bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.ModeUEFI, FlagsRead: true, Pending: true}
	legacy := bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.ModeLegacy, FlagsRead: true}
	cd := bmc.BootOverride{Device: bmc.BootCD, Mode: bmc.ModeUEFI, FlagsRead: true}
	media := bmc.Media{Image: "http://10.0.0.1:8080/iso/gpu-06.iso", Inserted: true}
	return []bmc.Result{
		{Node: "gpu-01", BMC: "10.0.1.1:443", Info: bmc.Info{Protocol: "redfish", Vendor: "Contoso", Model: "3500"},
			Power: bmc.PowerOn, Boot: &uefi, Took: 1234 * time.Millisecond},
		{Node: "gpu-02", BMC: "10.0.1.2:623", Info: bmc.Info{Protocol: "ipmi", Vendor: "Supermicro", Model: "X12DPG-QT6"},
			Power: bmc.PowerOff, Boot: &ipmi, Took: 310 * time.Millisecond},
		{Node: "gpu-03", BMC: "10.0.1.3:443", Info: bmc.Info{Protocol: "redfish", Vendor: "ASRockRack", Model: "ROMED8-2T", Quirks: []string{"boot via @Redfish.Settings"}},
			Power: bmc.PowerOff, Boot: &pending, Took: 420 * time.Millisecond},
		{Node: "gpu-04", BMC: "10.0.1.4:443", Info: bmc.Info{Protocol: "redfish", Vendor: "Dell Inc.", Model: "PowerEdge R430", Quirks: []string{"no BootSourceOverrideMode", "no PowerCycle"}},
			Power: bmc.PowerOff, Boot: &legacy, Took: 610 * time.Millisecond,
			Err: &bmc.OpError{Op: "set boot device pxe", Node: "gpu-04", BMC: "10.0.1.4:443", Err: errors.New("asked for a uefi boot but the bmc holds legacy (...): set the boot mode to UEFI in the server's BIOS setup, or boot this node in legacy mode (--legacy; inventory boot.firmware: bios)")}},
		{Node: "gpu-05", BMC: "10.0.1.5:443", Info: bmc.Info{Protocol: "redfish", Vendor: "Contoso", Model: "2100"},
			Power: bmc.PowerOn, Took: 95 * time.Millisecond,
			Unverified: "reset sent, not verifiable: the bmc reports no LastResetTime or BootProgress, so a restart cannot be observed"},
		{Node: "gpu-06", BMC: "10.0.1.6:443", Info: bmc.Info{Protocol: "redfish", Vendor: "Contoso", Model: "3500"},
			Power: bmc.PowerOff, Boot: &cd, Media: &media, Took: 880 * time.Millisecond},
		{Node: "gpu-07", BMC: "10.0.1.7:443", Took: 5 * time.Second,
			Err: &bmc.OpError{Op: "set boot device pxe", Node: "gpu-07", BMC: "10.0.1.7:443", Err: errors.New("connect: no answer within 5s")}},
	}
}

func TestPowerTableGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := writeBMCTable(&buf, goldenResults(), columns{boot: true, media: true}); err != nil {
		t.Fatal(err)
	}
	goldenfile.Check(t, filepath.Join("testdata", "power-table.golden"), buf.Bytes())
	buf.Reset()
	if err := writeBMCJSON(&buf, goldenResults(), 2500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	goldenfile.Check(t, filepath.Join("testdata", "power-json.golden"), buf.Bytes())
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
	// Reset on a node that is off: the same message as over Redfish, and
	// nothing sent.
	code, out, _ = runCLI(t, "power", "reset", "vm1", "-f", inv)
	if code != exitFailure || !strings.Contains(out, "error: power reset: the node is powered off: reset restarts a running node; use power on (or power cycle, which turns an off node on)") {
		t.Errorf("power reset on an off IPMI node = %d:\n%s", code, out)
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

// TestPowerInterruptCountsOnlyInterrupted: after Ctrl-C the summary says
// how many nodes the interruption left undone, not how many failed: n3
// had already failed on its own (credentials refused) and is not counted.
func TestPowerInterruptCountsOnlyInterrupted(t *testing.T) {
	lab := newPowerLab(t)
	lab.bmcs["n1"].SetFaults(redfishsim.Faults{Hang: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// --parallel 1 in the order given: n3 has finished once n1 is asked.
		for lab.bmcs["n1"].Stats().Requests == 0 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"power", "on", "n3", "n1", "n2", "--parallel", "1", "--connect-timeout", "2s", "-f", lab.inv}, &out, &errb)
	if code != exitFailure || !strings.Contains(errb.String(), "interrupted: 2 of 3 node(s) not done") {
		t.Errorf("power on n3 n1 n2 interrupted = %d, stderr %q; want 1 and 2 of 3 not done\n%s", code, errb.String(), out.String())
	}
	if !strings.Contains(out.String(), "credentials refused") {
		t.Errorf("n3's own failure is not in the table:\n%s", out.String())
	}
}

// profileLab is an inventory of one node per vendor profile of the Redfish
// simulator, with the delays shortened.
func profileLab(t *testing.T, profiles ...string) (inv string, bmcs map[string]*redfishsim.BMC) {
	t.Helper()
	sim, err := redfishsim.New(redfishsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	dir := t.TempDir()
	pw := filepath.Join(dir, "bmc-password")
	if err := os.WriteFile(pw, []byte("lab-Pa55\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bmcs = map[string]*redfishsim.BMC{}
	var nodes strings.Builder
	for i, name := range profiles {
		p, ok := redfishsim.LookupProfile(name)
		if !ok {
			t.Fatalf("no profile %s", name)
		}
		cfg := p.Config
		cfg.Name, cfg.Password = name, "lab-Pa55"
		if cfg.BootApplyDelay > 0 {
			cfg.BootApplyDelay = 300 * time.Millisecond
		}
		if cfg.TransitionDelay > 0 {
			cfg.TransitionDelay = 100 * time.Millisecond
		}
		if name == "idrac8" {
			cfg.Model = "PowerEdge R430" // not in the quirk table: learned from the 400
		}
		b, err := sim.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		bmcs[name] = b
		role := "worker"
		if i == 0 {
			role = "control-plane"
		}
		fmt.Fprintf(&nodes, "  - {name: %s, profile: p, role: %s, mac: \"52:54:00:00:01:%02x\", ip: 127.0.1.%d, bmc: {url: \"%s\"}}\n", name, role, i+1, i+1, b.URL())
	}
	y := fmt.Sprintf(`apiVersion: slipway.dev/v1alpha1
kind: Inventory
cluster: {name: t, kubernetesVersion: v1.37.2}
network:
  provisioner: {interface: lo, address: 127.0.0.1}
  subnet: 127.0.0.0/8
profiles:
  p:
    boot: {firmware: uefi, kernel: vmlinuz, initrd: initrd.gz}
    bmc: {username: admin, password: "file:%s"}
nodes:
%s`, pw, nodes.String())
	inv = filepath.Join(dir, "inv.yaml")
	if err := os.WriteFile(inv, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return inv, bmcs
}

// TestBootdevProfilesJSON: bootdev pxe -o json on a rack of vendor
// profiles reports, per node, what each BMC holds, and fails the node
// whose BMC holds Legacy when UEFI was asked.
func TestBootdevProfilesJSON(t *testing.T) {
	inv, bmcs := profileLab(t, "generic", "ilo5", "idrac8", "megarac", "openbmc")
	code, out, errOut := runCLI(t, "bootdev", "pxe", "--all", "-o", "json", "-f", inv, "--verify-timeout", "5s")
	if code != exitFailure {
		t.Errorf("bootdev pxe --all = %d, want 1 (idrac8 holds legacy); stderr:\n%s", code, errOut)
	}
	var got struct {
		Nodes []struct {
			Node   string
			Result string
			Error  string
			Boot   struct {
				Device     string
				Persistent *bool
				Mode       string
				Pending    bool
			}
		}
		OK, Failed int
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("bootdev -o json printed no JSON: %v\n%s", err, out)
	}
	if got.OK != 4 || got.Failed != 1 {
		t.Errorf("bootdev -o json: ok %d failed %d, want 4 and 1:\n%s", got.OK, got.Failed, out)
	}
	for _, n := range got.Nodes {
		b := bmcs[n.Node]
		held, pending := b.PendingSettings()
		if !pending {
			held = b.Boot()
		}
		wantMode := strings.ToLower(held.Mode)
		if n.Boot.Device != "pxe" || n.Boot.Mode != wantMode || n.Boot.Pending != pending || n.Boot.Persistent == nil || *n.Boot.Persistent {
			t.Errorf("%s: JSON boot %+v, the BMC holds %+v (pending %v)", n.Node, n.Boot, held, pending)
		}
		if wantFail := n.Node == "idrac8"; wantFail != (n.Result == "failed") {
			t.Errorf("%s: result %s (%s)", n.Node, n.Result, n.Error)
		}
	}
	for name, b := range bmcs {
		if b.Sessions() != 0 {
			t.Errorf("%s: %d sessions open after bootdev", name, b.Sessions())
		}
	}
}

// TestPowerResetTruth: reset on running nodes says ok only with evidence,
// "sent, not verifiable" without, fails on the lying BMC; on nodes that are
// off it fails with one message and sends nothing.
func TestPowerResetTruth(t *testing.T) {
	inv, bmcs := profileLab(t, "generic", "lazy", "minimal")
	code, out, _ := runCLI(t, "power", "reset", "--all", "-f", inv, "--verify-timeout", "3s")
	t.Logf("power reset on nodes that are off:\n%s", out)
	if code != exitFailure || strings.Count(out, "error: power reset: the node is powered off: reset restarts a running node; use power on (or power cycle, which turns an off node on)") != 3 {
		t.Errorf("power reset --all on nodes that are off = %d:\n%s", code, out)
	}
	for name, b := range bmcs {
		if r := b.Stats().Resets; len(r) != 0 {
			t.Errorf("%s was sent %v for a reset while off, want nothing", name, r)
		}
		b.SetPowerState(true)
	}
	code, out, _ = runCLI(t, "power", "reset", "--all", "-f", inv, "--verify-timeout", "3s")
	t.Logf("power reset on running nodes:\n%s", out)
	for _, want := range []string{
		"generic  127.0.0.1:", " ok\n",
		"sent, not verifiable: the bmc reports no LastResetTime or BootProgress",
		"error: power reset: bmc accepted ForceRestart but shows no restart after 3s",
		"3 node(s) in ", ": 1 ok, 1 sent but not verifiable, 1 failed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("power reset --all output lacks %q:\n%s", want, out)
		}
	}
	if code != exitFailure {
		t.Errorf("power reset --all = %d, want 1 (the lying BMC)", code)
	}
}

// TestBootdevCD inserts an image served on loopback into the virtual CD
// and sets a one-time CD boot; the rows show the media and the override
// read back, and the host boots the image.
func TestBootdevCD(t *testing.T) {
	inv, bmcs := profileLab(t, "generic")
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("iso")) }))
	defer img.Close()
	url := img.URL + "/generic.iso"
	code, out, errOut := runCLI(t, "bootdev", "cd", "--media", url, "generic", "-f", inv)
	if code != exitOK || !strings.Contains(out, "cd once uefi  "+url) {
		t.Errorf("bootdev cd --media = %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "power", "on", "generic", "-f", inv); code != exitOK {
		t.Errorf("power on = %d\n%s", code, out)
	}
	if diff := cmp.Diff([]redfishsim.Booted{{Device: "Cd", Mode: "UEFI", Media: url}}, bmcs["generic"].Booted()); diff != "" {
		t.Errorf("what the host booted (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bootdev", "cd", "generic"}, "bootdev cd needs --media URL"},
		{[]string{"bootdev", "pxe", "--media", url, "generic"}, "--media goes with bootdev cd, not pxe"},
		{[]string{"bootdev", "cd", "--media", "nfs://x/y.iso", "generic"}, `--media "nfs://x/y.iso": want an http:// or https:// URL`},
		{[]string{"power", "status", "-o", "yaml", "generic"}, `--output "yaml": want table or json`},
	} {
		code, _, errOut := runCLI(t, append(tc.args, "-f", inv)...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s = %d, stderr %q; want %d and %q", strings.Join(tc.args, " "), code, errOut, exitUsage, tc.want)
		}
	}
}

// TestPowerSIGINT sends a real SIGINT (Ctrl-C) to the provisioner process
// in the middle of "bootdev pxe --all" on BMCs that apply the override
// late and answer slowly: the process exits 1 saying it was interrupted,
// and every Redfish session it opened is closed, on every vendor profile.
func TestPowerSIGINT(t *testing.T) {
	if args := os.Getenv("SLIPWAY_TEST_PROVISIONER_ARGS"); args != "" {
		// The child: be the provisioner.
		os.Args = append([]string{"provisioner"}, strings.Split(args, "\x1f")...)
		main()
		return
	}
	names := []string{}
	for _, p := range redfishsim.Profiles() {
		names = append(names, p.Name)
	}
	for _, phase := range []string{"logging in", "reading back"} {
		t.Run(phase, func(t *testing.T) {
			inv, bmcs := profileLab(t, names...)
			for _, b := range bmcs {
				b.SetFaults(redfishsim.Faults{Latency: 150 * time.Millisecond})
			}
			// ready says when to interrupt: once some BMCs hold a session,
			// or once iLO 5 accepted its override and is being polled.
			ready := func() bool {
				open := 0
				for _, b := range bmcs {
					open += b.Sessions()
				}
				return open >= 3
			}
			if phase == "reading back" {
				ready = func() bool { return bmcs["ilo5"].Stats().BootPatches > 0 }
			}
			args := []string{"bootdev", "pxe", "--all", "-f", inv, "--verify-timeout", "30s"}
			cmd := exec.Command(os.Args[0], "-test.run=^TestPowerSIGINT$")
			cmd.Env = append(os.Environ(), "SLIPWAY_TEST_PROVISIONER_ARGS="+strings.Join(args, "\x1f"))
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// The interrupt must land where this case says it does: a run
			// that never got there (or already ended) proves nothing.
			deadline := time.Now().Add(time.Minute)
			for !ready() {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("the provisioner was not %s within a minute; output:\n%s%s", phase, out.String(), errb.String())
				}
				time.Sleep(5 * time.Millisecond)
			}
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			t.Logf("provisioner output after SIGINT while %s:\n%s%s", phase, out.String(), errb.String())
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
				t.Errorf("provisioner after SIGINT: %v, want exit status %d", err, exitFailure)
			}
			if !strings.Contains(errb.String(), "interrupted:") {
				t.Errorf("stderr after SIGINT = %q, want it to say interrupted", errb.String())
			}
			for name, b := range bmcs {
				st := b.Stats()
				if b.Sessions() != 0 || st.Logins != st.Logouts {
					t.Errorf("%s after SIGINT: %d sessions open, %d logins, %d logouts; want every session closed", name, b.Sessions(), st.Logins, st.Logouts)
				}
			}
		})
	}
}
