package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/slipway-dev/slipway/pkg/addons"
	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/kubeadm"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/provision/wire"
	"github.com/slipway-dev/slipway/pkg/pxe"
	"github.com/slipway-dev/slipway/pkg/pxe/httpboot"
	"github.com/slipway-dev/slipway/pkg/pxe/tftp"
)

// upFlags are the flags up and demo share.
type upFlags struct {
	output      string
	parallel    int
	metricsAddr string
	attempts    int
	timeouts    provision.Timeouts
	earlyBoot   bool
}

func (f *upFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.output, "output", "o", "auto", "progress output: auto (a live table on a terminal, plain lines otherwise), table, plain or json")
	fl.IntVar(&f.parallel, "parallel", 64, "how many nodes are provisioned at once")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address (such as 127.0.0.1:9101); empty: off")
	fl.BoolVar(&f.earlyBoot, "early-netboot", false, "power-cycle and netboot later nodes while the control plane comes up; their config and join token wait for their turn (the config request is held open)")
	fl.IntVar(&f.attempts, "attempts", 3, "power cycles per node when no DHCP request arrives or netboot stalls")
	fl.DurationVar(&f.timeouts.DHCP, "dhcp-timeout", 5*time.Minute, "wait this long for a DHCP request after power on")
	fl.DurationVar(&f.timeouts.Netboot, "netboot-timeout", 10*time.Minute, "wait this long for the script, kernel, initrd and config")
	fl.DurationVar(&f.timeouts.Join, "join-timeout", 15*time.Minute, "wait this long from config fetched to the join phone-home")
	fl.DurationVar(&f.timeouts.Ready, "ready-timeout", 10*time.Minute, "wait this long from the join to Node Ready")
	fl.DurationVar(&f.timeouts.BMC, "bmc-timeout", 30*time.Second, "bound on each BMC call")
}

func (f *upFlags) check() error {
	switch f.output {
	case "auto", "table", "plain", "json":
	default:
		return usageError("--output %q: want auto, table, plain or json", f.output)
	}
	if f.parallel < 1 {
		return usageError("--parallel %d: want at least 1", f.parallel)
	}
	if f.attempts < 1 {
		return usageError("--attempts %d: want at least 1", f.attempts)
	}
	return nil
}

func newUpCmd(g *globals) *cobra.Command {
	var f upFlags
	var tftpRoot, assets, format string
	var httpPort, dhcpPort, clientPort, tftpPort uint16
	cmd := &cobra.Command{
		Use:   "up -f PATH...",
		Short: "Provision every enabled node until it is a Ready Kubernetes node",
		Long: "up takes every enabled node of the inventory from whatever state it is in to a Ready Kubernetes\n" +
			"node: the first control-plane node inits the cluster, the other control-plane nodes join, then the\n" +
			"workers, with bounded parallelism. For each node it issues a join token and node config, powers it\n" +
			"off, sets a one-time network boot, powers it on and follows it through DHCP, netboot, config fetch,\n" +
			"join and Node Ready, serving the network boot itself (as `serve` does). Every transition is\n" +
			"journaled in --state-dir: when up is killed and started again it resumes, and a node that already\n" +
			"booted its OS is never power-cycled again. Exit status 1 when a node failed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			fmtv, err := kubeadm.ParseFormat(format)
			if err != nil {
				return usageError("--node-config-format: %v", err)
			}
			inv, err := g.loadInventory()
			if err != nil {
				return invalidInventory(err)
			}
			boot, client, rc, err := newBootstrapper(inv, g, fmtv, httpPort)
			if err != nil {
				return err
			}
			var applyAddons func(context.Context) ([]addons.Result, error)
			if len(inv.Addons) > 0 && rc != nil {
				a, err := addons.New(addons.Config{REST: rc, Log: g.log})
				if err != nil {
					return err
				}
				applyAddons = func(ctx context.Context) ([]addons.Result, error) {
					return a.ApplyWhenServing(ctx, inv.Addons, 10*time.Second)
				}
			}
			var ready provision.Readiness = boot
			if client != nil {
				ready = &listReadiness{client: client, maxAge: time.Second}
			}
			render := wire.NewJournaledRenderer(boot)
			svc, err := pxe.New(pxe.Config{
				Inventory: inv, TFTPRoot: tftpRoot, AssetDir: assets, Renderer: render,
				HTTPPort: httpPort, DHCPPort: dhcpPort, DHCPClientPort: clientPort, TFTPPort: tftpPort,
				Log: serviceLogger(g),
			})
			if err != nil {
				return err
			}
			return runUp(cmd.Context(), g, &f, upDeps{
				inv: inv, svc: svc, issuer: issuerOf(boot), readiness: ready, command: "provisioner up", render: render,
				addons: applyAddons,
			})
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&tftpRoot, "tftp-root", tftp.DefaultRoot, "directory of iPXE binaries served over TFTP (Debian's ipxe package fills the default)")
	fl.StringVar(&assets, "assets", "", "directory of kernels and initrds the profiles name")
	fl.StringVar(&format, "node-config-format", "cloud-config", "node configuration format: cloud-config or script")
	fl.Uint16Var(&httpPort, "http-port", 0, "boot HTTP port (default: the inventory's network.provisioner.httpPort)")
	fl.Uint16Var(&dhcpPort, "dhcp-port", 0, "DHCP server port, for labs and tests (default 67)")
	fl.Uint16Var(&clientPort, "dhcp-client-port", 0, "DHCP client port, for labs and tests (default 68)")
	fl.Uint16Var(&tftpPort, "tftp-port", 0, "TFTP port, for labs and tests (default 69)")
	return cmd
}

