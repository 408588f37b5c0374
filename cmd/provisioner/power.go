package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
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
	output         string
}

func (f *bmcFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.all, "all", false, "act on every enabled node of the inventory")
	fl.StringSliceVar(&f.racks, "rack", nil, "act on the enabled nodes of these racks (repeatable or comma-separated)")
	fl.StringSliceVar(&f.roles, "role", nil, "act on the enabled nodes with these roles: control-plane, worker (repeatable or comma-separated)")
	fl.IntVar(&f.parallel, "parallel", bmc.DefaultParallel, "how many BMCs to work on at once")
	fl.DurationVar(&f.connectTimeout, "connect-timeout", bmc.DefaultConnectTimeout, "time allowed to reach a BMC and log in")
	fl.DurationVar(&f.opTimeout, "timeout", bmc.DefaultOpTimeout, "time allowed for each BMC call after login")
	fl.DurationVar(&f.verifyTimeout, "verify-timeout", bmc.DefaultVerifyTimeout, "time allowed to read back a change: the power state, evidence of a restart, a boot override or virtual media that the BMC applies late")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
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
	if f.output != "table" && f.output != "json" {
		return nil, usageError("--output %q: want table or json", f.output)
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
// table (or JSON) and fails when any node failed. A node whose action was
// sent but cannot be verified is neither ok nor failed: it is counted apart
// and does not change the exit status.
func runBMC(cmd *cobra.Command, g *globals, f *bmcFlags, args []string, cols columns, steps ...bmc.Step) error {
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
	n := map[string]int{}
	for _, r := range res {
		n[r.Status()]++
	}
	if f.output == "json" {
		if err := writeBMCJSON(g.stdout, res, took); err != nil {
			return err
		}
	} else {
		if err := writeBMCTable(g.stdout, res, cols); err != nil {
			return err
		}
		unverified := ""
		if n["unverified"] > 0 {
			unverified = fmt.Sprintf(" %d sent but not verifiable,", n["unverified"])
		}
		fmt.Fprintf(g.stdout, "%d node(s) in %.2fs: %d ok,%s %d failed\n", len(res), took.Seconds(), n["ok"], unverified, n["failed"])
	}
	if ctx.Err() != nil {
		// Nodes that failed for their own reason before Ctrl-C were done.
		notDone := 0
		for _, r := range res {
			if errors.Is(r.Err, context.Canceled) {
				notDone++
			}
		}
		return fmt.Errorf("interrupted: %d of %d node(s) not done", notDone, len(res))
	}
	if n["failed"] > 0 {
		return fmt.Errorf("%d of %d node(s) failed (see the RESULT column)", n["failed"], len(res))
	}
	return nil
}

// columns are the optional table columns.
type columns struct {
	boot  bool // BOOT: the boot override read back
	media bool // MEDIA: the virtual CD read back
}

// writeBMCTable prints one row per node: where its BMC is, what it is, the
// power state, the boot override and virtual media read back (bootdev
// only), the node's wall time and the result. Every value is what the BMC
// reported, never what was asked.
func writeBMCTable(w io.Writer, res []bmc.Result, cols columns) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	hdr := "NODE\tBMC\tPROTOCOL\tVENDOR\tMODEL\tPOWER"
	if cols.boot {
		hdr += "\tBOOT"
	}
	if cols.media {
		hdr += "\tMEDIA"
	}
	fmt.Fprintln(tw, hdr+"\tTOOK\tRESULT")
	for _, r := range res {
		row := []string{r.Node, r.BMC, dash(r.Info.Protocol), dash(r.Info.Vendor), dash(r.Info.Model), dash(string(r.Power))}
		if cols.boot {
			b := "-"
			if r.Boot != nil {
				b = r.Boot.String()
			}
			row = append(row, b)
		}
		if cols.media {
			m := "-"
			if r.Media != nil {
				m = r.Media.String()
			}
			row = append(row, m)
		}
		row = append(row, fmt.Sprintf("%.2fs", r.Took.Seconds()), result(r))
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// result is "ok", "sent, not verifiable: why", or the failed operation and
// its cause (node and BMC are already in the row).
func result(r bmc.Result) string {
	if r.Err == nil {
		if r.Unverified != "" {
			_, why, _ := strings.Cut(r.Unverified, "not verifiable: ")
			return "sent, not verifiable: " + why
		}
		return "ok"
	}
	var oe *bmc.OpError
	if errors.As(r.Err, &oe) {
		return "error: " + oe.Op + ": " + oe.Err.Error()
	}
	return "error: " + r.Err.Error()
}

// jsonNode is one node in power's and bootdev's JSON output.
type jsonNode struct {
	Node     string     `json:"node"`
	BMC      string     `json:"bmc"`
	Protocol string     `json:"protocol,omitempty"`
	Vendor   string     `json:"vendor,omitempty"`
	Model    string     `json:"model,omitempty"`
	Quirks   []string   `json:"quirks,omitempty"`
	Power    string     `json:"power,omitempty"`
	Boot     *jsonBoot  `json:"boot,omitempty"`
	Media    *jsonMedia `json:"media,omitempty"`
	// Result is ok, unverified or failed.
	Result   string  `json:"result"`
	Evidence string  `json:"evidence,omitempty"`
	Error    string  `json:"error,omitempty"`
	Took     float64 `json:"tookSeconds"`
}

// jsonBoot is a boot override read back.
type jsonBoot struct {
	Device     string `json:"device"`
	Persistent *bool  `json:"persistent,omitempty"`
	Mode       string `json:"mode,omitempty"`
	Pending    bool   `json:"pending,omitempty"`
}

type jsonMedia struct {
	Image    string `json:"image,omitempty"`
	Inserted bool   `json:"inserted"`
}

// writeBMCJSON prints {"nodes": [...], "ok": N, "unverified": N,
// "failed": N, "tookSeconds": S}.
func writeBMCJSON(w io.Writer, res []bmc.Result, took time.Duration) error {
	out := struct {
		Nodes      []jsonNode `json:"nodes"`
		OK         int        `json:"ok"`
		Unverified int        `json:"unverified"`
		Failed     int        `json:"failed"`
		Took       float64    `json:"tookSeconds"`
	}{Nodes: []jsonNode{}, Took: roundSeconds(took)}
	for _, r := range res {
		n := jsonNode{Node: r.Node, BMC: r.BMC, Protocol: r.Info.Protocol, Vendor: r.Info.Vendor, Model: r.Info.Model,
			Quirks: r.Info.Quirks, Power: string(r.Power), Result: r.Status(), Evidence: r.Evidence, Took: roundSeconds(r.Took)}
		if r.Unverified != "" {
			n.Evidence = r.Unverified
		}
		if r.Err != nil {
			n.Error = result(r)
		}
		if b := r.Boot; b != nil {
			jb := &jsonBoot{Device: string(b.Device), Pending: b.Pending}
			if jb.Device == "" {
				jb.Device = "none"
			}
			if b.FlagsRead {
				p := b.Persistent
				jb.Persistent, jb.Mode = &p, string(b.Mode)
			}
			n.Boot = jb
		}
		if m := r.Media; m != nil {
			n.Media = &jsonMedia{Image: m.Image, Inserted: m.Inserted}
		}
		switch r.Status() {
		case "ok":
			out.OK++
		case "unverified":
			out.Unverified++
		default:
			out.Failed++
		}
		out.Nodes = append(out.Nodes, n)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func roundSeconds(d time.Duration) float64 {
	return float64(d.Round(10*time.Millisecond)) / float64(time.Second)
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
address, protocol, vendor and model, power state, time taken and result (-o json
for the same as JSON). Every value is what the BMC reported, never what was
asked. On and off are confirmed by reading the power state back; cycle and
reset by evidence of a restart (LastResetTime or BootProgress moving, off then
on observed). Where the BMC has no PowerCycle or offers no evidence, cycle is
done as off, confirm off, on, confirm on. A reset on a BMC that offers no
evidence says "sent, not verifiable" instead of ok; a reset of a node that is
off fails without being sent. The exit status is 1 when any node failed.`,
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
			return runBMC(cmd, g, &sf, args, columns{}, bmc.StatusStep())
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
				return runBMC(cmd, g, &f, args, columns{}, bmc.PowerStep(a.action))
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
		media      string
	)
	cmd := &cobra.Command{
		Use:   "bootdev pxe|disk|cd [NODE...]",
		Short: "Set nodes' next boot device through their BMCs",
		Long: `bootdev sets the device nodes boot from next: pxe (the network), disk, or cd (the
BMC's virtual CD, with --media URL: the image is inserted through Redfish
VirtualMedia, replacing any other, and read back). The setting applies to the
next boot only unless --persistent is given, in UEFI mode unless --legacy is
given. The override is then read back, polling for up to --verify-timeout
because some BMCs apply it seconds later, and the BOOT column shows what the
BMC holds: the whole override over Redfish, the device only over IPMI. A node
fails when the BMC holds something else, including another boot mode than
asked (a BMC that refuses BootSourceOverrideMode keeps the BIOS's mode): the
error says what to change. Where the BMC takes boot settings only through its
@Redfish.Settings object, the row says the override is pending until the next
power-on or reset. bootdev does not power the nodes: follow with
"provisioner power cycle" (or on).`,
		Example: `  provisioner bootdev pxe r11-gpu01 r11-gpu02 -f inventory/examples/routed/
  provisioner bootdev cd --media http://10.60.0.2:8081/iso/r13-cpu01.iso --legacy r13-cpu01 -f inventory/examples/routed/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, err := bmc.ParseBootDevice(args[0])
			if err != nil {
				return usageError("%v", err)
			}
			if efi && legacy {
				return usageError("--efi and --legacy exclude each other")
			}
			switch {
			case dev == bmc.BootCD && media == "":
				return usageError("bootdev cd needs --media URL: the http(s) URL of the image the BMC should insert")
			case dev != bmc.BootCD && media != "":
				return usageError("--media goes with bootdev cd, not %s", dev)
			}
			if media != "" {
				if u, err := url.Parse(media); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					return usageError("--media %q: want an http:// or https:// URL the BMC can reach", media)
				}
			}
			step := bmc.BootStep(dev, bmc.BootOptions{Persistent: persistent, Legacy: legacy})
			if dev == bmc.BootCD {
				return runBMC(cmd, g, &f, args[1:], columns{boot: true, media: true}, bmc.InsertMediaStep(media), step)
			}
			return runBMC(cmd, g, &f, args[1:], columns{boot: true}, step)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&efi, "efi", false, "boot in UEFI mode (the default)")
	cmd.Flags().BoolVar(&legacy, "legacy", false, "boot in legacy BIOS mode")
	cmd.Flags().BoolVar(&persistent, "persistent", false, "keep the device for every following boot, not only the next")
	cmd.Flags().StringVar(&media, "media", "", "with cd: the http(s) URL of the image to insert in the BMC's virtual CD")
	return cmd
}
