package dra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
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
	// DefaultHealthTimeout is the health check timeout sent with every
	// device's health: the kubelet's own default.
	DefaultHealthTimeout = 30 * time.Second
	// DefaultHealthResend is how often the full health report is sent
	// again when nothing changed, well within DefaultHealthTimeout.
	DefaultHealthResend = 10 * time.Second
	// DefaultClaimGCInterval is how often prepared claims are checked
	// against the API for ones deleted without an unprepare.
	DefaultClaimGCInterval = 10 * time.Minute
)

// Config configures a Driver. NodeName and KubeClient are required.
type Config struct {
	// NodeName is the node the driver runs on: the pool name and the owner
	// of its ResourceSlices.
	NodeName string
	// DriverName is the DRA driver name. Empty means DefaultDriverName.
	DriverName string
	// KubeClient reads claims and writes ResourceSlices.
	KubeClient kubernetes.Interface
	// Root is the host root the devices were discovered under (the
	// standard attributes are read from Root/sys). Empty means "/".
	Root string
	// Resources, when set, are the resource names (of the resource config)
	// whose devices the driver publishes; the others are left to another
	// front end (--api both). Empty means every resource.
	Resources []string
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
	// ClaimGCInterval is how often prepared claims are checked against the
	// API: a claim that is gone (or replaced by one of the same name) on
	// two checks in a row is unprepared, since no pod can be using it.
	// Zero means DefaultClaimGCInterval; negative disables.
	ClaimGCInterval time.Duration
	// Log receives the driver's records. Nil discards.
	Log *slog.Logger
}

// Driver is the DRA kubelet plugin of one node: a front end of the node
// agent (Apply, Run, Ready), fed the node's devices and health by it.
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
	unknown  string     // Config.Resources the last config did not know, as warned
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
	if cfg.ClaimGCInterval == 0 {
		cfg.ClaimGCInterval = DefaultClaimGCInterval
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

// Run serves the kubelet plugin until ctx is done: registration with the
// kubelet, the DRA service (prepare and unprepare, answered from the
// checkpoint before any devices are known) and the health service, and
// publishes the node's ResourceSlices once Apply has handed it a state.
// It returns nil on a clean stop, and an error when the plugin cannot
// start or the helper reports a fatal error.
func (d *Driver) Run(ctx context.Context) error {
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
	if err == nil {
		var gc <-chan time.Time
		if d.cfg.ClaimGCInterval > 0 {
			t := time.NewTicker(d.cfg.ClaimGCInterval)
			defer t.Stop()
			gc = t.C
		}
		suspects := map[string]bool{}
	wait:
		for {
			select {
			case <-ctx.Done():
				break wait
			case err = <-d.fatal:
				break wait
			case <-gc:
				suspects = d.collectClaims(ctx, suspects)
			}
		}
	}
	d.mu.Lock()
	d.helper = nil
	d.mu.Unlock()
	h.Stop()
	d.log.Info("dra kubelet plugin stopped", "driver", d.cfg.DriverName)
	return err
}

// Ready returns nil when the kubelet has registered the plugin and the
// node's slices have been handed to the publisher, and otherwise says
// what is missing.
func (d *Driver) Ready() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.helper == nil:
		return errors.New("dra driver is not running")
	case d.inv == nil:
		return errors.New("dra driver: no devices applied yet")
	}
	st := d.helper.RegistrationStatus()
	if st == nil {
		return errors.New("dra driver: the kubelet has not registered it yet")
	}
	if !st.PluginRegistered {
		return fmt.Errorf("dra driver: the kubelet refused it: %s", st.Error)
	}
	return nil
}

// Apply publishes the devices of st that its resource config assigns (to
// one of Config.Resources, when set), with the health st gives them: an
// unhealthy device is tainted and reported unhealthy to the kubelet.
// Prepared claims are not touched: a claim on a device that has gone stays
// prepared until the kubelet unprepares it.
func (d *Driver) Apply(st devices.State) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	inv := newInventory(st.Config, st.Devices, d.cfg.Resources)
	d.warnUnknownLocked(st.Config, inv)
	health := make(map[string]healthState, len(inv.entries))
	for _, e := range inv.entries {
		health[e.dev.ID] = healthState{healthy: e.dev.Healthy, reason: e.dev.HealthReason}
	}
	d.inv, d.health = inv, health
	err := d.publishLocked()
	d.notifyLocked()
	if err != nil {
		return fmt.Errorf("dra driver: %w", err)
	}
	return nil
}

// warnUnknownLocked warns, once per change, about Config.Resources names
// that the resource config neither defines nor plans (a typo in
// --dra-resources would otherwise leave those devices to the device plugin
// without a word).
func (d *Driver) warnUnknownLocked(cfg devices.ResourceConfig, inv *inventory) {
	known := map[string]bool{}
	for _, r := range cfg.Resources {
		known[r.Name] = true
	}
	for _, e := range inv.entries {
		known[e.resource] = true
	}
	var unknown []string
	for _, r := range d.cfg.Resources {
		if !known[r] {
			unknown = append(unknown, r)
		}
	}
	if s := strings.Join(unknown, ","); s != d.unknown {
		d.unknown = s
		if s != "" {
			d.log.Warn("dra resources neither in the resource config nor planned for a device here: nothing published for them", "resource", s)
		}
	}
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