// newBootstrapper loads (or creates) the cluster PKI in the state directory
// and returns the kubeadm bootstrapper with an admin client for the
// control-plane endpoint (used only once the API answers) and that client's
// configuration. The client mints short-lived admin certificates as it goes,
// so a run longer than one certificate's life keeps its API access.
func newBootstrapper(inv *inventory.Inventory, g *globals, format kubeadm.Format, httpPort uint16) (*kubeadm.Bootstrapper, kubernetes.Interface, *rest.Config, error) {
	pki, err := kubeadm.EnsurePKI(kubeadm.PKIConfig{Dir: g.stateDir + "/pki", Log: g.log})
	if err != nil {
		return nil, nil, nil, err
	}
	var client kubernetes.Interface
	var rc *rest.Config
	if ep := inv.Cluster.ControlPlaneEndpoint; ep != "" {
		rc = pki.AdminRESTConfig("https://"+ep, 0)
		rc.Timeout = 10 * time.Second
		if client, err = kubernetes.NewForConfig(rc); err != nil {
			return nil, nil, nil, fmt.Errorf("cluster api client for %s: %w", ep, err)
		}
	}
	port := httpPort
	if port == 0 {
		port = inv.Network.HTTPPort
	}
	if port == 0 {
		port = httpboot.DefaultPort
	}
	b, err := kubeadm.New(kubeadm.Config{
		Inventory: inv, PKI: pki, Client: client, Format: format, Log: g.log,
		PhoneHomeURL: "http://" + net.JoinHostPort(inv.Network.Address.String(), fmt.Sprint(port)),
	})
	return b, client, rc, err
}

// listReadiness answers readiness from one LIST of the cluster's nodes,
// refreshed at most every maxAge, instead of one GET per joining node per
// poll: a rack of 1000 joining nodes costs the API server one request a
// second, not a thousand.
type listReadiness struct {
	client kubernetes.Interface
	maxAge time.Duration

	mu      sync.Mutex
	fetched time.Time
	ready   map[string]bool
	err     error
}

// Ready reports whether node exists and has Ready=True.
func (l *listReadiness) Ready(ctx context.Context, node string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ready == nil || time.Since(l.fetched) >= l.maxAge {
		l.fetched = time.Now()
		list, err := l.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			l.ready, l.err = map[string]bool{}, fmt.Errorf("list nodes: %w", err)
		} else {
			l.ready, l.err = make(map[string]bool, len(list.Items)), nil
			for i := range list.Items {
				l.ready[list.Items[i].Name] = kubeadm.NodeReady(&list.Items[i])
			}
		}
	}
	return l.ready[node], l.err
}

// upDeps are what differs between `up` and `demo`.
type upDeps struct {
	inv       *inventory.Inventory
	svc       *pxe.Services
	issuer    provision.Issuer
	readiness provision.Readiness
	command   string
	// bmcTimeout overrides the BMC client's own timeouts (demo).
	bmcConfig bmc.Config
	// extra runs beside the services (the demo's simulated rack).
	extra func(ctx context.Context) error
	// after is called with the report before the summary (demo figures).
	after func(rep *provision.Report)
	// readyPoll is how often readiness is asked (0: the orchestrator's default).
	readyPoll time.Duration
	// render is the boot server's renderer, told about the orchestrator.
	render *wire.JournaledRenderer
	// addons applies the inventory's add-ons once the API answers (nil: none).
	addons func(ctx context.Context) ([]addons.Result, error)
}

// quietLogger returns log with records below min dropped, so per-event
// service logs do not interleave with the progress output.
func quietLogger(log *slog.Logger, min slog.Level) *slog.Logger {
	return slog.New(minLevel{log.Handler(), min})
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}
func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(a), m.min}
}
func (m minLevel) WithGroup(n string) slog.Handler { return minLevel{m.Handler.WithGroup(n), m.min} }

