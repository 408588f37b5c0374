package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/pkg/addons"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

func newValidateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate -f PATH...",
		Short: "Check an inventory and report every problem at once",
		Long: "validate loads the inventory (files, or directories of *.yaml merged in name order), applies\n" +
			"profiles and ranges, and reports every problem as FILE:LINE:COL: FIELD.PATH: message.\n" +
			"The add-on manifests the inventory lists are parsed as well.\n" +
			"It exits 0 when the inventory is valid, 1 when it is not, 2 on a usage error.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, err := g.loadInventory()
			if err != nil {
				return invalidInventory(err)
			}
			// Add-on manifests are parsed too, so a broken one is caught in
			// review rather than in the middle of up.
			if _, err := addons.Load(inv.Addons); err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			fmt.Fprintln(g.stdout, summary(inv))
			return nil
		},
	}
}

// invalidInventory formats a load error as one problem per line (exit 1).
func invalidInventory(err error) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	var multi interface{ Unwrap() []error }
	if errors.As(err, &multi) {
		n := len(multi.Unwrap())
		return &exitError{code: exitFailure, err: fmt.Errorf("inventory has %d problem(s):\n%w", n, err)}
	}
	return &exitError{code: exitFailure, err: err}
}

// summary is the one-line description of a valid inventory.
func summary(inv *inventory.Inventory) string {
	roles := map[inventory.Role]int{}
	racks := map[string]int{}
	disabled := 0
	for _, n := range inv.Nodes {
		if n.Disabled {
			disabled++
			continue
		}
		roles[n.Role]++
		rack := n.Rack
		if rack == "" {
			rack = "(no rack)"
		}
		racks[rack]++
	}
	rackNames := make([]string, 0, len(racks))
	for r := range racks {
		rackNames = append(rackNames, r)
	}
	sort.Strings(rackNames)
	parts := make([]string, len(rackNames))
	for i, r := range rackNames {
		parts[i] = fmt.Sprintf("%s %d", r, racks[r])
	}
	s := fmt.Sprintf("inventory ok: cluster %s (Kubernetes %s), %d nodes: %d control-plane, %d worker",
		inv.Cluster.Name, inv.Cluster.KubernetesVersion, len(inv.Nodes)-disabled,
		roles[inventory.RoleControlPlane], roles[inventory.RoleWorker])
	if disabled > 0 {
		s += fmt.Sprintf(" (%d disabled)", disabled)
	}
	s += "; by rack: " + strings.Join(parts, ", ")
	if len(inv.Networks) > 0 {
		// Routed sites: say which network each node boots on.
		count := map[string]int{}
		for _, n := range inv.Enabled() {
			count[n.Network]++
		}
		nets := []string{fmt.Sprintf("%s %d", inv.Network.Name, count[inv.Network.Name])}
		for _, p := range inv.Networks {
			nets = append(nets, fmt.Sprintf("%s %d", p.Name, count[p.Name]))
		}
		s += "; by network: " + strings.Join(nets, ", ")
	}
	return s
}

func newInventoryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "Inspect the inventory",
	}
	var output string
	show := &cobra.Command{
		Use:   "show -f PATH... [-o yaml|json]",
		Short: "Print the resolved inventory: profiles and ranges applied, secrets shown as references",
		Long: "inventory show prints the inventory as one document with every node written out: ranges\n" +
			"expanded, {index} filled in, what a node overrides of its profile on the node, defaults\n" +
			"explicit, BMC passwords as their env:/file: references. The output is itself an inventory\n" +
			"(JSON too): validate -f accepts it and resolves it to the same nodes.",
		Example: "  provisioner inventory show -f inventory/examples/rack/\n" +
			"  provisioner inventory show -f inventory/examples/rack/ > /tmp/resolved.yaml && provisioner validate -f /tmp/resolved.yaml",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "yaml" && output != "json" {
				return usageError("-o %q: want yaml or json", output)
			}
			inv, err := g.loadInventory()
			if err != nil {
				return invalidInventory(err)
			}
			return writeInventory(g.stdout, inv, output)
		},
	}
	show.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	cmd.AddCommand(show)
	return cmd
}

func writeInventory(w io.Writer, inv *inventory.Inventory, format string) error {
	encode := inv.EncodeYAML
	if format == "json" {
		encode = inv.EncodeJSON
	}
	b, err := encode()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
