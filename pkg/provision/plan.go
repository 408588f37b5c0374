package provision

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// PlanItem is what `up` would do to one node, and why.
type PlanItem struct {
	Node string         `json:"node"`
	Role inventory.Role `json:"role"`
	// Order is the node's turn: 1 the first control-plane node (init), 2 the
	// other control-plane nodes, 3 the workers; 0 for nodes left alone.
	Order int `json:"order"`
	// Journal is the node's phase in the journal ("" when it has none).
	Journal Phase `json:"journal,omitempty"`
	// Action is what up would do: nothing, resume, or provision.
	Action string `json:"action"`
	// Why explains the action.
	Why string `json:"why"`
	// Steps are the steps up would take, in order.
	Steps []string `json:"steps,omitempty"`
}

// Plan actions.
const (
	ActionSkip      = "skip"
	ActionNothing   = "nothing"
	ActionResume    = "resume"
	ActionProvision = "provision"
)

// Plan says what Run would do to each node (disabled ones included) given
// the journal state, without touching anything.
func Plan(nodes []inventory.Node, st *JournalState) []PlanItem {
	var enabled []inventory.Node
	for _, n := range nodes {
		if !n.Disabled {
			enabled = append(enabled, n)
		}
	}
	stages := stageOf(enabled)
	stageByName := map[string]int{}
	for i, n := range enabled {
		stageByName[n.Name] = stages[i]
	}
	var out []PlanItem
	for _, n := range nodes {
		it := PlanItem{Node: n.Name, Role: n.Role}
		rec, seen := Record{}, false
		if st != nil {
			rec, seen = st.Nodes[n.Name]
		}
		if seen {
			it.Journal = rec.Phase
		}
		if n.Disabled {
			it.Action, it.Why = ActionSkip, "disabled in the inventory"
			out = append(out, it)
			continue
		}
		stage := stageByName[n.Name]
		it.Order = stage + 1
		kind := joinKind(stage)
		switch {
		case seen && rec.Phase == PhaseReady:
			it.Action, it.Why = ActionNothing, fmt.Sprintf("Ready since %s (journal)", rec.Time.UTC().Format("2006-01-02 15:04:05Z"))
		case seen && rec.Phase.PassedNetboot():
			it.Action = ActionResume
			it.Why = fmt.Sprintf("it passed netboot (journal: %s), so it is not power-cycled again", rec.Phase)
			if rec.Phase == PhaseConfigFetched {
				it.Steps = append(it.Steps, "wait for its join phone-home")
			}
			it.Steps = append(it.Steps, "wait for Node Ready", "revoke its join token")
		default:
			it.Action = ActionProvision
			switch {
			case !seen:
				it.Why = "never provisioned (no journal record)"
			case rec.Phase == PhaseFailed:
				it.Why = "failed last time: " + rec.Reason + " (up first asks whether the cluster has it Ready by now)"
			default:
				it.Why = fmt.Sprintf("interrupted before its OS booted (journal: %s); starting over is safe", rec.Phase)
			}
			switch stage {
			case 0:
				it.Why += "; first control-plane node: inits the cluster"
			case 1:
				it.Why += "; joins as control plane after the first one is Ready"
			default:
				it.Why += "; joins as a worker after the control plane"
			}
			fw := n.Boot.Firmware
			if fw == "" {
				fw = inventory.FirmwareUEFI
			}
			it.Steps = []string{
				fmt.Sprintf("issue node config and token (%s)", kind),
				fmt.Sprintf("power off via %s", n.BMC.URL),
				fmt.Sprintf("set one-time network boot (%s)", fw),
				"power on",
				fmt.Sprintf("wait for DHCP from %s", n.MAC),
				fmt.Sprintf("netboot %s + %s", n.Boot.Kernel, n.Boot.Initrd),
				"wait for config fetch, join phone-home, Node Ready",
				"revoke its join token",
			}
		}
		out = append(out, it)
	}
	return out
}

// WritePlan prints a plan as a table; verbose adds each node's steps.
func WritePlan(w io.Writer, items []PlanItem, verbose bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tORDER\tJOURNAL\tACTION\tWHY")
	counts := map[string]int{}
	for _, it := range items {
		j := string(it.Journal)
		if j == "" {
			j = "-"
		}
		order := "-"
		if it.Order > 0 {
			order = fmt.Sprint(it.Order)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", it.Node, it.Role, order, j, it.Action, it.Why)
		if verbose {
			for i, s := range it.Steps {
				fmt.Fprintf(tw, "\t\t\t\t  %d.\t%s\n", i+1, s)
			}
		}
		counts[it.Action]++
	}
	fmt.Fprintf(tw, "\n%d to provision, %d to resume, %d already Ready, %d skipped\n",
		counts[ActionProvision], counts[ActionResume], counts[ActionNothing], counts[ActionSkip])
	return tw.Flush()
}

// WriteStatus prints where every node stands according to the journal. When
// nodes is not empty, nodes without a record are listed as pending and
// records of nodes not in it are listed after them.
func WriteStatus(w io.Writer, st *JournalState, nodes []inventory.Node) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPHASE\tSINCE\tATTEMPT\tREASON")
	seen := map[string]bool{}
	counts := map[Phase]int{}
	row := func(name string) {
		seen[name] = true
		r, ok := st.Nodes[name]
		if !ok {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\tnot in the journal\n", name, PhasePending)
			counts[PhasePending]++
			return
		}
		counts[r.Phase]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", name, r.Phase, r.Time.UTC().Format("2006-01-02 15:04:05Z"), r.Attempt, r.Reason)
	}
	for _, n := range nodes {
		if !n.Disabled {
			row(n.Name)
		}
	}
	var rest []string
	for name := range st.Nodes {
		if !seen[name] {
			rest = append(rest, name)
		}
	}
	sortStrings(rest)
	for _, name := range rest {
		row(name)
	}
	total := len(seen)
	fmt.Fprintf(tw, "\n%d nodes:", total)
	for _, p := range phases {
		if counts[p] > 0 {
			fmt.Fprintf(tw, " %s %d", p, counts[p])
		}
	}
	fmt.Fprintln(tw)
	for _, wn := range st.Warnings {
		fmt.Fprintf(tw, "warning: %s\n", wn)
	}
	return tw.Flush()
}