// serviceLogger is the boot services' logger under up and demo: their one
// line per boot event repeats what the progress output shows, so it is kept
// for --log-level debug.
func serviceLogger(g *globals) *slog.Logger {
	if g.log == nil {
		return nil
	}
	if g.logLevel == "debug" {
		return g.log
	}
	return quietLogger(g.log, slog.LevelWarn)
}

// runUp runs the boot services and the orchestrator until every node is
// Ready or failed, shows progress and prints the final report.
func runUp(ctx context.Context, g *globals, f *upFlags, d upDeps) error {
	log := g.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out, draw := progressOutput(g.stdout, f.output)
	if draw != nil {
		// The live table redraws the terminal: only errors may interrupt it.
		log = quietLogger(log, slog.LevelError)
	}
	nodes := d.inv.Enabled()
	if len(nodes) == 0 {
		fmt.Fprintln(g.stdout, "no enabled nodes in the inventory: nothing to do")
		return nil
	}
	var metrics *provision.Metrics
	reg := prometheus.NewRegistry()
	if f.metricsAddr != "" {
		m, err := provision.NewMetrics(reg)
		if err != nil {
			return err
		}
		metrics = m
	}
	// Beside the boot services: the demo's simulated rack, the add-ons, the
	// metrics server.
	var beside []func(context.Context) error
	if d.extra != nil {
		beside = append(beside, d.extra)
	}
	// Add-ons (the pod network above all: no node is Ready without one) are
	// applied as soon as the first control plane's API answers, while the
	// other nodes join. A failure is reported, not fatal to the run.
	var addonResults []addons.Result
	var addonErr error
	if d.addons != nil {
		beside = append(beside, func(ctx context.Context) error {
			addonResults, addonErr = d.addons(ctx)
			return nil
		})
	}
	if f.metricsAddr != "" {
		srv := &http.Server{Addr: f.metricsAddr, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		ln, err := net.Listen("tcp", f.metricsAddr)
		if err != nil {
			return fmt.Errorf("metrics listen on %s: %w", f.metricsAddr, err)
		}
		defer ln.Close()
		beside = append(beside, func(ctx context.Context) error {
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				srv.Shutdown(sctx)
			}()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve metrics on %s: %w", f.metricsAddr, err)
			}
			return nil
		})
	}
	p, err := wire.New(wire.Config{
		Nodes: nodes, StateDir: g.stateDir, Command: d.command, Services: d.svc, Renderer: d.render,
		BMC: d.bmcConfig, Issuer: d.issuer, Readiness: d.readiness, ReadyPoll: d.readyPoll,
		Parallel: f.parallel, MaxAttempts: f.attempts, Timeouts: f.timeouts, EarlyNetboot: f.earlyBoot,
		Progress: out, Metrics: metrics, Beside: beside, Log: log,
	})
	if err != nil {
		return err
	}
	drawDone := make(chan struct{})
	stopDraw := make(chan struct{})
	go func() {
		defer close(drawDone)
		if draw == nil {
			return
		}
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				draw()
			case <-stopDraw:
				draw()
				return
			}
		}
	}()
	rep, runErr := p.Run(ctx)
	close(stopDraw)
	<-drawDone
	if rep != nil {
		if d.after != nil {
			d.after(rep)
		}
		if f.output == "json" {
			writeJSON(g.stdout, rep)
		} else {
			rep.WriteSummary(g.stdout)
		}
	}
	if d.addons != nil && f.output != "json" {
		fmt.Fprintln(g.stdout, addonSummary(addonResults, addonErr))
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted; run up again to resume from the journal in %s", g.stateDir)
	}
	if rep != nil && rep.Failed > 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("%d of %d nodes failed (see the reasons above; run up again to retry them)", rep.Failed, len(rep.Nodes))}
	}
	return nil
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

// issuerOf adapts the kubeadm bootstrapper to the orchestrator's issuer.
func issuerOf(b *kubeadm.Bootstrapper) provision.Issuer { return kubeadmIssuer{b} }

type kubeadmIssuer struct{ b *kubeadm.Bootstrapper }

func (k kubeadmIssuer) Issue(ctx context.Context, n inventory.Node, kind provision.JoinKind) error {
	return k.b.Issue(ctx, n, kubeadm.Kind(kind))
}

func (k kubeadmIssuer) Revoke(ctx context.Context, n inventory.Node) error { return k.b.Revoke(ctx, n) }

// addonSummary is the one line up prints about the inventory's add-ons.
func addonSummary(res []addons.Result, err error) string {
	if err != nil {
		return fmt.Sprintf("add-ons: not applied: %v (fix it, then run up again or provisioner config addons)", err)
	}
	count := map[addons.Action]int{}
	for _, r := range res {
		count[r.Action]++
	}
	return fmt.Sprintf("add-ons: %d objects applied (%d created, %d configured, %d unchanged)",
		len(res), count[addons.Created], count[addons.Changed], count[addons.Unchanged])
}
