package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/provision"
)

func newStatusCmd(g *globals) *cobra.Command {
	var output string
	var watch bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "status [-f PATH...]",
		Short: "Show where every node stands, from the journal",
		Long: "status reads the journal in --state-dir (it needs no lock, so it works while up runs) and\n" +
			"prints every node's phase, since when, its power-cycle attempt and, for failed nodes, why.\n" +
			"With -f the inventory's enabled nodes without a record are listed as pending.\n" +
			"--watch redraws every --interval until interrupted.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usageError("--output %q: want table or json", output)
			}
			if watch && interval <= 0 {
				return usageError("--interval %s: want a positive duration, such as 1s", interval)
			}
			var nodes []inventory.Node
			if len(g.files) > 0 {
				inv, err := g.loadInventory()
				if err != nil {
					return invalidInventory(err)
				}
				nodes = inv.Nodes
			}
			path := filepath.Join(g.stateDir, provision.JournalFile)
			show := func() (int, error) {
				st, err := provision.ReadJournal(path)
				if err != nil {
					return 0, err
				}
				if len(st.Nodes) == 0 && len(nodes) == 0 {
					fmt.Fprintf(g.stdout, "no journal in %s yet: run provisioner up first\n", g.stateDir)
					return 1, nil
				}
				var buf bytes.Buffer
				if output == "json" {
					err = writeJSON(&buf, st.Nodes)
				} else {
					err = provision.WriteStatus(&buf, st, nodes)
				}
				g.stdout.Write(buf.Bytes())
				return bytes.Count(buf.Bytes(), []byte("\n")), err
			}
			if !watch {
				_, err := show()
				return err
			}
			lines := 0
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				if lines > 0 && output == "table" {
					fmt.Fprintf(g.stdout, "\x1b[%dA\r\x1b[J", lines)
				}
				n, err := show()
				if err != nil {
					return err
				}
				lines = n
				select {
				case <-cmd.Context().Done():
					return nil
				case <-t.C:
				}
			}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table or json")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "redraw until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "redraw interval with --watch")
	return cmd
}
