package provision_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/provision"
)

func writeJournal(t *testing.T, recs ...provision.Record) string {
	t.Helper()
	dir := t.TempDir()
	j, _, err := provision.OpenJournal(dir, nil)
	if err != nil {
		t.Fatalf("OpenJournal(%s): %v", dir, err)
	}
	if err := j.Append(recs...); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

var (
	tj    = time.UnixMilli(1_780_000_000_000)
	recA  = provision.Record{Time: tj, Node: "a", Phase: provision.PhaseNetbooting, Attempt: 1}
	recB  = provision.Record{Time: tj, Node: "b", Phase: provision.PhaseFailed, Attempt: 2, Reason: "no DHCP request"}
	recA2 = provision.Record{Time: tj.Add(time.Second), Node: "a", Phase: provision.PhaseConfigFetched, Attempt: 1}
)

func TestJournalDamage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		mangle    func(b []byte) []byte
		want      map[string]provision.Phase
		wantWarn  bool
		wantError string
	}{
		{"intact", func(b []byte) []byte { return b },
			map[string]provision.Phase{"a": provision.PhaseConfigFetched, "b": provision.PhaseFailed}, false, ""},
		{"torn last record (no newline)", func(b []byte) []byte { return b[:len(b)-7] },
			map[string]provision.Phase{"a": provision.PhaseNetbooting, "b": provision.PhaseFailed}, true, ""},
		{"last record bit flip", func(b []byte) []byte { b[len(b)-5] ^= 0x01; return b },
			map[string]provision.Phase{"a": provision.PhaseNetbooting, "b": provision.PhaseFailed}, true, ""},
		{"garbage appended", func(b []byte) []byte { return append(b, "\x00\x00\x00"...) },
			map[string]provision.Phase{"a": provision.PhaseConfigFetched, "b": provision.PhaseFailed}, true, ""},
		{"first record corrupt", func(b []byte) []byte { b[3] = 'z'; return b }, nil, false, "line 1 is corrupt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeJournal(t, recA, recB, recA2)
			path := filepath.Join(dir, provision.JournalFile)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.mangle(b), 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := provision.ReadJournal(path)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("ReadJournal = %v, want error containing %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadJournal: %v", err)
			}
			got := map[string]provision.Phase{}
			for n, r := range st.Nodes {
				got[n] = r.Phase
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ReadJournal phases (-want +got):\n%s", diff)
			}
			if (len(st.Warnings) > 0) != tc.wantWarn {
				t.Errorf("ReadJournal warnings = %q, want warning: %v", st.Warnings, tc.wantWarn)
			}
			// Reopening cuts the torn tail so later appends stay readable.
			j, _, err := provision.OpenJournal(dir, nil)
			if err != nil {
				t.Fatalf("OpenJournal after damage: %v", err)
			}
			recC := provision.Record{Time: tj, Node: "c", Phase: provision.PhaseReady, Attempt: 1}
			if err := j.Append(recC); err != nil {
				t.Fatal(err)
			}
			j.Close()
			st2, err := provision.ReadJournal(path)
			if err != nil || len(st2.Warnings) > 0 || st2.Nodes["c"].Phase != provision.PhaseReady {
				t.Errorf("after reopen and append: err=%v warnings=%q c=%v, want a clean journal with c ready", err, st2.Warnings, st2.Nodes["c"])
			}
		})
	}
}

func TestJournalRoundTripAndCompaction(t *testing.T) {
	t.Parallel()
	var recs []provision.Record
	for i := range 200 {
		recs = append(recs, provision.Record{Time: tj.Add(time.Duration(i) * time.Millisecond), Node: "n", Phase: provision.PhaseNetbooting, Attempt: i})
	}
	recs = append(recs, recB)
	dir := writeJournal(t, recs...)
	j, st, err := provision.OpenJournal(dir, nil) // 201 records for 2 nodes: compacts
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	if diff := cmp.Diff(recB, st.Nodes["b"]); diff != "" {
		t.Errorf("record b after round trip (-want +got):\n%s", diff)
	}
	after, err := provision.ReadJournal(filepath.Join(dir, provision.JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	if after.Records != 2 || after.Nodes["n"].Attempt != 199 {
		t.Errorf("after compaction: %d records, n attempt %d; want 2 records, attempt 199", after.Records, after.Nodes["n"].Attempt)
	}
	fi, err := os.Stat(filepath.Join(dir, provision.JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("journal mode %v, want 0600", fi.Mode().Perm())
	}
}
