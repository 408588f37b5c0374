package provision

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
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
	// Uncertain are nodes that may have booted their OS in a record that
	// was lost, so the next up may power-cycle a node that is running: a
	// node not past netboot in its last good record (powering off or on,
	// waiting for DHCP, netbooting, failed) with enough damaged records
	// after it to have passed netboot since (one from powering-on, waiting
	// for DHCP or netbooting), a node a damaged line still names, and
	// (when RepairJournal is given the inventory's nodes and a damaged
	// record names none of them) every one of them with no good record
	// left. Check them before running up.
	Uncertain []string
	// Unattributed is how many damaged records name no node that can be
	// read (or, with the inventory's nodes given, none of them): a node
	// whose only record was one of them (a compacted journal holds one
	// record per node) is missing from the repaired journal, and up
	// provisions it from the start.
	Unattributed int
}

// RepairJournal rewrites the journal in dir without its damaged lines,
// keeping every node's last good record: a node the journal says is past
// netboot stays so, and is never power-cycled by the next up. The journal
// as it was is kept beside it (provision.journal.damaged-TIME, 0600). It
// takes the state directory's lock, so it refuses to run beside up. An
// intact journal is left alone.
//
// nodes, when not nil, are the inventory's enabled nodes: a damaged line
// that names none of them counts as unattributed, and then every one of
// them missing from the repaired journal is Uncertain (its only record may
// have been lost).
func RepairJournal(dir string, nodes []string) (*Repair, error) {
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
	known := map[string]bool{}
	for _, n := range nodes {
		known[n] = true
	}
	lastLine := map[string]int{} // node -> line of its last good record
	var lost []lostRecords
	br := bufio.NewReader(bytes.NewReader(b))
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			rep.Lines++
			rec, ok := decodeRecord(bytes.TrimSuffix(line, []byte("\n")))
			if !ok || line[len(line)-1] != '\n' {
				rep.Damaged = append(rep.Damaged, rep.Lines)
				l := salvage(rep.Lines, line, known)
				rep.Unattributed += l.unattributed
				lost = append(lost, l)
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
	rep.Uncertain = uncertain(rep, lastLine, lost, nodes)
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

// lostRecords is what can still be read of one damaged line.
type lostRecords struct {
	line int
	// records is how many records the line held (more than one where a
	// newline was lost).
	records int
	// nodes are the node names the line still shows; a name may itself be
	// damaged, so the records count against every node.
	nodes []string
	// unattributed is how many records of the line name no node that can
	// be read.
	unattributed int
}

// reNodeField finds a record's node name in a damaged line.
var reNodeField = regexp.MustCompile(`"n":("(?:[^"\\]|\\.)*")`)

// salvage reads what it can of damaged line lineNo: the node names it
// still shows (those in known, when known is not empty) and how many of its
// records (one, or more where a newline was lost) name none.
func salvage(lineNo int, line []byte, known map[string]bool) lostRecords {
	l := lostRecords{line: lineNo, records: max(1, bytes.Count(line, []byte(`"t":`)), bytes.Count(line, []byte(`"n":`)))}
	for _, m := range reNodeField.FindAllSubmatch(line, -1) {
		var name string
		if json.Unmarshal(m[1], &name) != nil || name == "" || (len(known) > 0 && !known[name]) {
			continue
		}
		l.nodes = append(l.nodes, name)
	}
	l.unattributed = max(0, l.records-len(l.nodes))
	return l
}

// recordsToBoot is how many journal records a node in a phase needs at
// least before one says it is past netboot (a config request is taken in
// powering-on and waiting-dhcp too); a failed node is restarted with
// powering-off by the next run.
func recordsToBoot(p Phase) int {
	switch p {
	case PhasePoweringOn, PhaseWaitingDHCP, PhaseNetbooting:
		return 1
	case PhaseSettingBoot:
		return 2
	case PhasePoweringOff:
		return 3
	}
	return 4
}

// uncertain returns the nodes that may have passed netboot in a lost
// record, sorted.
func uncertain(rep *Repair, lastLine map[string]int, lost []lostRecords, nodes []string) []string {
	set := map[string]bool{}
	for _, l := range lost {
		for _, n := range l.nodes {
			if rec, ok := rep.Nodes[n]; !ok || (lastLine[n] < l.line && !rec.Phase.PassedNetboot()) {
				set[n] = true
			}
		}
	}
	for n, rec := range rep.Nodes {
		if rec.Phase.PassedNetboot() {
			continue
		}
		after := 0 // records lost after n's last good one
		for _, l := range lost {
			if l.line > lastLine[n] {
				after += l.records
			}
		}
		if after >= recordsToBoot(rec.Phase) {
			set[n] = true
		}
	}
	if rep.Unattributed > 0 {
		for _, n := range nodes {
			if _, ok := rep.Nodes[n]; !ok {
				set[n] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
