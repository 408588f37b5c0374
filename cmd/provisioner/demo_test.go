package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/provision"
)

// demoRun runs the provisioner CLI in-process and returns the exit code,
// stdout and stderr.
func demoRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	code := run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

// lastReport decodes the JSON stream `-o json` writes (one object per
// update, then the report) and returns the report.
func lastReport(t *testing.T, stdout string) (provision.Report, int) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	var last json.RawMessage
	updates := 0
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode -o json output: %v", err)
		}
		if last != nil {
			updates++
		}
		last = raw
	}
	var rep provision.Report
	if err := json.Unmarshal(last, &rep); err != nil || len(rep.Nodes) == 0 {
		t.Fatalf("last JSON value is not a report (%v): %.300s", err, last)
	}
	return rep, updates
}

// TestDemoRackWithInjectedFailures runs the real up path (redfishsim BMCs
// through pkg/bmc, the boot services, DHCP through a relay, TFTP, HTTP)
// against 50 simulated nodes, three with injected failures, and checks where
// every node ends, in the report and in the journal.
func TestDemoRackWithInjectedFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("boots 50 simulated nodes")
	}
	state := t.TempDir()
	code, stdout, stderr := demoRun(t, "demo", "--nodes", "50", "--control-planes", "3", "--state-dir", state,
		"--boot-firmware", "100ms", "--boot-os", "200ms", "--attempts", "2", "--seed", "7", "-o", "json",
		// The faults are found by these two timeouts; the others scale.
		"--dhcp-timeout", "5s", "--join-timeout", "10s",
		"--fail", "node-0010=no-pxe", "--fail", "node-0020=hang-os", "--fail", "node-0030=dead-bmc")
	if code != exitFailure {
		t.Fatalf("demo exit code %d, want %d (three nodes fail)\nstderr:\n%s", code, exitFailure, stderr)
	}
	rep, updates := lastReport(t, stdout)
	want := map[string]provision.Phase{}
	for i := range 50 {
		name := fmt.Sprintf("node-%04d", i+1)
		if i < 3 {
			name = fmt.Sprintf("cp-%d", i+1)
		}
		want[name] = provision.PhaseReady
	}
	want["node-0010"], want["node-0020"], want["node-0030"] = provision.PhaseFailed, provision.PhaseFailed, provision.PhaseFailed
	got := map[string]provision.Phase{}
	reasons := map[string]string{}
	for _, n := range rep.Nodes {
		got[n.Node] = n.Phase
		reasons[n.Node] = n.Reason
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("final phases (-want +got):\n%s\nstderr:\n%s", diff, stderr)
	}
	for node, frag := range map[string]string{"node-0010": "no DHCP request", "node-0020": "reported no join", "node-0030": "503"} {
		if !strings.Contains(reasons[node], frag) {
			t.Errorf("%s failed with %q, want a reason mentioning %q", node, reasons[node], frag)
		}
	}
	if updates < 50*8 {
		t.Errorf("-o json wrote %d progress updates for 50 nodes, want at least 8 per node", updates)
	}

	// status reads the same outcome back from the journal, and says that
	// nothing runs any more.
	code, stdout, stderr = demoRun(t, "status", "--state-dir", state, "-o", "json")
	if code != 0 {
		t.Fatalf("status exit %d: %s", code, stderr)
	}
	var st statusJSON
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("status -o json: %v", err)
	}
	if st.Running || st.Holder != nil {
		t.Errorf("status after the demo ended: running %v, holder %v; want not running", st.Running, st.Holder)
	}
	fromJournal := map[string]provision.Phase{}
	for n, r := range st.Nodes {
		fromJournal[n] = r.Phase
	}
	if diff := cmp.Diff(want, fromJournal); diff != "" {
		t.Errorf("status from the journal (-want +got):\n%s", diff)
	}
}

func TestDemoUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"demo", "--nodes", "0"},
		{"demo", "--fail", "node-0001=explode"},
		{"demo", "--control-planes", "5", "--nodes", "2"},
		{"demo", "-o", "yaml"},
		{"up", "-o", "yaml"},
		{"plan", "-o", "yaml", "-f", "x"},
	} {
		code, _, stderr := demoRun(t, args...)
		if code != exitUsage {
			t.Errorf("provisioner %s: exit %d, want %d (usage); stderr %q", strings.Join(args, " "), code, exitUsage, stderr)
		}
	}
}

// BenchmarkDemo1000 runs `demo --nodes 1000` (early netboot, one
// control-plane node) and reports the wall time against its peer, the
// slowest simulated node's own boot time (firmware + OS). With the control
// plane first the floor is above 1: a worker's config waits for the
// control plane, so the part of its boot after the config fetch (2/3 of
// its OS time) comes after the control plane's whole boot, about 1.4 here.
// It also reports the process CPU per node and the peak RSS; both include
// the simulated rack (1000 Redfish servers, machines, TFTP clients), which
// runs in the same process.
func BenchmarkDemo1000(b *testing.B) {
	const nodes = 1000
	var fg demoFigures
	for b.Loop() {
		g := &globals{stdout: io.Discard, stderr: io.Discard, stateDir: b.TempDir(), logLevel: "error"}
		f := &provisionFlags{output: "plain", parallel: nodes, attempts: 3, earlyNetboot: true,
			timeouts: provision.Timeouts{BMC: 30 * time.Second}}
		d := &demoFlags{nodes: nodes, controlPlanes: 1, firmware: 1500 * time.Millisecond, osBoot: 2500 * time.Millisecond, seed: 1, figures: &fg}
		if err := runDemo(b.Context(), g, f, d); err != nil {
			b.Fatalf("demo --nodes %d: %v", nodes, err)
		}
		if fg.Ready != nodes {
			b.Fatalf("demo --nodes %d: %d ready", nodes, fg.Ready)
		}
	}
	perNode := fg.CPU / nodes
	b.ReportMetric(fg.Wall.Seconds(), "wall-s")
	b.ReportMetric(fg.Slowest.Seconds(), "slowest-boot-s")
	b.ReportMetric(fg.Wall.Seconds()/fg.Slowest.Seconds(), "wall/slowest-boot")
	b.ReportMetric(float64(perNode.Microseconds())/1000, "cpu-ms/node")
	b.ReportMetric(float64(fg.MaxRSS>>20), "peak-rss-MiB")
	b.ReportMetric(fg.SlowestTook.Seconds(), "slowest-took-s")
	b.Logf("demo --nodes %d: wall %s, slowest simulated boot %s, ratio %.2f (target 1.5, floor about 1.4); slowest node power-on to join %s (the simulation slows down when the CPUs are busy); CPU %s/node (whole process, rack included; target 2ms for the provisioner); peak RSS %d MiB (whole process; target 200)",
		nodes, fg.Wall.Round(time.Millisecond), fg.Slowest.Round(time.Millisecond), fg.Wall.Seconds()/fg.Slowest.Seconds(), fg.SlowestTook.Round(time.Millisecond), perNode, fg.MaxRSS>>20)
}
