package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
		Short: "Show where every node stands, from the journal, and whether up is running",
		Long: "status reads the journal in --state-dir (it needs no lock, so it works while up runs) and\n" +
			"prints whether an up (or demo) holds the state directory now, then every node's phase, since\n" +
			"when, its power-cycle attempt and, for failed nodes, why. When nothing holds it, the phases are\n" +
			"where the last run left them (it ended or was killed), not a run in progress.\n" +
			"With -f the inventory's enabled nodes without a record are listed as pending.\n" +
			"--watch redraws every --interval until interrupted.",
		Example: "  provisioner demo --nodes 4 --state-dir /tmp/slipway-demo-state -o plain >/dev/null\n" +
			"  provisioner status --state-dir /tmp/slipway-demo-state\n" +
			"  provisioner status --state-dir /var/lib/slipway -f inventory/rack-gpu.yaml -o json",
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
			s := statusView{dir: g.stateDir, nodes: nodes, json: output == "json"}
			if !watch {
				_, err := s.show(g.stdout)
				return err
			}
			return s.watch(cmd.Context(), g.stdout, interval)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table or json")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "redraw until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "redraw interval with --watch")
	return cmd
}

// statusView is what status shows.
type statusView struct {
	dir   string
	nodes []inventory.Node
	json  bool
}

// statusJSON is status -o json: the lock and every node's last record.
type statusJSON struct {
	Running bool                        `json:"running"`
	Holder  *provision.Holder           `json:"holder,omitempty"`
	Nodes   map[string]provision.Record `json:"nodes"`
}

// show writes the status once and returns how many lines it wrote.
func (s statusView) show(w io.Writer) (int, error) {
	st, err := provision.ReadJournal(filepath.Join(s.dir, provision.JournalFile))
	if err != nil {
		return 0, err
	}
	holder, held, err := provision.Held(s.dir)
	if err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	switch {
	case s.json:
		out := statusJSON{Running: held, Nodes: withPending(st.Nodes, s.nodes)}
		if held {
			out.Holder = &holder
		}
		err = writeJSON(&buf, out)
	case len(st.Nodes) == 0 && len(s.nodes) == 0:
		fmt.Fprintf(&buf, "no journal in %s yet: run provisioner up first\n", s.dir)
	default:
		if held {
			fmt.Fprintf(&buf, "running: %s holds %s; the phases below are live\n\n", holder, s.dir)
		} else {
			fmt.Fprintf(&buf, "not running: no up holds %s; the phases below are where the last run left each node\n\n", s.dir)
		}
		err = provision.WriteStatus(&buf, st, s.nodes)
	}
	w.Write(buf.Bytes())
	return bytes.Count(buf.Bytes(), []byte("\n")), err
}

// withPending returns the journal's records plus, for every enabled node of
// the inventory without one, a record in phase pending (as the table lists
// them).
func withPending(recs map[string]provision.Record, nodes []inventory.Node) map[string]provision.Record {
	out := make(map[string]provision.Record, len(recs)+len(nodes))
	for n, r := range recs {
		out[n] = r
	}
	for _, n := range nodes {
		if _, ok := out[n.Name]; !ok && !n.Disabled {
			out[n.Name] = provision.Record{Node: n.Name, Phase: provision.PhasePending}
		}
	}
	return out
}

// watch redraws the status every interval until ctx ends.
func (s statusView) watch(ctx context.Context, w io.Writer, interval time.Duration) error {
	lines := 0
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if lines > 0 && !s.json {
			fmt.Fprintf(w, "\x1b[%dA\r\x1b[J", lines)
		}
		n, err := s.show(w)
		if err != nil {
			return err
		}
		lines = n
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
