package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/slipway-dev/slipway/internal/cmdlog"
	"github.com/slipway-dev/slipway/pkg/addons"
	"github.com/slipway-dev/slipway/pkg/kubeadm"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/provision/assemble"
)

// provisionFlags are the flags up and demo share. Each command registers
// them with its own defaults, so each command's help shows its own.
type provisionFlags struct {
	output       string
	parallel     int
	attempts     int
	timeouts     provision.Timeouts
	earlyNetboot bool
}

// provisionDefaults are one command's defaults for provisionFlags.
type provisionDefaults struct {
	parallel     int
	parallelHelp string
	earlyNetboot bool
	timeouts     provision.Timeouts
	timeoutHelp  string // appended to each phase timeout's help
}

var upDefaults = provisionDefaults{
	parallel: 64, parallelHelp: "how many nodes are provisioned at once",
	timeouts: provision.Timeouts{DHCP: 5 * time.Minute, Netboot: 10 * time.Minute, Join: 15 * time.Minute, Ready: 10 * time.Minute, BMC: 30 * time.Second},
}

func (f *provisionFlags) register(fl *pflag.FlagSet, d provisionDefaults) {
	fl.StringVarP(&f.output, "output", "o", "auto", "progress output: auto (a live table on a terminal, plain lines otherwise), table, plain or json")
	fl.IntVar(&f.parallel, "parallel", d.parallel, d.parallelHelp)
	fl.BoolVar(&f.earlyNetboot, "early-netboot", d.earlyNetboot, "power-cycle and netboot later nodes while the control plane comes up; their config and join token wait for their turn (the config request is held open)")
	fl.IntVar(&f.attempts, "attempts", 3, "power cycles per node when no DHCP request arrives or netboot stalls")
	fl.DurationVar(&f.timeouts.DHCP, "dhcp-timeout", d.timeouts.DHCP, "wait this long for a DHCP request after power on"+d.timeoutHelp)
	fl.DurationVar(&f.timeouts.Netboot, "netboot-timeout", d.timeouts.Netboot, "a netbooting node may go this long without its next step (DHCP, TFTP, script, kernel, initrd, config) before it counts as stalled"+d.timeoutHelp)
	fl.DurationVar(&f.timeouts.Join, "join-timeout", d.timeouts.Join, "wait this long from config fetched to the join report"+d.timeoutHelp)
	fl.DurationVar(&f.timeouts.Ready, "ready-timeout", d.timeouts.Ready, "wait this long from the join to Node Ready"+d.timeoutHelp)
	fl.DurationVar(&f.timeouts.BMC, "bmc-timeout", d.timeouts.BMC, "bound on each BMC call"+d.timeoutHelp)
}

func (f *provisionFlags) check() error {
	switch f.output {
	case "auto", "table", "plain", "json":
	default:
		return usageError("--output %q: want auto, table, plain or json", f.output)
	}
	if f.parallel < 0 {
		return usageError("--parallel %d: want at least 1", f.parallel)
	}
	if f.attempts < 1 {
		return usageError("--attempts %d: want at least 1", f.attempts)
	}
	return nil
}

// apply copies the flags into opts.
func (f *provisionFlags) apply(opts *assemble.Options) {
	opts.Parallel, opts.MaxAttempts, opts.Timeouts, opts.EarlyNetboot = f.parallel, f.attempts, f.timeouts, f.earlyNetboot
}

func newUpCmd(g *globals) *cobra.Command {
	var f provisionFlags
	var boot bootFlags
	var format string
	cmd := &cobra.Command{
		Use:   "up -f PATH...",
		Short: "Provision every enabled node until it is a Ready Kubernetes node",
		Long: "up takes every enabled node of the inventory from whatever state it is in to a Ready Kubernetes\n" +
			"node: the first control-plane node inits the cluster, the other control-plane nodes join, then the\n" +
			"workers, with bounded parallelism. For each node it issues a join token and node config, powers it\n" +
			"off, sets a one-time network boot, powers it on and follows it through DHCP, netboot, config fetch,\n" +
			"join and Node Ready, serving the network boot itself (the same services and flags as `serve`;\n" +
			"Prometheus metrics and /healthz on the boot HTTP port). Every transition is journaled in\n" +
			"--state-dir: when up is killed and started again it resumes, and a node that already booted its\n" +
			"OS is never power-cycled again. Exit status 1 when a node failed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			if f.parallel == 0 {
				return usageError("--parallel 0: want at least 1")
			}
			fmtv, err := kubeadm.ParseFormat(format)
			if err != nil {
				return usageError("--node-config-format: %v", err)
			}
			b, err := boot.options(g)
			if err != nil {
				return err
			}
			inv, err := g.loadInventory()
			if err != nil {
				return invalidInventory(err)
			}
			opts := assemble.Options{Inventory: inv, StateDir: g.stateDir, Command: "provisioner up", Boot: b,
				Media: boot.media(), Join: assemble.JoinKubeadm, NodeConfigFormat: fmtv}
			f.apply(&opts)
			return runProvisioner(cmd.Context(), g, f.output, opts, runSpec{
				interrupted: func() string {
					return "interrupted; run up again to resume from the journal in " + g.stateDir
				},
				retryHint: "; run up again to retry them",
				announce:  true,
			})
		},
	}
	f.register(cmd.Flags(), upDefaults)
	boot.register(cmd.Flags())
	boot.registerMedia(cmd.Flags())
	cmd.Flags().StringVar(&format, "node-config-format", "cloud-config", "node configuration format: cloud-config or script, for nodes whose boot.configFormat says none")
	return cmd
}

