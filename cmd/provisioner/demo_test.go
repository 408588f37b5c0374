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
