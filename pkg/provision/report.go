package provision

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"
)

// NodeResult is where one node ended a run.
type NodeResult struct {
	Node string `json:"node"`
	Rack string `json:"rack,omitempty"`
	Slot int    `json:"slot,omitempty"`
	// Phase is the node's phase when the run ended.
	Phase Phase `json:"phase"`
	// Reason says why it failed.
	Reason string `json:"reason,omitempty"`
	// Attempts is the number of power cycles in this run.
	Attempts int `json:"attempts"`
	// Resumed is true when the run took the node over from the journal.
	Resumed bool `json:"resumed,omitempty"`
	// BlockedBy names the first control-plane node when this node failed
	// only because that one did.
	BlockedBy string `json:"blocked_by,omitempty"`
	// Durations is the time spent in each phase during this run.
	Durations map[Phase]time.Duration `json:"durations_ns,omitempty"`
}

// PhaseStats summarises the time nodes spent in one phase.
type PhaseStats struct {
	Phase Phase         `json:"phase"`
	Count int           `json:"count"`
	P50   time.Duration `json:"p50_ns"`
	P95   time.Duration `json:"p95_ns"`
	Max   time.Duration `json:"max_ns"`
}

// Report is the outcome of a run.
type Report struct {
	// Wall is the run's duration.
	Wall time.Duration `json:"wall_ns"`
	// Nodes are the nodes in inventory order.
	Nodes []NodeResult `json:"nodes"`
	// Phases are per-phase timings, in phase order, for phases any node left.
	Phases []PhaseStats `json:"phases"`
	// Ready, Failed and Unfinished count nodes by outcome.
	Ready      int `json:"ready"`
	Failed     int `json:"failed"`
	Unfinished int `json:"unfinished"`
	// Warnings are journal warnings (a torn record ignored).
	Warnings []string `json:"warnings,omitempty"`
}

func (r *runner) report(now time.Time) *Report {
	rep := &Report{Wall: now.Sub(r.start), Warnings: r.warnings}
	byPhase := map[Phase][]time.Duration{}
	for _, s := range r.slots {
		nr := NodeResult{Node: s.node.Name, Rack: s.node.Rack, Slot: s.node.Slot, Phase: s.st.phase,
			Reason: s.st.reason, Attempts: s.st.attempt, Resumed: s.resumed, BlockedBy: s.st.blockedBy, Durations: s.durations}
		rep.Nodes = append(rep.Nodes, nr)
		switch s.st.phase {
		case PhaseReady:
			rep.Ready++
		case PhaseFailed:
			rep.Failed++
		default:
			rep.Unfinished++
		}
		for p, d := range s.durations {
			byPhase[p] = append(byPhase[p], d)
		}
	}
	for _, p := range phases {
		if ds := byPhase[p]; len(ds) > 0 {
			rep.Phases = append(rep.Phases, summarize(p, ds))
		}
	}
	return rep
}

func summarize(p Phase, ds []time.Duration) PhaseStats {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	q := func(f float64) time.Duration {
		i := int(f*float64(len(ds))+0.999999) - 1
		return ds[min(max(i, 0), len(ds)-1)]
	}
	return PhaseStats{Phase: p, Count: len(ds), P50: q(0.50), P95: q(0.95), Max: ds[len(ds)-1]}
}

// WriteSummary prints the report for a person: the per-phase timings and
// every node that did not reach Ready, with its reason.
func (rep *Report) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\n%d nodes: %d ready, %d failed, %d unfinished in %s\n\n", len(rep.Nodes), rep.Ready, rep.Failed, rep.Unfinished, rep.Wall.Round(time.Millisecond))
	if len(rep.Phases) > 0 {
		fmt.Fprintln(tw, "PHASE\tNODES\tP50\tP95\tMAX")
		for _, ps := range rep.Phases {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", ps.Phase, ps.Count, roundDur(ps.P50), roundDur(ps.P95), roundDur(ps.Max))
		}
	}
	bad := false
	blocked := map[string]int{}
	var blockers []string
	for _, n := range rep.Nodes {
		if n.Phase == PhaseReady {
			continue
		}
		if n.BlockedBy != "" && n.Phase == PhaseFailed {
			if blocked[n.BlockedBy] == 0 {
				blockers = append(blockers, n.BlockedBy)
			}
			blocked[n.BlockedBy]++
			continue
		}
		if !bad {
			fmt.Fprintln(tw, "\nNODE\tPHASE\tATTEMPTS\tREASON")
			bad = true
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", n.Node, n.Phase, n.Attempts, n.Reason)
	}
	for _, b := range blockers {
		fmt.Fprintf(tw, "\n%d more nodes stopped: the first control-plane node %s failed (above), so there is no cluster to join; fix it and run again\n", blocked[b], b)
	}
	for _, wn := range rep.Warnings {
		fmt.Fprintf(tw, "warning: %s\n", wn)
	}
	return tw.Flush()
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

func sortStrings(s []string) { sort.Strings(s) }
