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
	rep, err := RepairJournal(dir)
	if err != nil {
		t.Fatalf("RepairJournal: %v", err)
	}
	if diff := cmp.Diff([]int{4}, rep.Damaged); diff != "" {
		t.Errorf("Damaged (-want +got):\n%s", diff)
	}
	// w1 was waiting for DHCP before the damaged line: it may have booted.
	if diff := cmp.Diff([]string{"w1"}, rep.Uncertain); diff != "" {
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
	again, err := RepairJournal(dir)
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
	if _, err := RepairJournal(dir); err == nil || !strings.Contains(err.Error(), "in use") {
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
	if _, err := RepairJournal(dir); err == nil || !strings.Contains(err.Error(), "no journal in "+dir) {
		t.Errorf("RepairJournal(missing dir) = %v, want no journal", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("RepairJournal created %s (%v), want it left alone", dir, err)
	}
}
