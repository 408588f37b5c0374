package provision

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// JournalFile is the journal's file name inside the state directory.
const JournalFile = "provision.journal"

// Record is one journaled transition of one node.
type Record struct {
	// Time is when the node entered Phase.
	Time time.Time
	// Node is the node name.
	Node string
	// Phase is the phase entered.
	Phase Phase
	// Attempt is the power cycle the node is on (1-based; 0 before the first).
	Attempt int
	// Reason says why the node failed (failed only).
	Reason string
}

// wireRecord is a Record on disk; short keys keep the journal small.
type wireRecord struct {
	T int64  `json:"t"`
	N string `json:"n"`
	P Phase  `json:"p"`
	A int    `json:"a,omitempty"`
	R string `json:"r,omitempty"`
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// encodeRecord appends "CRC32C-HEX JSON\n" to buf.
func encodeRecord(buf []byte, r Record) []byte {
	js, _ := json.Marshal(wireRecord{T: r.Time.UnixMilli(), N: r.Node, P: r.Phase, A: r.Attempt, R: r.Reason})
	buf = fmt.Appendf(buf, "%08x ", crc32.Checksum(js, crcTable))
	buf = append(buf, js...)
	return append(buf, '\n')
}

func decodeRecord(line []byte) (Record, bool) {
	if len(line) < 10 || line[8] != ' ' {
		return Record{}, false
	}
	sum, err := strconv.ParseUint(string(line[:8]), 16, 32)
	if err != nil || uint32(sum) != crc32.Checksum(line[9:], crcTable) {
		return Record{}, false
	}
	var w wireRecord
	if err := json.Unmarshal(line[9:], &w); err != nil || w.N == "" || w.P == "" {
		return Record{}, false
	}
	return Record{Time: time.UnixMilli(w.T), Node: w.N, Phase: w.P, Attempt: w.A, Reason: w.R}, true
}

// JournalState is what a journal says about every node: its latest record.
type JournalState struct {
	// Nodes maps node name to its latest record.
	Nodes map[string]Record
	// Records is how many records the file holds.
	Records int
	// Warnings are problems that did not stop the read (a torn last record).
	Warnings []string
	// goodSize is the byte length of the valid prefix.
	goodSize int64
}

// ReadJournal reads the journal at path. A missing file is an empty journal.
// A damaged last record (a write torn by a crash) is ignored with a warning;
// damage before the last record is an error, since records after it cannot
// be trusted.
func ReadJournal(path string) (*JournalState, error) {
	st := &JournalState{Nodes: map[string]Record{}}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read journal %s: %w", path, err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var off int64
	lineNo := 0
	var bad []int // line numbers that failed to decode
	var badOff int64 = -1
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			lineNo++
			complete := line[len(line)-1] == '\n'
			rec, ok := decodeRecord(bytes.TrimSuffix(line, []byte("\n")))
			if !complete || !ok {
				if badOff < 0 {
					badOff = off
				}
				bad = append(bad, lineNo)
			} else {
				if len(bad) > 0 {
					return nil, fmt.Errorf("read journal %s: line %d is corrupt but later records follow: run provisioner journal repair --state-dir %s (it drops the damaged lines and keeps every node's last good state, so no node that booted its OS is power-cycled)", path, bad[0], filepath.Dir(path))
				}
				st.Nodes[rec.Node] = rec
				st.Records++
			}
			off += int64(len(line))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read journal %s: %w", path, err)
		}
	}
	st.goodSize = off
	if len(bad) > 0 {
		st.goodSize = badOff
		st.Warnings = append(st.Warnings, fmt.Sprintf("journal %s: ignoring a torn last record at line %d (a crash interrupted its write)", path, bad[0]))
	}
	return st, nil
}

// Journal is the append-only, fsync'd record of node transitions in a state
// directory. It is not safe for concurrent use; the orchestrator's loop is its
// only writer.
type Journal struct {
	path    string
	f       *os.File
	buf     []byte
	records int
	log     *slog.Logger
}

// OpenJournal opens (creating if needed) the journal in dir for appending,
// after reading it: the returned state is where every node stood. A torn
// last record is cut off with a warning on log. When the file holds many
// more records than nodes it is compacted to one record per node.
func OpenJournal(dir string, log *slog.Logger) (*Journal, *JournalState, error) {
	if log == nil {
		log = discardLogger()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("open journal: create state directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, JournalFile)
	st, err := ReadJournal(path)
	if err != nil {
		return nil, nil, err
	}
	for _, w := range st.Warnings {
		log.Warn("journal damaged at its end", "err", w)
	}
	j := &Journal{path: path, log: log, records: st.Records}
	if st.Records > 2*len(st.Nodes)+64 {
		if err := j.writeSnapshot(st.Nodes); err != nil {
			return nil, nil, err
		}
	} else if len(st.Warnings) > 0 {
		if err := os.Truncate(path, st.goodSize); err != nil {
			return nil, nil, fmt.Errorf("open journal %s: cut torn record: %w", path, err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	j.f = f
	return j, st, nil
}

// Append writes the records and fsyncs once for all of them (group commit).
func (j *Journal) Append(recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	j.buf = j.buf[:0]
	for _, r := range recs {
		j.buf = encodeRecord(j.buf, r)
	}
	if _, err := j.f.Write(j.buf); err != nil {
		return fmt.Errorf("append to journal %s: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sync journal %s: %w", j.path, err)
	}
	j.records += len(recs)
	return nil
}

// Compact rewrites the journal as one record per node (the given state),
// atomically: a crash during compaction leaves the old or the new file.
func (j *Journal) Compact(nodes map[string]Record) error {
	if err := j.writeSnapshot(nodes); err != nil {
		return err
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("reopen journal %s: %w", j.path, err)
	}
	old := j.f
	j.f = f
	if old != nil {
		old.Close()
	}
	return nil
}

func (j *Journal) writeSnapshot(nodes map[string]Record) error {
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf []byte
	for _, n := range names {
		buf = encodeRecord(buf, nodes[n])
	}
	tmp := j.path + ".tmp"
	if err := writeFileSync(tmp, buf); err != nil {
		return fmt.Errorf("compact journal %s: %w", j.path, err)
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return fmt.Errorf("compact journal %s: %w", j.path, err)
	}
	if d, err := os.Open(filepath.Dir(j.path)); err == nil {
		d.Sync()
		d.Close()
	}
	j.records = len(names)
	return nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Close closes the journal file.
func (j *Journal) Close() error {
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
