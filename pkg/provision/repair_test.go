package provision

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRepairJournal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	var b []byte
	b = encodeRecord(b, Record{Time: at(1), Node: "cp", Phase: PhasePoweringOn, Attempt: 1})
	b = encodeRecord(b, Record{Time: at(2), Node: "w1", Phase: PhaseWaitingDHCP, Attempt: 1})
	b = encodeRecord(b, Record{Time: at(3), Node: "cp", Phase: PhaseConfigFetched, Attempt: 1})
	good := encodeRecord(nil, Record{Time: at(4), Node: "w2", Phase: PhaseNetbooting, Attempt: 1})
	b = append(b, bytes.Replace(good, []byte(`"w2"`), []byte(`"w9"`), 1)...) // checksum no longer matches
	b = encodeRecord(b, Record{Time: at(5), Node: "cp", Phase: PhaseJoining, Attempt: 1})
	path := filepath.Join(dir, JournalFile)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadJournal(path); err == nil || !strings.Contains(err.Error(), "provisioner journal repair --state-dir "+dir) {
		t.Fatalf("ReadJournal(damaged) = %v, want an error pointing at journal repair", err)
	}
	rep, err := RepairJournal(dir, nil)
	if err != nil {
		t.Fatalf("RepairJournal: %v", err)
	}
	if diff := cmp.Diff([]int{4}, rep.Damaged); diff != "" {
		t.Errorf("Damaged (-want +got):\n%s", diff)
	}
	// w1 was waiting for DHCP before the damaged line: it may have booted.
	// The damaged line still names w9 (the damage is in its name: it was
	// w2's), whose only record it was.
	if diff := cmp.Diff([]string{"w1", "w9"}, rep.Uncertain); diff != "" {
		t.Errorf("Uncertain (-want +got):\n%s", diff)
	}
	st, err := ReadJournal(path)
	if err != nil {
		t.Fatalf("ReadJournal after repair: %v", err)
	}
	want := map[string]Phase{"cp": PhaseJoining, "w1": PhaseWaitingDHCP}
	got := map[string]Phase{}
	for n, r := range st.Nodes {
		got[n] = r.Phase
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("journal after repair (-want +got):\n%s", diff)
	}
	if saved, err := os.ReadFile(rep.Backup); err != nil || !bytes.Equal(saved, b) {
		t.Errorf("backup %s: %v; want the damaged journal byte for byte", rep.Backup, err)
	}
	if fi, err := os.Stat(rep.Backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	// An intact journal is left alone.
	again, err := RepairJournal(dir, nil)
	if err != nil || len(again.Damaged) != 0 || again.Backup != "" {
		t.Errorf("RepairJournal(intact) = %+v, %v; want nothing done", again, err)
	}
}

func TestRepairJournalRefusesWhileHeld(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, JournalFile), encodeRecord(nil, Record{Time: t0, Node: "n", Phase: PhaseReady}), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := LockStateDir(dir, "provisioner up")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if h, held, err := Held(dir); err != nil || !held || h.Command != "provisioner up" {
		t.Errorf("Held while locked = %+v, %v, %v; want held by provisioner up", h, held, err)
	}
	if _, err := RepairJournal(dir, nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("RepairJournal while up runs = %v, want the state directory in use", err)
	}
	l.Unlock()
	if _, held, err := Held(dir); err != nil || held {
		t.Errorf("Held after Unlock = %v, %v; want not held", held, err)
	}
}

