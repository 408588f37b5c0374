package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/provision/assemble"
	"github.com/slipway-dev/slipway/pkg/simrack"
)

// demoFlags are demo's own flags.
type demoFlags struct {
	nodes         int
	controlPlanes int
	firmware      time.Duration
	osBoot        time.Duration
	fails         []string
	seed          uint64
	stateDir      string
}

var demoDefaults = provisionDefaults{
	parallelHelp: "how many nodes are provisioned at once (default: all of them, --nodes)",
	earlyNetboot: true,
	timeoutHelp:  " (default: scaled to the simulated boot times, the node count and this machine's load)",
}

func newDemoCmd(g *globals) *cobra.Command {
	var f provisionFlags
	var d demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run up against a simulated rack on loopback (no hardware, no root)",
		Long: "demo starts an in-process simulated rack — one Redfish BMC simulator per node on 127.0.0.1, each\n" +
			"attached to a simulated machine whose firmware really speaks DHCP (through a relay on 127.0.0.2),\n" +
			"TFTP and HTTP to the provisioner's own boot services on high loopback ports, and whose OS runs\n" +
			"the node config it fetched — and runs the same code as `up` against it, with the same live view\n" +
			"and summary. It needs no root and writes only to a temporary directory, removed when it ends\n" +
			"(or --state-dir, which keeps the journal). The simulation has no Kubernetes API: the node config\n" +
			"reports the kubeadm step instead of running kubeadm, and a node counts as Ready once it reported\n" +
			"its join. The simulated rack lives in this process, so a stopped demo cannot be resumed.\n\n" +
			"Inject failures with --fail NODE=no-pxe|hang-os|dead-bmc (repeatable).",
		Example: "  provisioner demo\n  provisioner demo --nodes 1000 -o plain | tail\n  provisioner demo --fail node-0003=no-pxe --fail node-0005=hang-os",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			if err := d.check(); err != nil {
				return err
			}
			return runDemo(cmd.Context(), g, &f, &d)
		},
	}
	f.register(cmd.Flags(), demoDefaults)
	fl := cmd.Flags()
	fl.IntVar(&d.nodes, "nodes", 16, "number of simulated nodes")
	fl.IntVar(&d.controlPlanes, "control-planes", 1, "how many of them are control-plane nodes")
	fl.DurationVar(&d.firmware, "boot-firmware", 300*time.Millisecond, "simulated firmware time from power on to the first DHCP request (each node draws up to 1.5x)")
	fl.DurationVar(&d.osBoot, "boot-os", 700*time.Millisecond, "simulated OS time from kernel to the join report (each node draws up to 1.5x)")
	fl.StringArrayVar(&d.fails, "fail", nil, "inject a failure: NODE=no-pxe, NODE=hang-os or NODE=dead-bmc (repeatable)")
	fl.Uint64Var(&d.seed, "seed", 0, "seed for the simulated boot times (0: random)")
	// demo's own --state-dir shadows the global one: its default differs.
	fl.StringVar(&d.stateDir, "state-dir", "", "state directory (journal, lock) to keep after the demo (default: one in the temporary directory, removed when the demo ends)")
	return cmd
}

func (d *demoFlags) check() error {
	if d.nodes < 1 || d.nodes > 60000 {
		return usageError("--nodes %d: want 1 to 60000", d.nodes)
	}
	if d.controlPlanes < 1 || d.controlPlanes > d.nodes {
		return usageError("--control-planes %d: want 1 to --nodes", d.controlPlanes)
	}
	if d.firmware <= 0 || d.osBoot <= 0 {
		return usageError("--boot-firmware and --boot-os: want positive durations")
	}
	return nil
}

// faults parses --fail.
func (d *demoFlags) faults() (map[string]simrack.Fault, error) {
	faults := map[string]simrack.Fault{}
	for _, s := range d.fails {
		node, name, ok := strings.Cut(s, "=")
		fault, err := simrack.ParseFault(name)
		if !ok || err != nil || fault == simrack.FaultNone {
			return nil, usageError("--fail %q: want NODE=no-pxe, NODE=hang-os or NODE=dead-bmc", s)
		}
		faults[node] = fault
	}
	return faults, nil
}

