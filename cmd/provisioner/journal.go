package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/pkg/provision"
)

func newJournalCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "journal",
		Short: "Look after the provisioning journal in --state-dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError("journal needs a subcommand: journal repair")
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "repair [-f PATH...]",
		Short: "Drop damaged journal lines, keeping every node's last good state",
		Long: "repair rewrites the journal in --state-dir without the lines that do not decode (a damaged\n" +
			"disk, a hand edit), keeping every node's last good record: a node the journal says booted its\n" +
			"OS stays so, and the next up does not power-cycle it. The journal as it was is kept beside it\n" +
			"(provision.journal.damaged-TIME). It refuses to run while up holds the state directory, and\n" +
			"leaves an intact journal alone. It lists the nodes a lost line may have said booted their OS\n" +
			"(check them before up: up would power-cycle them): nodes on their way to netboot before a\n" +
			"damaged line, nodes a damaged line still names, and, with -f, the inventory's enabled nodes\n" +
			"left with no record when a damaged line names none (a compacted journal holds one line per node).",
		Example: "  provisioner demo --nodes 4 --state-dir /tmp/slipway-demo-state -o plain >/dev/null\n" +
			"  provisioner journal repair --state-dir /tmp/slipway-demo-state",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var nodes []string
			if len(g.files) > 0 {
				inv, err := g.loadInventory()
				if err != nil {
					return invalidInventory(err)
				}
				for _, n := range inv.Enabled() {
					nodes = append(nodes, n.Name)
				}
			}
			rep, err := provision.RepairJournal(g.stateDir, nodes)
			if err != nil {
				return err
			}
			writeRepair(g.stdout, rep, nodes != nil)
			return nil
		},
	})
	return cmd
}

// writeRepair says what journal repair did; withInventory: -f was given.
func writeRepair(w io.Writer, rep *provision.Repair, withInventory bool) {
	if len(rep.Damaged) == 0 {
		fmt.Fprintf(w, "journal %s is intact (%d lines): nothing to repair\n", rep.Path, rep.Lines)
		return
	}
	lines := make([]string, len(rep.Damaged))
	for i, l := range rep.Damaged {
		lines[i] = fmt.Sprint(l)
	}
	fmt.Fprintf(w, "journal %s: dropped %d damaged of %d lines (line %s); %d nodes kept at their last good state\n",
		rep.Path, len(rep.Damaged), rep.Lines, strings.Join(lines, ", "), len(rep.Nodes))
	fmt.Fprintf(w, "the journal as it was: %s\n", rep.Backup)
	if len(rep.Uncertain) > 0 {
		fmt.Fprintf(w, "check before up: a lost line may have said %s booted the OS; up will power-cycle a node that is not past netboot in the journal (disable it in the inventory until it joined)\n",
			strings.Join(rep.Uncertain, ", "))
	}
	if rep.Unattributed > 0 && !withInventory {
		fmt.Fprintf(w, "%d damaged records name no node that can be read: a node whose only record that was is missing from the journal, and up would power-cycle it: nodes that provisioner status -f INVENTORY lists as not in the journal may be among them\n",
			rep.Unattributed)
	}
}