func TestRepairJournalMissing(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nowhere")
	if _, err := RepairJournal(dir, nil); err == nil || !strings.Contains(err.Error(), "no journal in "+dir) {
		t.Errorf("RepairJournal(missing dir) = %v, want no journal", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("RepairJournal created %s (%v), want it left alone", dir, err)
	}
}

// TestRepairJournalLostRecords: records lost in damaged lines may have
// taken a node past netboot, and repair must say which nodes those may be.
// A compacted journal holds one record per node, so a damaged line there
// is a Ready node's only record: dropping it silently would let the next
// up power-cycle that node.
func TestRepairJournalLostRecords(t *testing.T) {
	t.Parallel()
	rec := func(node string, p Phase) []byte {
		return encodeRecord(nil, Record{Time: t0, Node: node, Phase: p, Attempt: 1})
	}
	// corrupt breaks a record's checksum but keeps its JSON readable.
	corrupt := func(b []byte) []byte {
		b = bytes.Clone(b)
		i := bytes.Index(b, []byte(`"t":`)) + 5
		b[i] ^= 1
		return b
	}
	garbage := []byte("\x00\x00\x00 torn beyond reading\n")
	tests := []struct {
		name          string
		lines         [][]byte
		inventory     []string
		wantNodes     []string
		wantUncertain []string
		wantUnattr    int
	}{
		{
			name:          "compacted, a ready node's only record damaged",
			lines:         [][]byte{rec("cp", PhaseReady), corrupt(rec("w1", PhaseReady)), rec("w2", PhaseReady)},
			wantNodes:     []string{"cp", "w2"},
			wantUncertain: []string{"w1"},
		},
		{
			name:          "compacted, a line torn beyond reading, no inventory",
			lines:         [][]byte{rec("cp", PhaseReady), garbage, rec("w2", PhaseReady)},
			wantNodes:     []string{"cp", "w2"},
			wantUncertain: []string{},
			wantUnattr:    1,
		},
		{
			name:          "compacted, a line torn beyond reading, inventory given",
			lines:         [][]byte{rec("cp", PhaseReady), garbage, rec("w2", PhaseReady)},
			inventory:     []string{"cp", "w1", "w2"},
			wantNodes:     []string{"cp", "w2"},
			wantUncertain: []string{"w1"},
			wantUnattr:    1,
		},
		{
			name:          "a name damaged into one the inventory does not know",
			lines:         [][]byte{rec("cp", PhaseReady), corrupt(bytes.Replace(rec("w1", PhaseReady), []byte(`"w1"`), []byte(`"w\u0031x"`), 1)), rec("w2", PhaseReady)},
			inventory:     []string{"cp", "w1", "w2"},
			wantNodes:     []string{"cp", "w2"},
			wantUncertain: []string{"w1"},
			wantUnattr:    1,
		},
		{
			name: "three lost records can take a powered-off node past netboot",
			lines: [][]byte{rec("w1", PhasePoweringOff), rec("w2", PhaseSettingBoot), rec("w3", PhaseFailed),
				garbage, garbage, garbage, rec("cp", PhaseJoining)},
			wantNodes:     []string{"cp", "w1", "w2", "w3"},
			wantUncertain: []string{"w1", "w2"},
			wantUnattr:    3,
		},
		{
			name:          "one lost record cannot",
			lines:         [][]byte{rec("w1", PhasePoweringOff), rec("w2", PhaseSettingBoot), rec("w4", PhaseNetbooting), garbage, rec("cp", PhaseJoining)},
			wantNodes:     []string{"cp", "w1", "w2", "w4"},
			wantUncertain: []string{"w4"},
			wantUnattr:    1,
		},
		{
			// A lost newline: one damaged line holds two records, which
			// may be two steps of w2 as well as of w1.
			name:          "two records run together on one line",
			lines:         [][]byte{rec("w2", PhaseSettingBoot), bytes.TrimSuffix(corrupt(rec("w1", PhasePoweringOn)), []byte("\n")), rec("w1", PhaseWaitingDHCP)},
			wantNodes:     []string{"w2"},
			wantUncertain: []string{"w1", "w2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, JournalFile), bytes.Join(tt.lines, nil), 0o600); err != nil {
				t.Fatal(err)
			}
			rep, err := RepairJournal(dir, tt.inventory)
			if err != nil {
				t.Fatalf("RepairJournal: %v", err)
			}
			var nodes []string
			for n := range rep.Nodes {
				nodes = append(nodes, n)
			}
			sortStrings(nodes)
			if diff := cmp.Diff(tt.wantNodes, nodes); diff != "" {
				t.Errorf("nodes kept (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantUncertain, rep.Uncertain); diff != "" {
				t.Errorf("Uncertain (-want +got):\n%s", diff)
			}
			if rep.Unattributed != tt.wantUnattr {
				t.Errorf("Unattributed = %d, want %d", rep.Unattributed, tt.wantUnattr)
			}
		})
	}
}
