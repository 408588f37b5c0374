package dra

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"

	"github.com/slipway-dev/slipway/pkg/devices"
)

// Defaults of Config.
const (
	// DefaultRegistryDir is where the kubelet looks for plugin registration
	// sockets.
	DefaultRegistryDir = kubeletplugin.KubeletRegistryDir
	// DefaultPluginsDir holds each kubelet plugin's directory; the driver's
	// is DefaultPluginsDir/<driver name> (dra.sock and, by default, the
	// checkpoint). It is on the node's disk, so the checkpoint survives a
	// reboot.
	DefaultPluginsDir = kubeletplugin.KubeletPluginsDir
	// DefaultCDIDir is where claim CDI specs are written: /etc/cdi is read
	// by containerd and CRI-O by default and, unlike /var/run/cdi, is not
	// a tmpfs, so specs survive a reboot with the checkpoint.
	DefaultCDIDir = "/etc/cdi"
	// DefaultRescanInterval is how often devices are rediscovered and the
	// config file re-read (hot-plug, config change).
	DefaultRescanInterval = 10 * time.Second
	// DefaultHealthTimeout is the health check timeout sent with every
	// device's health: the kubelet's own default.
	DefaultHealthTimeout = 30 * time.Second
	// DefaultHealthResend is how often the full health report is sent
	// again when nothing changed, well within DefaultHealthTimeout.
	DefaultHealthResend = 10 * time.Second
)

// discoveryBackoffMax bounds the wait between two failed first discoveries.
const discoveryBackoffMax = 30 * time.Second

// Config configures a Driver. NodeName and KubeClient are required.
type Config struct {
	// NodeName is the node the driver runs on: the pool name and the owner
	// of its ResourceSlices.
	NodeName string
	// DriverName is the DRA driver name. Empty means DefaultDriverName.
	DriverName string
	// KubeClient reads claims and writes ResourceSlices.
	KubeClient kubernetes.Interface
	// Root is the host root devices are discovered under (sysfs at
	// Root/sys). Empty means "/".
	Root string
	// NVML, NVMLLib and IncludeHostNICs are passed to discovery and the
	// health monitor as in devices.Config.
	NVML            devices.NVMLMode
	NVMLLib         devices.NVML
	IncludeHostNICs bool
	// ConfigFile is the device plugin config file (resources, exclude,
	// health), re-read at every rescan. Empty means devices.DefaultConfig.
	ConfigFile string
	// RescanInterval is how often Run rediscovers devices and re-reads
	// ConfigFile. Zero means DefaultRescanInterval; negative disables.
	RescanInterval time.Duration
	// RegistryDir is the kubelet's plugin registration directory. Empty
	// means DefaultRegistryDir.
	RegistryDir string
	// PluginDir holds dra.sock. Empty means DefaultPluginsDir/<driver>.
	PluginDir string
	// StateDir holds the checkpoint; it must be on persistent storage.
	// Empty means PluginDir.
	StateDir string
	// CDIDir is where claim CDI specs are written. Empty means
	// DefaultCDIDir.
	CDIDir string
	// NoExecute taints unhealthy devices NoExecute (pods using them are
	// evicted) instead of NoSchedule (no new allocations).
	NoExecute bool
	// HealthTimeout is the health check timeout the kubelet is told for
	// each device. Zero means DefaultHealthTimeout.
	HealthTimeout time.Duration
	// HealthResend is how often an unchanged health report is sent again.
	// Zero means DefaultHealthResend; it must be below HealthTimeout.
	HealthResend time.Duration
	// Log receives the driver's records. Nil discards.
	Log *slog.Logger
}

// Driver is the DRA kubelet plugin of one node.
type Driver struct {
	cfg     Config
	log     *slog.Logger
	builder sliceBuilder
	cdi     *cdiStore
	cpPath  string

	mu       sync.Mutex
	inv      *inventory // nil until a discovery succeeded
	health   map[string]healthState
	claims   map[string]preparedClaim // by claim UID, as in the checkpoint
	helper   *kubeletplugin.Helper
	watchers map[chan struct{}]struct{}
	fatal    chan error // fatal background errors from the helper
}

