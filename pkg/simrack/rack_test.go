package simrack_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/internal/servetest"
	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/phonehome"
	"github.com/slipway-dev/slipway/pkg/pxe"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
	"github.com/slipway-dev/slipway/pkg/pxe/httpboot"
	"github.com/slipway-dev/slipway/pkg/simrack"
)

// reportConfig is a node config in the shape the simulated OS runs: it
// reports the join step to the boot server, posting body (with $1 the step
// and $2 the status).
func reportConfig(base, body string) httpboot.Renderer {
	return httpboot.RendererFunc(func(_ context.Context, n inventory.Node) ([]byte, error) {
		return fmt.Appendf(nil, "#!/bin/sh\nPHONE_HOME=%s\nreport() { wget -q -O /dev/null --post-data \"%s\" \"$PHONE_HOME\"; }\n"+
			"report %s started || true\nuntil report %s ok; do sleep 1; done\n",
			phonehome.URL(base, n.Name), body, phonehome.StepKubeadmJoin, phonehome.StepKubeadmJoin), nil
	})
}

// TestMachinesBootFromTheBootServices powers the simulated machines on
// through their Redfish simulators with pkg/bmc, as up does: the healthy
// ones (UEFI and BIOS) go through real DHCP via the relay, TFTP and HTTP,
// fetch their node config and report their join, which the boot services
// see as phone-homes; the one with FaultNoPXE never asks for DHCP.
func TestMachinesBootFromTheBootServices(t *testing.T) {
	w, err := simrack.NewWorld(simrack.WorldConfig{Dir: t.TempDir(), Nodes: 4, Firmware: 20 * time.Millisecond, OS: 30 * time.Millisecond,
		Faults: map[string]simrack.Fault{"node-0003": simrack.FaultNoPXE}, Seed: 1})
	if err != nil {
		t.Fatalf("NewWorld: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	pcfg := pxe.Config{Inventory: w.Inventory, TFTPRoot: w.TFTPRoot, AssetDir: w.AssetDir, SkipInterfaceCheck: true, Listeners: w.Listeners}
	base, err := pcfg.BaseURL()
	if err != nil {
		t.Fatal(err)
	}
	pcfg.Renderer = reportConfig(base, phonehome.ShellBody)
	svc, err := pxe.New(pcfg)
	if err != nil {
		t.Fatalf("pxe.New: %v", err)
	}
	events, unsubscribe := svc.Bus().Subscribe(4096)
	defer unsubscribe()
	servetest.Start(t, svc)
	servetest.Start(t, w.Rack)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for _, n := range w.Inventory.Nodes {
		c, err := bmc.New(n.Name, n.BMC, bmc.Config{Backoff: []time.Duration{20 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{Legacy: n.Boot.Firmware == inventory.FirmwareBIOS}); err != nil {
			t.Fatalf("set pxe boot on %s: %v", n.Name, err)
		}
		if err := c.SetPower(ctx, bmc.ActionOn); err != nil {
			t.Fatalf("power on %s: %v", n.Name, err)
		}
		c.Close(ctx)
	}
	// What the boot services saw: a join report from each healthy node.
	joined := map[string]bool{}
	for len(joined) < 3 {
		select {
		case e := <-events:
			if e.Kind != bootevent.PhoneHome {
				continue
			}
			if r, err := phonehome.Parse(e.Detail); err == nil && r.Joined() {
				joined[e.Node] = true
			}
		case <-ctx.Done():
			t.Fatalf("join reports from %v only; machines: %+v", joined, w.Rack.Stats())
		}
	}
	// The machines mark themselves joined once the answer arrives, just
	// after the boot services published the report.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		n := 0
		for _, s := range w.Rack.Stats() {
			if s.Joined {
				n++
			}
		}
		if n == 3 {
			break
		}
	}
	for _, s := range w.Rack.Stats() {
		if s.Node != "node-0003" && (s.Stage != "joined" || !s.Joined || s.Took <= 0) {
			t.Errorf("machine %s: stage %q joined %v took %s, want joined", s.Node, s.Stage, s.Joined, s.Took)
		}
		if s.Node == "node-0003" && (s.Stage != "no network boot (fault)" || joined[s.Node]) {
			t.Errorf("machine node-0003: stage %q, joined %v; want the fault and no join", s.Stage, joined[s.Node])
		}
	}
	if got := w.Rack.Boots(); got != 4 {
		t.Errorf("Boots() = %d, want 4 network boots started", got)
	}
}

// TestMachineWithoutReportsInItsConfig checks the simulated OS does what a
// real node would with a config that reports nothing: it never joins.
func TestMachineWithoutReportsInItsConfig(t *testing.T) {
	w, err := simrack.NewWorld(simrack.WorldConfig{Dir: t.TempDir(), Nodes: 1, Firmware: 10 * time.Millisecond, OS: 10 * time.Millisecond, Seed: 1})
	if err != nil {
		t.Fatalf("NewWorld: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	svc, err := pxe.New(pxe.Config{Inventory: w.Inventory, TFTPRoot: w.TFTPRoot, AssetDir: w.AssetDir, SkipInterfaceCheck: true, Listeners: w.Listeners})
	if err != nil {
		t.Fatalf("pxe.New: %v", err)
	}
	servetest.Start(t, svc)
	servetest.Start(t, w.Rack)
	n := w.Inventory.Nodes[0]
	c, err := bmc.New(n.Name, n.BMC, bmc.Config{Backoff: []time.Duration{20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPower(ctx, bmc.ActionOn); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := w.Rack.Stats()[0]
		if s.Stage == "stopped at run node config" {
			break
		}
		if s.Joined || time.Now().After(deadline) {
			t.Fatalf("machine %+v, want it stopped at its node config (the boot server's placeholder reports no step)", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMachineSendsWhatItsReportFunctionPosts: the simulated OS posts the
// body its node config's report function builds, as the shell would; a
// config whose report function does not speak the phone-home format never
// gets its node joined (the simulation used to send well-formed reports
// whatever the config said).
func TestMachineSendsWhatItsReportFunctionPosts(t *testing.T) {
	w, err := simrack.NewWorld(simrack.WorldConfig{Dir: t.TempDir(), Nodes: 1, Firmware: 10 * time.Millisecond, OS: 10 * time.Millisecond, Seed: 1})
	if err != nil {
		t.Fatalf("NewWorld: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	pcfg := pxe.Config{Inventory: w.Inventory, TFTPRoot: w.TFTPRoot, AssetDir: w.AssetDir, SkipInterfaceCheck: true, Listeners: w.Listeners}
	base, err := pcfg.BaseURL()
	if err != nil {
		t.Fatal(err)
	}
	pcfg.Renderer = reportConfig(base, "$1 $2") // not step=... status=...
	svc, err := pxe.New(pcfg)
	if err != nil {
		t.Fatalf("pxe.New: %v", err)
	}
	events, unsubscribe := svc.Bus().Subscribe(4096)
	defer unsubscribe()
	servetest.Start(t, svc)
	servetest.Start(t, w.Rack)
	n := w.Inventory.Nodes[0]
	c, err := bmc.New(n.Name, n.BMC, bmc.Config{Backoff: []time.Duration{20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPower(ctx, bmc.ActionOn); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	var got []string
	for len(got) < 2 {
		select {
		case e := <-events:
			if e.Kind == bootevent.PhoneHome {
				got = append(got, e.Detail)
			}
		case <-ctx.Done():
			t.Fatalf("phone-homes seen: %q; machine: %+v", got, w.Rack.Stats()[0])
		}
	}
	if diff := cmp.Diff([]string{"kubeadm-join started", "kubeadm-join ok"}, got); diff != "" {
		t.Errorf("phone-home bodies (-want +got):\n%s", diff)
	}
	for _, body := range got {
		if r, err := phonehome.Parse(body); err == nil && r.Joined() {
			t.Errorf("phonehome.Parse(%q) = %v, a join: want no join from this config", body, r)
		}
	}
	if s := w.Rack.Stats()[0]; s.Joined {
		t.Errorf("machine %+v counts itself joined, want not", s)
	}
}

func TestParseFault(t *testing.T) {
	t.Parallel()
	if _, err := simrack.ParseFault("explode"); err == nil {
		t.Error(`ParseFault("explode") = nil error, want one naming the faults`)
	}
	if f, err := simrack.ParseFault("hang-os"); err != nil || f != simrack.FaultHangOS {
		t.Errorf(`ParseFault("hang-os") = %q, %v; want FaultHangOS`, f, err)
	}
}
