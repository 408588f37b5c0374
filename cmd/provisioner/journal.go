package main

import (
	"fmt"
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
		Use:   "repair",
		Short: "Drop damaged journal lines, keeping every node's last good state",
		Long: "repair rewrites the journal in --state-dir without the lines that do not decode (a damaged\n" +
			"disk, a hand edit), keeping every node's last good record: a node the journal says booted its\n" +
			"OS stays so, and the next up does not power-cycle it. The journal as it was is kept beside it\n" +
			"(provision.journal.damaged-TIME). It refuses to run while up holds the state directory, and\n" +
			"leaves an intact journal alone. Nodes that were powered on but not past netboot before a\n" +
			"damaged line are listed: a lost line may have said they booted, so check them before up.",
		Example: "  provisioner demo --nodes 4 --state-dir /tmp/slipway-demo-state -o plain >/dev/null\n" +
			"  provisioner journal repair --state-dir /tmp/slipway-demo-state",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := provision.RepairJournal(g.stateDir)
			if err != nil {
				return err
			}
			if len(rep.Damaged) == 0 {
				fmt.Fprintf(g.stdout, "journal %s is intact (%d lines): nothing to repair\n", rep.Path, rep.Lines)
				return nil
			}
			lines := make([]string, len(rep.Damaged))
			for i, l := range rep.Damaged {
				lines[i] = fmt.Sprint(l)
			}
			fmt.Fprintf(g.stdout, "journal %s: dropped %d damaged of %d lines (line %s); %d nodes kept at their last good state\n",
				rep.Path, len(rep.Damaged), rep.Lines, strings.Join(lines, ", "), len(rep.Nodes))
			fmt.Fprintf(g.stdout, "the journal as it was: %s\n", rep.Backup)
			if len(rep.Uncertain) > 0 {
				fmt.Fprintf(g.stdout, "check before up: %s were powered on but not past netboot before a damaged line; if one has booted its OS, up will power-cycle it (disable it in the inventory until it joined)\n",
					strings.Join(rep.Uncertain, ", "))
			}
			return nil
		},
	})
	return cmd
}
