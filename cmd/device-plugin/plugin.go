package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/slipway-dev/slipway/pkg/deviceplugin"
	"github.com/slipway-dev/slipway/pkg/devices"
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
	return errors.Join(errs...)
}

// run discovers, serves, and follows health, hot-plug and config changes
// until ctx is done.
func (f *pluginFlags) run(ctx context.Context, g *globals) error {
	if err := f.validate(); err != nil {
		return err
	}
	mode, err := devices.ParseNVMLMode(g.nvml)
	if err != nil {
		return fmt.Errorf("--nvml: %w", err)
	}
	cfg, err := loadPluginConfig(g.config)
	if err != nil {
		return err
	}
	p, err := deviceplugin.New(deviceplugin.Config{
		KubeletDir: f.kubeletDir, CDI: f.cdi, CDIDir: f.cdiDir, StopTimeout: f.stopTimeout, Log: g.log,
	})
	if err != nil {
		return err
	}
	c := &controller{f: f, g: g, p: p, mode: mode}
	devs, err := c.discover(ctx, g.log)
	if err != nil {
		return err
	}
	c.apply(cfg, devs)
	var lis net.Listener
	if f.metricsAddr != "" {
		if lis, err = net.Listen("tcp", f.metricsAddr); err != nil {
			return fmt.Errorf("listen for metrics on %s: %w", f.metricsAddr, err)
		}
	}
	// Before serving, so that a SIGHUP sent once the plugin is registered
	// is never the default (fatal) one.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return p.Run(ctx) })
	if lis != nil {
		g.log.Info("serving metrics and health", "addr", lis.Addr().String())
		eg.Go(func() error { return serveHTTP(ctx, lis, p.Handler()) })
	}
	eg.Go(func() error { return c.loop(ctx, hup, cfg, devs) })
	return eg.Wait()
}

// serveHTTP serves h on lis until ctx is done, then shuts down within 5s.
func serveHTTP(ctx context.Context, lis net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve metrics on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("stop metrics server on %s: %w", lis.Addr(), err)
	}
	return nil
}

// loadPluginConfig reads the --config file, or returns the defaults.
func loadPluginConfig(path string) (devices.ResourceConfig, error) {
	if path == "" {
		return devices.DefaultConfig(), nil
	}
	return devices.LoadConfig(path)
}

// controller keeps the plugin's resources and the health monitor in step
// with the devices and the config file.
type controller struct {
	f    *pluginFlags
	g    *globals
	p    *deviceplugin.Plugin
	mode devices.NVMLMode
}

// discover runs discovery; log is the first run's logger, later rescans
// pass a quieter one so that a skipped device is not reported every
// --rescan-interval.
func (c *controller) discover(ctx context.Context, log *slog.Logger) ([]devices.Device, error) {
	return devices.Discover(ctx, devices.Config{Root: c.g.root, NVML: c.mode, IncludeHostNICs: c.f.includeHostNICs, Log: log})
}

// minLevel passes on records at or above min only.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(as), min: h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(name), min: h.min}
}

// apply advertises devs as cfg assigns them.
func (c *controller) apply(cfg devices.ResourceConfig, devs []devices.Device) {
	opts := deviceplugin.BuildOptions{ExcludeTopology: c.f.excludeTopology}
	if c.f.pairResource != "" {
		opts.Pairs = deviceplugin.PairConfig{Name: c.f.pairResource, GPUResource: c.f.pairGPU, HCAResource: c.f.pairHCA}
	}
	rs := deviceplugin.BuildResources(cfg.Assign(devs), opts)
	if err := c.p.Update(rs); err != nil {
		c.g.log.Error("resources not fully applied", "err", err)
	}
	for _, r := range rs {
		c.g.log.Info("advertising resource", "resource", r.Name, "devices", len(r.Devices))
	}
}

