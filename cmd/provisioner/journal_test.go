package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/provision"
)

// TestJournalRepairNamesLostNodes: after a compaction the journal holds one
// line per node, so a line torn beyond reading is a Ready node's only
// record. repair must not drop it in silence (up would power-cycle that
// node): without -f it says a node is missing, with -f it names it.
func TestJournalRepairNamesLostNodes(t *testing.T) {
	state := t.TempDir()
	j, _, err := provision.OpenJournal(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	const invPath = "../../inventory/rack-gpu.yaml"
	inv, err := inventory.Load(invPath)
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string]provision.Record{}
	for _, n := range inv.Enabled() {
		recs[n.Name] = provision.Record{Time: at, Node: n.Name, Phase: provision.PhaseReady, Attempt: 1}
	}
	if err := j.Compact(recs); err != nil {
		t.Fatal(err)
	}
	j.Close()
	path := filepath.Join(state, provision.JournalFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	// Sorted by name: cp01, cp02, cp03, fpga01, fpga02, gpu01, ...
	if !bytes.Contains(lines[5], []byte(`"gpu01"`)) {
		t.Fatalf("journal line 6 = %q, want gpu01's record", lines[5])
	}
	lines[5] = []byte("\x00\x00 a sector of zeros and noise\n") // gpu01's only record
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	damaged := bytes.Join(lines, nil)

	code, stdout, stderr := runCLI(t, "journal", "repair", "--state-dir", state)
	if code != exitOK {
		t.Fatalf("journal repair exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "1 damaged records name no node") || !strings.Contains(stdout, "status -f") {
		t.Errorf("journal repair without -f:\n%s\nwant it to say one damaged record names no node and how to find it", stdout)
	}

	// Again from the damaged journal, with the inventory: gpu01 is named.
	if err := os.WriteFile(path, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runCLI(t, "journal", "repair", "--state-dir", state, "-f", invPath)
	if code != exitOK {
		t.Fatalf("journal repair -f exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "check before up: a lost line may have said gpu01 booted") {
		t.Errorf("journal repair -f:\n%s\nwant gpu01 named as a node to check before up", stdout)
	}
}