// demoLoad is how hard the demo will work this machine: the allowance for
// every node's work on this machine's CPUs (10 ms per node per CPU), and
// how busy the machine already is (its load average over its CPU count, at
// least 1). On a loaded two-core machine a thousand nodes netboot far
// slower than the simulated times say.
type demoLoad struct {
	work    time.Duration
	stretch float64
}

func newDemoLoad(nodes int, loadAvg float64) demoLoad {
	cpus := runtime.NumCPU()
	return demoLoad{work: time.Duration(nodes) * 10 * time.Millisecond / time.Duration(cpus), stretch: max(1, loadAvg/float64(cpus))}
}

// scale returns base (at least 3 s) plus the work allowance, stretched.
func (l demoLoad) scale(base time.Duration) time.Duration {
	return time.Duration(float64(max(base, 3*time.Second)+l.work) * l.stretch)
}

// scaledTimeouts fills the timeouts not given: a phase gets a few times
// the slowest simulated step it waits for, scaled with the load.
func scaledTimeouts(t provision.Timeouts, d *demoFlags, l demoLoad) provision.Timeouts {
	slowest := time.Duration(1.5 * float64(d.firmware+d.osBoot))
	set := func(v *time.Duration, base time.Duration) {
		if *v == 0 {
			*v = l.scale(base)
		}
	}
	set(&t.DHCP, 3*d.firmware+2*time.Second)
	set(&t.Netboot, 2*slowest+2*time.Second)
	set(&t.Join, 3*slowest+2*time.Second)
	set(&t.Ready, 3*slowest+2*time.Second)
	// A BMC call: connect (bmc's ConnectTimeout) and the call itself.
	set(&t.BMC, 2*demoBMC(l).ConnectTimeout+demoBMC(l).OpTimeout)
	return t
}

// demoBMC are BMC settings for simulated BMCs: they answer at once when
// the machine is idle, so polls are fast and timeouts short, scaled with
// the load.
func demoBMC(l demoLoad) bmc.Config {
	return bmc.Config{ConnectTimeout: l.scale(5 * time.Second), OpTimeout: l.scale(5 * time.Second), VerifyTimeout: l.scale(10 * time.Second),
		Backoff: []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}}
}

// demoOptions are the assembly's options for a simulated world; the
// caller runs its rack beside (Options.Beside).
func demoOptions(w *simrack.World, f *provisionFlags, d *demoFlags, stateDir string, load demoLoad) assemble.Options {
	opts := assemble.Options{
		Inventory: w.Inventory, StateDir: stateDir, Command: "provisioner demo", Join: assemble.JoinReportOnly,
		Boot: assemble.Boot{TFTPRoot: w.TFTPRoot, AssetDir: w.AssetDir, Listeners: w.Listeners, SkipInterfaceCheck: true},
		BMC:  demoBMC(load), Backoff: 200 * time.Millisecond,
	}
	f.apply(&opts)
	if opts.Parallel == 0 {
		opts.Parallel = d.nodes
	}
	opts.Timeouts = scaledTimeouts(opts.Timeouts, d, load)
	return opts
}

