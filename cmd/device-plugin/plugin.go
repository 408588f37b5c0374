package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/slipway-dev/slipway/pkg/deviceplugin"
	"github.com/slipway-dev/slipway/pkg/devices"
	"github.com/slipway-dev/slipway/pkg/nodeagent"
)

// pluginFlags are the flags of the plugin server (the root command).
type pluginFlags struct {
	kubeletDir      string
	metricsAddr     string
	cdi             bool
	cdiDir          string
	pairResource    string
	pairGPU         string
	pairHCA         string
	excludeTopology []string
	rescan          time.Duration
	includeHostNICs bool
	stopTimeout     time.Duration
	nodeLabels      bool
	dra             *draFlags
}

// registerPluginFlags adds the server's flags to the root command's flag
// set and returns where they land; the root command runs the server.
func registerPluginFlags(fl *pflag.FlagSet) *pluginFlags {
	f := &pluginFlags{}
	fl.StringVar(&f.kubeletDir, "kubelet-dir", "/var/lib/kubelet/device-plugins",
		"the kubelet's device plugin directory (kubelet.sock and one socket per resource)")
	fl.StringVar(&f.metricsAddr, "metrics-addr", ":9420", "listen address of /metrics and /healthz; empty disables")
	fl.BoolVar(&f.cdi, "cdi", false, "name CDI devices in Allocate and write CDI specs to --cdi-dir (needs CDI in the container runtime)")
	fl.StringVar(&f.cdiDir, "cdi-dir", deviceplugin.DefaultCDIDir, "directory for the CDI specs slipway.dev-{gpu,hca,fpga}.yaml")
	fl.StringVar(&f.pairResource, "pair-resource", "",
		"advertise GPU-HCA pairs under one PCIe switch as this resource (e.g. slipway.dev/gpu-hca-pair); paired devices leave their own resources")
	fl.StringVar(&f.pairGPU, "pair-gpu-resource", devices.ResourceGPU, "resource whose GPUs --pair-resource pairs")
	fl.StringVar(&f.pairHCA, "pair-hca-resource", devices.ResourceHCA, "resource whose HCAs --pair-resource pairs")
	fl.StringSliceVar(&f.excludeTopology, "exclude-topology", nil, "resources to advertise without NUMA topology (comma-separated)")
	fl.DurationVar(&f.rescan, "rescan-interval", 10*time.Second, "how often to rediscover devices for hot-plug; 0 disables (SIGHUP and config changes still rescan)")
	fl.BoolVar(&f.includeHostNICs, "include-host-nics", false, "also advertise RDMA devices whose network interface the host uses")
	fl.DurationVar(&f.stopTimeout, "stop-timeout", deviceplugin.DefaultStopTimeout, "bound on the graceful stop of each resource's server")
	fl.BoolVar(&f.nodeLabels, "node-labels", false,
		"write slipway.dev/ labels (GPU product, count, memory, MIG; HCA link layer, rate; FPGA shell) to this node's Node object (--node-name) as --kubeconfig or the pod's service account; needs the RBAC in images/device-plugin/rbac.yaml")
	f.dra = registerDRAFlags(fl)
	return f
}

func (f *pluginFlags) validate() error {
	var errs []error
	if f.kubeletDir == "" {
		errs = append(errs, errors.New("--kubelet-dir is empty"))
	}
	if f.rescan < 0 {
		errs = append(errs, fmt.Errorf("--rescan-interval %v: want 0 or more", f.rescan))
	}
	if f.stopTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--stop-timeout %v: want more than 0", f.stopTimeout))
	}
	if f.pairResource != "" && (f.pairGPU == "" || f.pairHCA == "" || f.pairGPU == f.pairHCA) {
		errs = append(errs, errors.New("--pair-resource needs two different --pair-gpu-resource and --pair-hca-resource"))
	}
	if f.nodeLabels && f.dra.nodeName == "" {
		errs = append(errs, errors.New("--node-labels needs --node-name (or NODE_NAME from the downward API's spec.nodeName)"))
	}
	if err := f.dra.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// restConfig is the API access of --kubeconfig, or of the pod's service
// account without it.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
		return rc, nil
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("no --kubeconfig and not in a pod: %w", err)
	}
	return rc, nil
}

// run builds the node agent from the flags and runs it until ctx is done;
// SIGHUP reloads the config and rediscovers.
func (f *pluginFlags) run(ctx context.Context, g *globals) error {
	if err := f.validate(); err != nil {
		return err
	}
	mode, err := devices.ParseNVMLMode(g.nvml)
	if err != nil {
		return fmt.Errorf("--nvml: %w", err)
	}
	dp := &deviceplugin.Config{
		KubeletDir: f.kubeletDir, CDI: f.cdi, CDIDir: f.cdiDir, StopTimeout: f.stopTimeout,
		Resources: deviceplugin.BuildOptions{ExcludeTopology: f.excludeTopology},
	}
	if f.pairResource != "" {
		dp.Resources.Pairs = deviceplugin.PairConfig{Name: f.pairResource, GPUResource: f.pairGPU, HCAResource: f.pairHCA}
	}
	cfg := nodeagent.Config{
		Discovery:      devices.Config{Root: g.root, NVML: mode, IncludeHostNICs: f.includeHostNICs},
		ConfigFile:     g.config,
		RescanInterval: f.rescan,
		Log:            g.log,
	}
	if cfg.NodeLabels, err = f.labelsConfig(); err != nil {
		return err
	}
	if err := f.dra.frontends(&cfg, dp, g); err != nil {
		return err
	}
	if f.metricsAddr != "" {
		// Bound before anything is served, so that a taken port fails
		// the start; the agent closes it.
		if cfg.Metrics, err = net.Listen("tcp", f.metricsAddr); err != nil {
			return fmt.Errorf("listen for metrics on %s: %w", f.metricsAddr, err)
		}
	}
	a, err := nodeagent.New(cfg)
	if err != nil {
		if cfg.Metrics != nil {
			cfg.Metrics.Close()
		}
		return err
	}
	// Before serving, so that a SIGHUP sent once the plugin is registered
	// is never the default (fatal) one.
	stop := reloadOnHUP(ctx, a)
	defer stop()
	return a.Run(ctx)
}

// labelsConfig is the node labeller's configuration with --node-labels,
// else nil. It uses the same API identity as the DRA driver: --kubeconfig,
// or the pod's service account.
func (f *pluginFlags) labelsConfig() (*nodeagent.LabelsConfig, error) {
	if !f.nodeLabels {
		return nil, nil
	}
	rc, err := restConfig(f.dra.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--node-labels: %w", err)
	}
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("--node-labels: %w", err)
	}
	return &nodeagent.LabelsConfig{NodeName: f.dra.nodeName, APIServer: rc.Host, Client: hc}, nil
}

// reloadOnHUP calls a.Reload on every SIGHUP until ctx ends or the
// returned function is called.
func reloadOnHUP(ctx context.Context, a *nodeagent.Agent) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				a.Reload()
			}
		}
	}()
	return func() { signal.Stop(hup); cancel() }
}