// New checks cfg, applies its defaults, loads the checkpoint and returns a
// Driver. A checkpoint that cannot be read is an error: forgetting prepared
// claims would let their devices be handed out twice.
func New(cfg Config) (*Driver, error) {
	var errs []error
	if cfg.NodeName == "" {
		errs = append(errs, errors.New("node name is empty: set it from the pod's spec.nodeName"))
	}
	if cfg.KubeClient == nil {
		errs = append(errs, errors.New("no Kubernetes client"))
	}
	if cfg.DriverName == "" {
		cfg.DriverName = DefaultDriverName
	}
	if msgs := validation.IsDNS1123Subdomain(cfg.DriverName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("driver name %q: %v", cfg.DriverName, msgs))
	}
	if cfg.RescanInterval == 0 {
		cfg.RescanInterval = DefaultRescanInterval
	}
	if cfg.RegistryDir == "" {
		cfg.RegistryDir = DefaultRegistryDir
	}
	if cfg.PluginDir == "" {
		cfg.PluginDir = filepath.Join(DefaultPluginsDir, cfg.DriverName)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = cfg.PluginDir
	}
	if cfg.CDIDir == "" {
		cfg.CDIDir = DefaultCDIDir
	}
	if cfg.HealthTimeout == 0 {
		cfg.HealthTimeout = DefaultHealthTimeout
	}
	if cfg.HealthResend == 0 {
		cfg.HealthResend = DefaultHealthResend
	}
	if cfg.HealthTimeout < time.Second || cfg.HealthResend <= 0 || cfg.HealthResend >= cfg.HealthTimeout {
		errs = append(errs, fmt.Errorf("health resend %s and timeout %s: want 0 < resend < timeout, timeout at least 1s", cfg.HealthResend, cfg.HealthTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new dra driver: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, dir := range []string{cfg.PluginDir, cfg.StateDir} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("new dra driver: %w", err)
		}
	}
	store, err := newCDIStore(cfg.CDIDir)
	if err != nil {
		return nil, fmt.Errorf("new dra driver: %w", err)
	}
	cpPath := filepath.Join(cfg.StateDir, CheckpointFile)
	claims, err := loadCheckpoint(cpPath)
	if err != nil {
		return nil, fmt.Errorf("new dra driver: %w", err)
	}
	return &Driver{
		cfg:      cfg,
		log:      log,
		builder:  sliceBuilder{sysRoot: sysRoot(cfg.Root), effect: taintEffect(cfg.NoExecute), log: log},
		cdi:      store,
		cpPath:   cpPath,
		health:   map[string]healthState{},
		claims:   claims,
		watchers: map[chan struct{}]struct{}{},
		fatal:    make(chan error, 1),
	}, nil
}

// Run serves the kubelet plugin and keeps its slices current until ctx is
// done: it discovers devices (retrying until a discovery succeeds, and
// publishing nothing before), runs the health monitor, and rediscovers and
// re-reads the config file every RescanInterval. It returns nil on a clean
// stop.
func (d *Driver) Run(ctx context.Context) error {
	rcfg, err := d.loadConfig()
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	started := make(chan struct{})
	g.Go(func() error { return d.serve(ctx, started) })
	g.Go(func() error {
		// The kubelet can unprepare from the checkpoint while discovery
		// is still failing; prepare waits for devices.
		select {
		case <-started:
		case <-ctx.Done():
			return nil
		}
		devs, err := d.firstDiscovery(ctx)
		if err != nil {
			return nil // ctx done
		}
		d.Update(rcfg, devs)
		return d.follow(ctx, rcfg, devs)
	})
	return g.Wait()
}

// Serve runs the kubelet plugin only (registration, the DRA and health
// services, slice publication) until ctx is done; devices and health come
// from Update and SetHealth. It returns nil on a clean stop.
func (d *Driver) Serve(ctx context.Context) error {
	return d.serve(ctx, nil)
}

