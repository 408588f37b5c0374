package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

// bmcFlags are the node selection and BMC timing flags that power and
// bootdev share.
type bmcFlags struct {
	all            bool
	racks          []string
	roles          []string
	parallel       int
	connectTimeout time.Duration
	opTimeout      time.Duration
	verifyTimeout  time.Duration
}

func (f *bmcFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.all, "all", false, "act on every enabled node of the inventory")
	fl.StringSliceVar(&f.racks, "rack", nil, "act on the enabled nodes of these racks (repeatable or comma-separated)")
	fl.StringSliceVar(&f.roles, "role", nil, "act on the enabled nodes with these roles: control-plane, worker (repeatable or comma-separated)")
	fl.IntVar(&f.parallel, "parallel", bmc.DefaultParallel, "how many BMCs to work on at once")
	fl.DurationVar(&f.connectTimeout, "connect-timeout", bmc.DefaultConnectTimeout, "time allowed to reach a BMC and log in")
	fl.DurationVar(&f.opTimeout, "timeout", bmc.DefaultOpTimeout, "time allowed for each BMC call after login")
	fl.DurationVar(&f.verifyTimeout, "verify-timeout", bmc.DefaultVerifyTimeout, "time allowed for the power state to reach the requested state")
}

// selectNodes returns the nodes named in args, or those the selection flags
// pick, in inventory order.
func (f *bmcFlags) selectNodes(inv *inventory.Inventory, args []string) ([]inventory.Node, error) {
	selecting := f.all || len(f.racks) > 0 || len(f.roles) > 0
	switch {
	case len(args) > 0 && selecting:
		return nil, usageError("name nodes or select them with --all, --rack or --role, not both")
	case len(args) == 0 && !selecting:
		return nil, usageError("no nodes given: name them (provisioner power status gpu-01 gpu-02) or select them with --all, --rack R or --role worker")
	}
	if f.parallel < 1 {
		return nil, usageError("--parallel %d: want 1 or more", f.parallel)
	}
	if len(args) > 0 {
		var out []inventory.Node
		seen := map[string]bool{}
		for _, name := range args {
			n, ok := inv.Node(name)
			if !ok {
				return nil, usageError("unknown node %q: it is not in the inventory (%s)", name, strings.Join(inv.Sources, ", "))
			}
			if n.Disabled {
				return nil, usageError("node %s is disabled in the inventory (%s); enable it to act on it", name, n.Source)
			}
			if !seen[name] {
				seen[name] = true
				out = append(out, n)
			}
		}
		return out, nil
	}
	for _, r := range f.roles {
		if r != string(inventory.RoleControlPlane) && r != string(inventory.RoleWorker) {
			return nil, usageError("--role %q: want control-plane or worker", r)
		}
	}
	var out []inventory.Node
	for _, n := range inv.Enabled() {
		if len(f.racks) > 0 && !slices.Contains(f.racks, n.Rack) {
			continue
		}
		if len(f.roles) > 0 && !slices.Contains(f.roles, string(n.Role)) {
			continue
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, usageError("no enabled node matches %s", f.describe())
	}
	return out, nil
}

func (f *bmcFlags) describe() string {
	var parts []string
	if f.all {
		parts = append(parts, "--all")
	}
	if len(f.racks) > 0 {
		parts = append(parts, "--rack "+strings.Join(f.racks, ","))
	}
	if len(f.roles) > 0 {
		parts = append(parts, "--role "+strings.Join(f.roles, ","))
	}
	return strings.Join(parts, " ")
}

func (f *bmcFlags) runConfig(g *globals) bmc.RunConfig {
	return bmc.RunConfig{Parallel: f.parallel, Client: bmc.Config{
		ConnectTimeout: f.connectTimeout,
		OpTimeout:      f.opTimeout,
		VerifyTimeout:  f.verifyTimeout,
		Log:            g.log,
	}}
}

// runBMC loads the inventory, selects nodes, runs steps on them, prints the
// table and fails when any node failed.
func runBMC(cmd *cobra.Command, g *globals, f *bmcFlags, args []string, showBoot bool, steps ...bmc.Step) error {
	inv, err := g.loadInventory()
	if err != nil {
		return err
	}
	nodes, err := f.selectNodes(inv, args)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	start := time.Now()
	res := bmc.Run(ctx, nodes, f.runConfig(g), steps...)
	took := time.Since(start)
	if err := writeBMCTable(g.stdout, res, showBoot); err != nil {
		return err
	}
	failed := 0
	for _, r := range res {
		if r.Err != nil {
			failed++
		}
	}
	fmt.Fprintf(g.stdout, "%d node(s) in %.2fs: %d ok, %d failed\n", len(res), took.Seconds(), len(res)-failed, failed)
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %d of %d node(s) not done", failed, len(res))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d node(s) failed (see the RESULT column)", failed, len(res))
	}
	return nil
}