// runSpec is what differs between up and demo around a run.
type runSpec struct {
	// interrupted says what is true after Ctrl-C.
	interrupted func() string
	// after is called with the result before the summary (demo figures).
	after func(res *assemble.Result)
	// retryHint follows the reasons in the failure message.
	retryHint string
	// announce prints where the provisioner serves before the run.
	announce bool
}

// runProvisioner assembles and runs opts with progress on stdout, then
// prints the summary and returns the exit status as an error.
func runProvisioner(ctx context.Context, g *globals, output string, opts assemble.Options, spec runSpec) error {
	if len(opts.Inventory.Enabled()) == 0 {
		fmt.Fprintln(g.stdout, "no enabled nodes in the inventory: nothing to do")
		return nil
	}
	progress, draw := progressOutput(g.stdout, output)
	opts.Progress = progress
	opts.Log, opts.ServiceLog = runLoggers(g, draw != nil)
	p, err := assemble.New(opts)
	if err != nil {
		return err
	}
	if spec.announce {
		e := p.Endpoints()
		line := fmt.Sprintf("%s: %d nodes; boot HTTP %s (also /metrics, /healthz)", opts.Command, len(opts.Inventory.Enabled()), e.Boot)
		if e.Media != "" {
			line += "; virtual-media CDs " + e.Media
		}
		fmt.Fprintln(g.stderr, line)
	}
	stop := startDrawing(draw)
	res, runErr := p.Run(ctx)
	stop()
	if res.Report != nil {
		if spec.after != nil {
			spec.after(res)
		}
		if output == "json" {
			writeJSON(g.stdout, res.Report)
		} else {
			res.Report.WriteSummary(g.stdout)
		}
	}
	if res.Addons != nil && output != "json" {
		fmt.Fprintln(g.stdout, addonSummary(res.Addons))
	}
	switch {
	case runErr != nil && !errors.Is(runErr, context.Canceled):
		return runErr
	case ctx.Err() != nil:
		return errors.New(spec.interrupted())
	case res.Report != nil && res.Report.Failed > 0:
		return &exitError{code: exitFailure, err: fmt.Errorf("%d of %d nodes failed (see the reasons above%s)",
			res.Report.Failed, len(res.Report.Nodes), spec.retryHint)}
	}
	return nil
}

// runLoggers returns the operational and boot-service loggers of a run.
// The boot services log one line per boot event, which repeats what the
// progress output shows: kept for --log-level debug. A live table redraws
// the terminal, so then only errors may interrupt it.
func runLoggers(g *globals, table bool) (*slog.Logger, *slog.Logger) {
	log := g.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	svc := log
	if g.logLevel != "debug" {
		svc = cmdlog.AtLeast(log, slog.LevelWarn)
	}
	if table {
		log, svc = cmdlog.AtLeast(log, slog.LevelError), cmdlog.AtLeast(svc, slog.LevelError)
	}
	return log, svc
}

// startDrawing redraws the live table every 250 ms until the returned
// function is called, which draws it a last time.
func startDrawing(draw func()) (stop func()) {
	if draw == nil {
		return func() {}
	}
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				draw()
			case <-quit:
				draw()
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}

// progressOutput picks the progress sink: a live table on a terminal,
// plain lines or JSON otherwise. draw is non-nil for the table.
func progressOutput(w io.Writer, mode string) (func(provision.Update), func()) {
	if mode == "auto" {
		mode = "plain"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = "table"
		}
	}
	switch mode {
	case "json":
		return provision.NewJSONPrinter(w).Update, nil
	case "table":
		h := 40
		if f, ok := w.(*os.File); ok {
			if _, rows, err := term.GetSize(int(f.Fd())); err == nil && rows > 5 {
				h = rows - 1
			}
		}
		t := provision.NewTable(w, h)
		return t.Update, t.Draw
	}
	return provision.NewLinePrinter(w).Update, nil
}

// addonSummary is what up prints about the inventory's add-ons: how many
// applied, then one line for each that failed, with its name and why.
func addonSummary(r *assemble.AddonsResult) string {
	count := map[addons.Action]int{}
	for _, o := range r.Objects {
		count[o.Action]++
	}
	var failed []assemble.AddonOutcome
	for _, a := range r.Addons {
		if a.Err != nil {
			failed = append(failed, a)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "add-ons: %d of %d applied (%d objects: %d created, %d configured, %d unchanged)",
		len(r.Addons)-len(failed), len(r.Addons), len(r.Objects), count[addons.Created], count[addons.Changed], count[addons.Unchanged])
	if len(failed) == 0 {
		return b.String()
	}
	fmt.Fprintf(&b, "; %d not applied (fix them, then run up again or provisioner config addons):", len(failed))
	for _, a := range failed {
		fmt.Fprintf(&b, "\n  add-on %s: %s", a.Name, strings.ReplaceAll(a.Err.Error(), "\n", "\n    "))
	}
	return b.String()
}