func (d *Driver) serve(ctx context.Context, started chan<- struct{}) error {
	if err := d.reconcileCDI(); err != nil {
		return err
	}
	logger := logr.FromSlogHandler(d.log.Handler())
	hctx := klog.NewContext(ctx, logger)
	h, err := kubeletplugin.Start(hctx, d,
		kubeletplugin.DriverName(d.cfg.DriverName),
		kubeletplugin.NodeName(d.cfg.NodeName),
		kubeletplugin.KubeClient(d.cfg.KubeClient),
		kubeletplugin.RegistrarDirectoryPath(d.cfg.RegistryDir),
		kubeletplugin.PluginDataDirectoryPath(d.cfg.PluginDir),
		// The helper logs each gRPC call and health message at V(6),
		// which is below slog's debug level: quiet unless asked for.
	)
	if err != nil {
		return fmt.Errorf("start dra kubelet plugin %s: %w", d.cfg.DriverName, err)
	}
	d.log.Info("dra kubelet plugin serving", "driver", d.cfg.DriverName, "node", d.cfg.NodeName,
		"socket", filepath.Join(d.cfg.PluginDir, "dra.sock"), "registry", d.cfg.RegistryDir)
	d.mu.Lock()
	d.helper = h
	err = d.publishLocked()
	d.mu.Unlock()
	if started != nil {
		close(started)
	}
	if err == nil {
		select {
		case <-ctx.Done():
		case err = <-d.fatal:
		}
	}
	d.mu.Lock()
	d.helper = nil
	d.mu.Unlock()
	h.Stop()
	d.log.Info("dra kubelet plugin stopped", "driver", d.cfg.DriverName)
	return err
}

// firstDiscovery discovers until it succeeds or ctx is done, waiting up to
// discoveryBackoffMax between tries.
func (d *Driver) firstDiscovery(ctx context.Context) ([]devices.Device, error) {
	wait := time.Second
	for {
		devs, err := d.discover(ctx, d.log)
		if err == nil {
			return devs, nil
		}
		d.log.Error("device discovery failed, nothing published yet; retrying", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, discoveryBackoffMax)
	}
}

func (d *Driver) discover(ctx context.Context, log *slog.Logger) ([]devices.Device, error) {
	return devices.Discover(ctx, devices.Config{
		Root: d.cfg.Root, NVML: d.cfg.NVML, NVMLLib: d.cfg.NVMLLib, IncludeHostNICs: d.cfg.IncludeHostNICs, Log: log,
	})
}

func (d *Driver) loadConfig() (devices.ResourceConfig, error) {
	if d.cfg.ConfigFile == "" {
		return devices.DefaultConfig(), nil
	}
	return devices.LoadConfig(d.cfg.ConfigFile)
}

// follow runs the health monitor and rescans until ctx is done.
func (d *Driver) follow(ctx context.Context, rcfg devices.ResourceConfig, devs []devices.Device) error {
	stop, monErr := d.startMonitor(ctx, rcfg, devs)
	defer func() { stop() }()
	var tick <-chan time.Time
	if d.cfg.RescanInterval > 0 {
		t := time.NewTicker(d.cfg.RescanInterval)
		defer t.Stop()
		tick = t.C
	}
	quiet := slog.New(warnOnly{d.log.Handler()})
	rawCfg := d.readConfigBytes()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-monErr:
			return err
		case <-tick:
		}
		newCfg := rcfg
		if raw := d.readConfigBytes(); !bytes.Equal(raw, rawCfg) {
			c, err := d.loadConfig()
			if err != nil {
				d.log.Error("config not reloaded, keeping the running one", "path", d.cfg.ConfigFile, "err", err)
			} else {
				d.log.Info("config file changed, reloaded", "path", d.cfg.ConfigFile)
				newCfg = c
			}
			rawCfg = raw
		}
		newDevs, err := d.discover(ctx, quiet)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			d.log.Error("rediscover devices, keeping the known ones", "err", err)
			newDevs = devs
		}
		devsChanged := !sameDevices(devs, newDevs)
		healthCfgChanged := !sameHealthConfig(rcfg.Health, newCfg.Health)
		if !devsChanged && !healthCfgChanged && sameResources(rcfg, newCfg) {
			continue
		}
		if devsChanged {
			d.log.Info("device set changed", "before", len(devs), "after", len(newDevs))
		}
		if devsChanged || healthCfgChanged {
			stop()
		}
		d.Update(newCfg, newDevs)
		if devsChanged || healthCfgChanged {
			stop, monErr = d.startMonitor(ctx, newCfg, d.withCurrentHealth(newDevs))
		}
		rcfg, devs = newCfg, newDevs
	}
}