// loop runs the health monitor and rescans on SIGHUP, config file changes
// and every --rescan-interval; a changed device set or config is applied
// without restarting unaffected resources.
func (c *controller) loop(ctx context.Context, hup <-chan os.Signal, cfg devices.ResourceConfig, devs []devices.Device) error {
	var cfgEvents <-chan fsnotify.Event
	var cfgErrors <-chan error
	if c.g.config != "" {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			return fmt.Errorf("watch config %s: %w", c.g.config, err)
		}
		defer w.Close()
		// Watch the directory: editors and ConfigMap updates replace the
		// file rather than write it.
		if err := w.Add(filepath.Dir(c.g.config)); err != nil {
			return fmt.Errorf("watch config %s: %w", c.g.config, err)
		}
		cfgEvents, cfgErrors = w.Events, w.Errors
	}
	var tick <-chan time.Time
	if c.f.rescan > 0 {
		t := time.NewTicker(c.f.rescan)
		defer t.Stop()
		tick = t.C
	}
	stopMonitor, monErr := c.startMonitor(ctx, cfg.Health, devs)
	defer func() { stopMonitor() }()
	quiet := slog.New(minLevel{Handler: c.g.log.Handler(), min: slog.LevelWarn})
	// A burst of file events (write, chmod, rename) is one change.
	var debounce <-chan time.Time
	for {
		reload := false
		select {
		case <-ctx.Done():
			return nil
		case err := <-monErr:
			return err
		case <-hup:
			c.g.log.Info("SIGHUP: reloading config and rediscovering devices")
			reload = true
		case ev, ok := <-cfgEvents:
			if !ok {
				cfgEvents = nil // watcher closed: SIGHUP and the rescan still reload
				continue
			}
			if filepath.Base(ev.Name) == filepath.Base(c.g.config) || filepath.Base(ev.Name) == "..data" {
				debounce = time.After(200 * time.Millisecond)
			}
			continue
		case err, ok := <-cfgErrors:
			if !ok {
				cfgErrors = nil
				continue
			}
			// fsnotify blocks its reader until an error is taken; an
			// overflow may have hidden a change, so reload to be sure.
			c.g.log.Warn("config watch error, reloading to be sure", "path", c.g.config, "err", err)
			debounce = time.After(200 * time.Millisecond)
			continue
		case <-debounce:
			debounce = nil
			c.g.log.Info("config file changed, reloading", "path", c.g.config)
			reload = true
		case <-tick:
		}
		newCfg := cfg
		if reload {
			var err error
			if newCfg, err = loadPluginConfig(c.g.config); err != nil {
				c.g.log.Error("config not reloaded, keeping the running one", "path", c.g.config, "err", err)
				newCfg = cfg
			}
		}
		newDevs, err := c.discover(ctx, quiet)
		if err != nil {
			c.g.log.Error("rediscover devices, keeping the known ones", "err", err)
			newDevs = devs
		}
		devsChanged := !sameDevices(devs, newDevs)
		healthChanged := !sameHealthConfig(cfg.Health, newCfg.Health)
		if !devsChanged && !healthChanged && sameResourceConfig(cfg, newCfg) {
			continue
		}
		if devsChanged {
			c.g.log.Info("device set changed", "before", len(devs), "after", len(newDevs))
		}
		if devsChanged || healthChanged {
			stopMonitor()
			c.p.ResetHealth()
		}
		c.apply(newCfg, newDevs)
		if devsChanged || healthChanged {
			stopMonitor, monErr = c.startMonitor(ctx, newCfg.Health, newDevs)
		}
		cfg, devs = newCfg, newDevs
	}
}

// startMonitor runs a health monitor on devs, feeding the plugin; stop
// cancels it and waits for it. An error from the monitor arrives on errc.
func (c *controller) startMonitor(ctx context.Context, h devices.HealthConfig, devs []devices.Device) (stop func(), errc <-chan error) {
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	ec := make(chan error, 1)
	m, err := devices.NewMonitor(devices.MonitorConfig{
		Root: c.g.root, NVML: c.mode, IgnoredXIDs: h.IgnoredXIDs,
		PollInterval: h.PollInterval.Duration, RecoveryPeriod: h.RecoveryPeriod.Duration, Log: c.g.log,
	})
	if err != nil {
		cancel()
		close(done)
		ec <- fmt.Errorf("start health monitor: %w", err)
		return func() {}, ec
	}
	go func() {
		defer close(done)
		if err := m.Run(mctx, devs, c.p.SetHealth); err != nil {
			ec <- fmt.Errorf("health monitor: %w", err)
		}
	}()
	return func() { cancel(); <-done }, ec
}

// sameDevices reports whether a and b are the same devices in the same
// places, whatever their health and changing attributes.
func sameDevices(a, b []devices.Device) bool {
	return slices.EqualFunc(a, b, func(x, y devices.Device) bool {
		return x.ID == y.ID && x.Kind == y.Kind && x.PCIAddress == y.PCIAddress && x.NUMANode == y.NUMANode &&
			x.PCIeRoot == y.PCIeRoot && slices.Equal(x.Bridges, y.Bridges) && slices.Equal(x.DeviceNodes, y.DeviceNodes) &&
			x.Model == y.Model && x.Driver == y.Driver && x.Attributes["uuid"] == y.Attributes["uuid"]
	})
}

func sameHealthConfig(a, b devices.HealthConfig) bool {
	return slices.Equal(a.IgnoredXIDs, b.IgnoredXIDs) && (a.IgnoredXIDs == nil) == (b.IgnoredXIDs == nil) &&
		a.PollInterval == b.PollInterval && a.RecoveryPeriod == b.RecoveryPeriod
}

func sameResourceConfig(a, b devices.ResourceConfig) bool {
	return slices.EqualFunc(a.Resources, b.Resources, func(x, y devices.Resource) bool {
		sx, sy := x.Selector, y.Selector
		return x.Name == y.Name && slices.Equal(sx.Kinds, sy.Kinds) && slices.Equal(sx.Vendors, sy.Vendors) &&
			slices.Equal(sx.DeviceIDs, sy.DeviceIDs) && slices.Equal(sx.Drivers, sy.Drivers) &&
			slices.Equal(sx.PCIAddresses, sy.PCIAddresses) && sx.Model == sy.Model && slices.Equal(sx.LinkLayers, sy.LinkLayers)
	})
}