// writeBMCTable prints one row per node: where its BMC is, what it is, the
// power state, the boot override (bootdev only), the node's wall time and
// the result.
func writeBMCTable(w io.Writer, res []bmc.Result, showBoot bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	hdr := "NODE\tBMC\tPROTOCOL\tVENDOR\tMODEL\tPOWER"
	if showBoot {
		hdr += "\tBOOT"
	}
	fmt.Fprintln(tw, hdr+"\tTOOK\tRESULT")
	for _, r := range res {
		row := []string{r.Node, r.BMC, dash(r.Info.Protocol), dash(r.Info.Vendor), dash(r.Info.Model), dash(string(r.Power))}
		if showBoot {
			b := "-"
			if r.Boot != nil {
				b = r.Boot.String()
				if !r.BootFlagsVerified {
					b = string(r.Boot.Device) + " (flags not readable)"
				}
			}
			row = append(row, b)
		}
		row = append(row, fmt.Sprintf("%.2fs", r.Took.Seconds()), result(r))
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// result is "ok", or the failed operation and its cause (node and BMC are
// already in the row).
func result(r bmc.Result) string {
	if r.Err == nil {
		return "ok"
	}
	var oe *bmc.OpError
	if errors.As(r.Err, &oe) {
		return "error: " + oe.Op + ": " + oe.Err.Error()
	}
	return "error: " + r.Err.Error()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newPowerCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "power",
		Short: "Show or change nodes' power through their BMCs",
		Long: `power reads or changes the power of nodes through their BMCs (Redfish or IPMI, as
each node's bmc.url says). It works on the nodes named, or on those --all, --rack
or --role select, at most --parallel at once, and prints one row per node: BMC
address, protocol, vendor and model, power state, time taken and result. A
power change is confirmed by reading the state back. The exit status is 1 when
any node failed.`,
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError("unknown power action %q: want status, on, off, soft-off, cycle or reset", args[0])
			}
			return usageError("name a power action: status, on, off, soft-off, cycle or reset")
		},
	}
	actions := []struct {
		use, short string
		action     bmc.PowerAction
	}{
		{"on", "Power nodes on and confirm they are on", bmc.ActionOn},
		{"off", "Cut nodes' power at once and confirm they are off", bmc.ActionOff},
		{"soft-off", "Ask nodes' OS to shut down and confirm they are off", bmc.ActionSoftOff},
		{"cycle", "Power nodes off and on again (on when off) and confirm they are on", bmc.ActionCycle},
		{"reset", "Restart running nodes without removing power and confirm they are on", bmc.ActionReset},
	}
	var sf bmcFlags
	status := &cobra.Command{
		Use:   "status [NODE...]",
		Short: "Show nodes' power state, BMC protocol, vendor and model",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBMC(cmd, g, &sf, args, false, bmc.StatusStep())
		},
	}
	sf.register(status)
	cmd.AddCommand(status)
	for _, a := range actions {
		var f bmcFlags
		sub := &cobra.Command{
			Use:   a.use + " [NODE...]",
			Short: a.short,
			RunE: func(cmd *cobra.Command, args []string) error {
				return runBMC(cmd, g, &f, args, false, bmc.PowerStep(a.action))
			},
		}
		f.register(sub)
		cmd.AddCommand(sub)
	}
	return cmd
}

func newBootdevCmd(g *globals) *cobra.Command {
	var (
		f          bmcFlags
		efi        bool
		legacy     bool
		persistent bool
	)
	cmd := &cobra.Command{
		Use:   "bootdev pxe|disk [NODE...]",
		Short: "Set nodes' next boot device through their BMCs",
		Long: `bootdev sets the device nodes boot from next: pxe (the network) or disk. The
setting applies to the next boot only unless --persistent is given, in UEFI mode
unless --legacy is given. The setting is read back and compared: the whole
override over Redfish, the boot device over IPMI. It does not power the nodes: follow with
"provisioner power cycle" (or on).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, err := bmc.ParseBootDevice(args[0])
			if err != nil {
				return usageError("%v", err)
			}
			if efi && legacy {
				return usageError("--efi and --legacy exclude each other")
			}
			step := bmc.BootStep(dev, bmc.BootOptions{Persistent: persistent, Legacy: legacy})
			return runBMC(cmd, g, &f, args[1:], true, step)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&efi, "efi", false, "boot in UEFI mode (the default)")
	cmd.Flags().BoolVar(&legacy, "legacy", false, "boot in legacy BIOS mode")
	cmd.Flags().BoolVar(&persistent, "persistent", false, "keep the device for every following boot, not only the next")
	return cmd
}