// readConfigBytes returns the config file's content, nil without a file or
// when it cannot be read (loadConfig reports why).
func (d *Driver) readConfigBytes() []byte {
	if d.cfg.ConfigFile == "" {
		return nil
	}
	b, _ := os.ReadFile(d.cfg.ConfigFile)
	return b
}

// withCurrentHealth returns devs with the health the driver holds for them,
// so that a restarted monitor does not forget an XID it saw.
func (d *Driver) withCurrentHealth(devs []devices.Device) []devices.Device {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := slices.Clone(devs)
	for i := range out {
		if h, ok := d.health[out[i].ID]; ok {
			out[i].Healthy, out[i].HealthReason = h.healthy, h.reason
		}
	}
	return out
}

// startMonitor runs a health monitor on devs feeding SetHealth; stop
// cancels it and waits for it.
func (d *Driver) startMonitor(ctx context.Context, rcfg devices.ResourceConfig, devs []devices.Device) (stop func(), errc <-chan error) {
	ec := make(chan error, 1)
	m, err := devices.NewMonitor(rcfg.MonitorConfig(devices.Config{Root: d.cfg.Root, NVML: d.cfg.NVML, NVMLLib: d.cfg.NVMLLib, Log: d.log}))
	if err != nil {
		ec <- fmt.Errorf("start health monitor: %w", err)
		return func() {}, ec
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := m.Run(mctx, devs, d.SetHealth); err != nil {
			ec <- fmt.Errorf("health monitor: %w", err)
		}
	}()
	return func() { cancel(); <-done }, ec
}

// Update replaces the published devices with devs as rcfg assigns them and
// republishes. A device already known keeps the health the driver holds
// for it; a new one starts with the health discovery gave it. Prepared
// claims are not touched: a claim on a device that has gone stays prepared
// until the kubelet unprepares it.
func (d *Driver) Update(rcfg devices.ResourceConfig, devs []devices.Device) {
	d.mu.Lock()
	defer d.mu.Unlock()
	inv := newInventory(rcfg, devs)
	health := make(map[string]healthState, len(inv.entries))
	for _, e := range inv.entries {
		if h, ok := d.health[e.dev.ID]; ok && d.inv != nil {
			health[e.dev.ID] = h
			continue
		}
		health[e.dev.ID] = healthState{healthy: e.dev.Healthy, reason: e.dev.HealthReason}
	}
	d.inv, d.health = inv, health
	if err := d.publishLocked(); err != nil {
		d.log.Error("publish resource slices", "err", err)
	}
	d.notifyLocked()
}

// SetHealth records a health change of one device and republishes its
// taint; events for unknown devices are ignored.
func (d *Driver) SetHealth(ev devices.HealthEvent) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inv == nil {
		return
	}
	if _, ok := d.inv.byID[ev.DeviceID]; !ok {
		return
	}
	old := d.health[ev.DeviceID]
	nh := healthState{healthy: ev.Healthy, reason: ev.Reason}
	if old == nh {
		return
	}
	d.health[ev.DeviceID] = nh
	if err := d.publishLocked(); err != nil {
		d.log.Error("publish resource slices", "err", err)
	}
	d.notifyLocked()
}

