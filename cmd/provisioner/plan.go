package main

import (
	"encoding/json"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/pkg/provision"
)

func newPlanCmd(g *globals) *cobra.Command {
	var output string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "plan -f PATH...",
		Short: "Say what up would do to each node, and why, without touching anything",
		Long: "plan reads the inventory and the journal in --state-dir and prints, for every node, what `up`\n" +
			"would do: nothing (already Ready), resume (it already booted its OS, so it is not power-cycled),\n" +
			"provision (power off, one-time network boot, power on, ...) or skip (disabled), in the order\n" +
			"up takes them. It contacts no BMC and changes no file.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usageError("--output %q: want table or json", output)
			}
			inv, err := g.loadInventory()
			if err != nil {
				return invalidInventory(err)
			}
			st, err := provision.ReadJournal(filepath.Join(g.stateDir, provision.JournalFile))
			if err != nil {
				return err
			}
			items := provision.Plan(inv.Nodes, st)
			if output == "json" {
				return writeJSON(g.stdout, items)
			}
			return provision.WritePlan(g.stdout, items, verbose)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table or json")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "list each node's steps")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