func runDemo(ctx context.Context, g *globals, f *provisionFlags, d *demoFlags) error {
	faults, err := d.faults()
	if err != nil {
		return err
	}
	dir, err := newDemoDir(g.stderr)
	if err != nil {
		return err
	}
	defer dir.remove()
	stateDir, kept := d.stateDir, true
	if stateDir == "" {
		stateDir, kept = dir.path+"/state", false
	}
	w, err := simrack.NewWorld(simrack.WorldConfig{Dir: dir.path, Nodes: d.nodes, ControlPlanes: d.controlPlanes,
		Firmware: d.firmware, OS: d.osBoot, Jitter: 0.5, Faults: faults, Seed: d.seed})
	if err != nil {
		if strings.Contains(err.Error(), "no such node") {
			return usageError("--fail: %v", err)
		}
		return err
	}
	defer w.Close()
	loadAvg := loadAverage()
	opts := demoOptions(w, f, d, stateDir, newDemoLoad(d.nodes, loadAvg))
	opts.Beside = append(opts.Beside, w.Rack.Run)
	fmt.Fprintf(g.stderr, "demo: %d simulated nodes (%d control plane), Redfish BMCs on 127.0.0.1, DHCP %s via relay 127.0.0.2, TFTP %s, HTTP %s; timeouts dhcp %s, netboot %s, join %s (load %.1f on %d CPUs)\n",
		d.nodes, d.controlPlanes, w.Listeners.DHCP.LocalAddr(), w.Listeners.TFTP.LocalAddr(), w.Listeners.HTTP.Addr(),
		opts.Timeouts.DHCP.Round(100*time.Millisecond), opts.Timeouts.Netboot.Round(100*time.Millisecond), opts.Timeouts.Join.Round(100*time.Millisecond), loadAvg, runtime.NumCPU())
	start := time.Now()
	cpu0, _ := processUsage()
	return runProvisioner(ctx, g, f.output, opts, runSpec{
		interrupted: func() string {
			if kept {
				return fmt.Sprintf("interrupted; the simulated rack ran in this process and is gone, so this demo cannot be resumed: run demo again (the journal in %s shows where each node stood: provisioner status --state-dir %s)", stateDir, stateDir)
			}
			return "interrupted; the simulated rack ran in this process and its temporary directory is removed: run demo again"
		},
		after: func(res *assemble.Result) {
			demoFiguresOf(res.Report, w.Rack.Stats(), time.Since(start), cpu0).write(g.stderr)
		},
	})
}

// demoFigures are what a demo run cost and how it kept up with the
// simulated boots.
type demoFigures struct {
	Nodes int
	Ready int
	Wall  time.Duration
	// Slowest is the slowest simulated machine's own boot (firmware + OS);
	// SlowestTook the slowest power-on-to-join actually seen.
	Slowest, SlowestTook time.Duration
	// CPU is the whole process's user+system CPU: provisioner, boot
	// services and the simulated BMCs and machines together.
	CPU time.Duration
	// MaxRSS is the process's peak resident set, in bytes.
	MaxRSS int64
}

// demoFiguresOf measures the run; cpu0 is the process CPU at its start.
func demoFiguresOf(rep *provision.Report, stats []simrack.MachineStats, wall, cpu0 time.Duration) demoFigures {
	fg := demoFigures{Nodes: len(rep.Nodes), Ready: rep.Ready, Wall: wall}
	for _, s := range stats {
		fg.Slowest = max(fg.Slowest, s.Boot)
		fg.SlowestTook = max(fg.SlowestTook, s.Took)
	}
	cpu, rss := processUsage()
	fg.CPU, fg.MaxRSS = cpu-cpu0, rss
	return fg
}

// processUsage returns the process's CPU time so far and its peak RSS in bytes.
func processUsage() (time.Duration, int64) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Maxrss * 1024
}

func (fg demoFigures) write(w io.Writer) {
	fmt.Fprintf(w, "demo: wall %s; slowest simulated boot %s (firmware+OS), slowest node power-on to join %s\n",
		fg.Wall.Round(time.Millisecond), fg.Slowest.Round(time.Millisecond), fg.SlowestTook.Round(time.Millisecond))
	fmt.Fprintf(w, "demo: process CPU %s = %s per node (provisioner, boot services, %d simulated BMCs and machines together); peak RSS %d MiB\n",
		fg.CPU.Round(time.Millisecond), (fg.CPU / time.Duration(max(fg.Nodes, 1))).Round(time.Microsecond), fg.Nodes, fg.MaxRSS>>20)
}