// publishLocked publishes the pool if a discovery has succeeded and the
// helper runs; the helper's controller writes it in the background.
func (d *Driver) publishLocked() error {
	if d.inv == nil || d.helper == nil {
		return nil
	}
	pool := d.builder.pool(d.inv, d.health)
	d.log.Info("publishing resource slices", "pool", d.cfg.NodeName, "devices", len(d.inv.entries), "unhealthy", unhealthyCount(d.health))
	return d.helper.PublishResources(context.Background(), resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{d.cfg.NodeName: pool}})
}

func unhealthyCount(h map[string]healthState) int {
	n := 0
	for _, s := range h {
		if !s.healthy {
			n++
		}
	}
	return n
}

// Pool returns the pool the driver publishes now, and false before a
// discovery has succeeded.
func (d *Driver) Pool() (resourceslice.Pool, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inv == nil {
		return resourceslice.Pool{}, false
	}
	return d.builder.pool(d.inv, d.health), true
}

// HandleError is called by the kubelet plugin helper for background
// errors. A recoverable one (a slice the API server refused, a stale health
// stream) is logged; any other stops Serve with that error.
func (d *Driver) HandleError(_ context.Context, err error, msg string) {
	if errors.Is(err, kubeletplugin.ErrRecoverable) {
		var dropped *resourceslice.DroppedFieldsError
		if errors.As(err, &dropped) {
			d.log.Error(msg+": the API server dropped fields; enable the feature gates they need", "err", err, "features", dropped.DisabledFeatures())
			return
		}
		d.log.Error(msg, "err", err)
		return
	}
	select {
	case d.fatal <- fmt.Errorf("%s: %w", msg, err):
	default:
	}
}

// warnOnly passes on warnings and errors only, for rescans.
type warnOnly struct{ slog.Handler }

func (h warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.Handler.Enabled(ctx, l)
}

func (h warnOnly) WithAttrs(as []slog.Attr) slog.Handler { return warnOnly{h.Handler.WithAttrs(as)} }
func (h warnOnly) WithGroup(name string) slog.Handler    { return warnOnly{h.Handler.WithGroup(name)} }

// sameDevices reports whether a and b are the same devices in the same
// places, whatever their health.
func sameDevices(a, b []devices.Device) bool {
	return slices.EqualFunc(a, b, func(x, y devices.Device) bool {
		return x.ID == y.ID && x.Kind == y.Kind && x.PCIAddress == y.PCIAddress && x.NUMANode == y.NUMANode &&
			x.PCIeRoot == y.PCIeRoot && slices.Equal(x.Bridges, y.Bridges) && slices.Equal(x.DeviceNodes, y.DeviceNodes) &&
			x.Model == y.Model && x.Driver == y.Driver && slices.Equal(x.Ports, y.Ports) && mapsEqual(x.Attributes, y.Attributes)
	})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func sameHealthConfig(a, b devices.HealthConfig) bool {
	return slices.Equal(a.IgnoredXIDs, b.IgnoredXIDs) && (a.IgnoredXIDs == nil) == (b.IgnoredXIDs == nil) &&
		a.PollInterval == b.PollInterval && a.RecoveryPeriod == b.RecoveryPeriod
}

// sameResources compares the parts of two configs that decide what is
// published (resources and exclusions).
func sameResources(a, b devices.ResourceConfig) bool {
	sel := func(x, y devices.Selector) bool {
		return slices.Equal(x.Kinds, y.Kinds) && slices.Equal(x.Vendors, y.Vendors) && slices.Equal(x.DeviceIDs, y.DeviceIDs) &&
			slices.Equal(x.Drivers, y.Drivers) && slices.Equal(x.PCIAddresses, y.PCIAddresses) && x.Model == y.Model &&
			slices.Equal(x.LinkLayers, y.LinkLayers)
	}
	return slices.EqualFunc(a.Resources, b.Resources, func(x, y devices.Resource) bool { return x.Name == y.Name && sel(x.Selector, y.Selector) }) &&
		slices.EqualFunc(a.Exclude, b.Exclude, sel)
}
