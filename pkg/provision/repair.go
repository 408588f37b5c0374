package provision

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Repair is what RepairJournal did.
type Repair struct {
	// Path is the journal; Backup the copy of it as it was (empty when
	// nothing was changed).
	Path, Backup string
	// Lines is how many lines the journal held; Damaged the line numbers
	// dropped because they do not decode (checksum, JSON, a torn write).
	Lines   int
	Damaged []int
	// Nodes is every node's last good record, as the journal now holds it.
	Nodes map[string]Record
	// Uncertain are nodes whose last good record shows them powered on but
	// not yet past netboot, written before a damaged line: a lost record
	// may have said they booted their OS, and the next up will power-cycle
	// them. Check them before running up.
	Uncertain []string
}

// RepairJournal rewrites the journal in dir without its damaged lines,
// keeping every node's last good record: a node the journal says is past
// netboot stays so, and is never power-cycled by the next up. The journal
// as it was is kept beside it (provision.journal.damaged-TIME, 0600). It
// takes the state directory's lock, so it refuses to run beside up. An
// intact journal is left alone.
func RepairJournal(dir string) (*Repair, error) {
	// Look before locking: the lock would create a missing directory.
	if _, err := os.Stat(filepath.Join(dir, JournalFile)); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("repair journal: no journal in %s (is --state-dir right?)", dir)
	}
	lock, err := LockStateDir(dir, "provisioner journal repair")
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	path := filepath.Join(dir, JournalFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("repair journal: %w", err)
	}
	rep := &Repair{Path: path, Nodes: map[string]Record{}}
	lastLine := map[string]int{} // node -> line of its last good record
	br := bufio.NewReader(bytes.NewReader(b))
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			rep.Lines++
			rec, ok := decodeRecord(bytes.TrimSuffix(line, []byte("\n")))
			if !ok || line[len(line)-1] != '\n' {
				rep.Damaged = append(rep.Damaged, rep.Lines)
			} else {
				rep.Nodes[rec.Node] = rec
				lastLine[rec.Node] = rep.Lines
			}
		}
		if err == io.EOF {
			break
		}
	}
	if len(rep.Damaged) == 0 {
		return rep, nil
	}
	lastDamaged := rep.Damaged[len(rep.Damaged)-1]
	for node, rec := range rep.Nodes {
		switch rec.Phase {
		case PhasePoweringOn, PhaseWaitingDHCP, PhaseNetbooting:
			if lastLine[node] < lastDamaged {
				rep.Uncertain = append(rep.Uncertain, node)
			}
		}
	}
	sort.Strings(rep.Uncertain)
	rep.Backup = fmt.Sprintf("%s.damaged-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	if err := writeFileSync(rep.Backup, b); err != nil {
		return nil, fmt.Errorf("repair journal: keep the damaged journal: %w", err)
	}
	j := &Journal{path: path}
	if err := j.writeSnapshot(rep.Nodes); err != nil {
		return nil, fmt.Errorf("repair journal: %w", err)
	}
	return rep, nil
}
