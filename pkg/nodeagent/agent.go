package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/slipway-dev/slipway/pkg/deviceplugin"
	"github.com/slipway-dev/slipway/pkg/devices"
)

// Frontend serves the node's devices to the kubelet through one API. See
// the package documentation for the contract.
type Frontend interface {
	// Apply hands the front end the node's devices and health now. It is
	// called before Run and after every change, from one goroutine, in
	// order. An error says what could not be applied; the rest is.
	Apply(devices.State) error
	// Run serves until ctx is done and returns nil then.
	Run(ctx context.Context) error
	// Ready returns nil when the kubelet has what the front end serves,
	// and otherwise says what is missing.
	Ready() error
}

// configDebounce makes a burst of file events (write, chmod, rename) one
// config change.
const configDebounce = 200 * time.Millisecond

// httpStopTimeout bounds the shutdown of the metrics and health server.
const httpStopTimeout = 5 * time.Second

// Retries of a failing first discovery.
const (
	// DefaultDiscoveryRetry is the first wait before a failed first
	// discovery is tried again; it doubles up to maxDiscoveryRetry.
	DefaultDiscoveryRetry = time.Second
	maxDiscoveryRetry     = time.Minute
)

// Config configures an Agent.
type Config struct {
	// Discovery says where and how devices are found: Root, NVML mode and
	// seam, IncludeHostNICs. Its Log is replaced by the agent's.
	Discovery devices.Config
	// ConfigFile is the resource config file, reloaded when it changes
	// (the directory is watched: editors and ConfigMap updates replace the
	// file). Empty means devices.DefaultConfig() and nothing to watch.
	ConfigFile string
	// RescanInterval is how often devices are rediscovered (hot-plug).
	// Zero means never; Reload and config changes still rediscover.
	RescanInterval time.Duration
	// DiscoveryRetry is the first wait before a failed first discovery is
	// tried again (doubling up to a minute); the agent and its front ends
	// keep running meanwhile. Zero means DefaultDiscoveryRetry.
	DiscoveryRetry time.Duration
	// DevicePlugin, when set, adds the kubelet device plugin front end,
	// built from it with the agent's registry and logger.
	DevicePlugin *deviceplugin.Config
	// NodeLabels, when set, adds the front end that writes the node's
	// device labels to its own Node object (Labeller).
	NodeLabels *LabelsConfig
	// Frontends are further front ends (a DRA kubelet plugin, tests).
	Frontends []Frontend
	// Metrics, when set, is where /metrics and /healthz are served; the
	// caller binds it and the agent closes it.
	Metrics net.Listener
	// Registry collects the metrics of the agent and its front ends. Nil
	// means a new registry with the Go and process collectors.
	Registry *prometheus.Registry
	// Log receives discovery, health and config records. Nil discards.
	Log *slog.Logger
}

// Agent keeps the node's devices, their health and the resource config
// current and hands them to its front ends. Build it with New and call Run
// once.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	reg    *prometheus.Registry
	m      *metrics
	ledger *devices.HealthLedger
	fronts []Frontend
	disc   *repeats // quiets discovery records repeated by every rescan
	reload chan struct{}

	running    atomic.Bool
	discovered atomic.Bool

	mu       sync.Mutex
	state    devices.State
	discErr  error  // why the first discovery has not succeeded yet
	applyErr string // the last Apply error logged, so a lasting one is logged once
	migErr   string // the last MIG strategy problem logged, likewise
}

// New checks cfg, loads the config file and builds the front ends.
func New(cfg Config) (*Agent, error) {
	if cfg.RescanInterval < 0 {
		return nil, fmt.Errorf("new node agent: rescan interval %s: want 0 or more", cfg.RescanInterval)
	}
	if cfg.DiscoveryRetry <= 0 {
		cfg.DiscoveryRetry = DefaultDiscoveryRetry
	}
	if _, err := devices.ParseNVMLMode(string(cfg.Discovery.NVML)); err != nil {
		return nil, fmt.Errorf("new node agent: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rc, err := loadConfig(cfg.ConfigFile)
	if err != nil {
		return nil, err
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	a := &Agent{
		cfg:    cfg,
		log:    log,
		reg:    reg,
		m:      newMetrics(reg),
		ledger: devices.NewHealthLedger(),
		disc:   &repeats{},
		reload: make(chan struct{}, 1),
		state:  devices.State{Config: rc},
	}
	if cfg.DevicePlugin != nil {
		dp := *cfg.DevicePlugin
		dp.Registry, dp.Log = reg, log
		p, err := deviceplugin.New(dp)
		if err != nil {
			return nil, err
		}
		a.fronts = append(a.fronts, p)
	}
	if cfg.NodeLabels != nil {
		lc := *cfg.NodeLabels
		lc.Log = log
		l, err := NewLabeller(lc)
		if err != nil {
			return nil, err
		}
		a.fronts = append(a.fronts, l)
	}
	a.fronts = append(a.fronts, cfg.Frontends...)
	a.warnSharing(rc)
	return a, nil
}

// warnSharing says, once per config loaded, which resources share devices
// by time-slicing: an operator must know that those pods are not isolated.
func (a *Agent) warnSharing(rc devices.ResourceConfig) {
	for _, r := range rc.Resources {
		if r.Replicas > 1 {
			a.log.Warn("devices shared by time-slicing: replicas have no memory or fault isolation, and one pod's fault can end the others' work",
				"resource", r.Name, "replicas", r.Replicas)
		}
	}
}

// loadConfig reads the config file, or returns the defaults.
func loadConfig(path string) (devices.ResourceConfig, error) {
	if path == "" {
		return devices.DefaultConfig(), nil
	}
	return devices.LoadConfig(path)
}

// Reload asks a running agent to reload the config file and rediscover
// the devices (what SIGHUP does). It does not block.
func (a *Agent) Reload() {
	select {
	case a.reload <- struct{}{}:
	default:
	}
}

// State returns the devices, health and config last handed to the front
// ends.
func (a *Agent) State() devices.State {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state
}

// Ready returns nil when the first discovery is done and every front end
// is ready, and otherwise says what is not.
func (a *Agent) Ready() error {
	if !a.running.Load() {
		return errors.New("node agent not running")
	}
	if !a.discovered.Load() {
		a.mu.Lock()
		err := a.discErr
		a.mu.Unlock()
		if err != nil {
			return fmt.Errorf("node agent not ready: devices not discovered yet: %w", err)
		}
		return errors.New("node agent not ready: devices not discovered yet")
	}
	var errs []error
	for _, f := range a.fronts {
		if err := f.Ready(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Handler serves /metrics (the agent's registry) and /healthz (200 "ok"
// when Ready, 503 with the reason otherwise).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := a.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Run serves until ctx is done: it starts the front ends and the metrics
// and health server, discovers the devices and hands them to the front
// ends, and then follows health, hot-plug and config changes. A first
// discovery that fails is retried with backoff while everything else runs
// (the front ends without devices, /healthz 503 saying why): a node agent
// that exited would leave, for instance, DRA claims that can no longer be
// unprepared. It returns nil on a clean stop, and an error when a front end
// fails or the config file cannot be watched.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("run node agent: already running")
	}
	defer a.running.Store(false)
	if a.cfg.Metrics != nil {
		// Closed here on every early return; on a normal run the HTTP
		// server owns it.
		defer a.cfg.Metrics.Close()
	}
	eg, ctx := errgroup.WithContext(ctx)
	for _, f := range a.fronts {
		eg.Go(func() error { return f.Run(ctx) })
	}
	if a.cfg.Metrics != nil {
		a.log.Info("serving metrics and health", "addr", a.cfg.Metrics.Addr().String())
		eg.Go(func() error { return a.serveHTTP(ctx, a.cfg.Metrics) })
	}
	eg.Go(func() error {
		rc := a.State().Config
		devs, ok := a.firstDiscovery(ctx, &rc)
		if !ok {
			return nil
		}
		a.publish(rc, devs)
		a.discovered.Store(true)
		return a.loop(ctx, rc, devs)
	})
	return eg.Wait()
}

// firstDiscovery discovers the devices, retrying with backoff until it
// succeeds; false when ctx ends first. Reload meanwhile reloads the config
// into rc and retries at once.
func (a *Agent) firstDiscovery(ctx context.Context, rc *devices.ResourceConfig) ([]devices.Device, bool) {
	backoff := a.cfg.DiscoveryRetry
	for attempt := 1; ; attempt++ {
		devs, err := a.discover(ctx)
		if err == nil {
			if attempt > 1 {
				a.log.Info("devices discovered", "attempts", attempt)
			}
			a.mu.Lock()
			a.discErr = nil
			a.mu.Unlock()
			return devs, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		a.mu.Lock()
		a.discErr = err
		a.mu.Unlock()
		a.log.Error("device discovery failed: nothing is advertised until it succeeds", "attempt", attempt, "retry_in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false
		case <-t.C:
		case <-a.reload:
			t.Stop()
			if c, err := loadConfig(a.cfg.ConfigFile); err != nil {
				a.log.Error("config not reloaded, keeping the running one", "path", a.cfg.ConfigFile, "err", err)
			} else {
				*rc = c
			}
		}
		backoff = min(2*backoff, maxDiscoveryRetry)
	}
}

// discover runs one discovery pass; a record the previous pass logged too
// is not logged again.
func (a *Agent) discover(ctx context.Context) ([]devices.Device, error) {
	a.disc.newPass()
	dc := a.cfg.Discovery
	dc.Log = slog.New(&onceHandler{next: a.log.Handler(), r: a.disc})
	devs, err := devices.Discover(ctx, dc)
	if err != nil {
		a.m.rescans.WithLabelValues("error").Inc()
		return nil, err
	}
	a.m.rescans.WithLabelValues("ok").Inc()
	if len(devs) == 0 {
		dc.Log.Info("no gpus, hcas or fpgas found", "root", rootOf(dc.Root))
	}
	return devs, nil
}

func rootOf(r string) string {
	if r == "" {
		return "/"
	}
	return r
}

// publish records what discovery found in the ledger and hands the state
// to every front end.
func (a *Agent) publish(rc devices.ResourceConfig, devs []devices.Device) {
	now := time.Now()
	for _, ev := range a.ledger.Observe(devs, now) {
		a.log.Warn("device unhealthy", "device_id", ev.DeviceID, "reason", ev.Reason)
		a.m.countEvent(ev)
	}
	a.ledger.Forget(devs, now, recoveryOf(rc.Health))
	st := devices.State{Devices: a.ledger.Apply(devs), Config: rc}
	a.mu.Lock()
	a.state = st
	a.mu.Unlock()
	a.m.setDevices(st.Devices)
	var errs []error
	for _, f := range a.fronts {
		if err := f.Apply(st); err != nil {
			errs = append(errs, err)
		}
	}
	a.logOnce(&a.applyErr, "devices not fully applied", errors.Join(errs...))
	a.logOnce(&a.migErr, "gpus not advertised", rc.CheckMIG(devs))
}

// logOnce logs err as an error unless it is the one last logged under
// last: a lasting problem is logged when it starts, not on every change.
func (a *Agent) logOnce(last *string, msg string, err error) {
	s := ""
	if err != nil {
		s = err.Error()
	}
	a.mu.Lock()
	repeated := s == *last
	*last = s
	a.mu.Unlock()
	if s != "" && !repeated {
		a.log.Error(msg, "err", s)
	}
}

// recoveryOf is the recovery period the monitor uses with h.
func recoveryOf(h devices.HealthConfig) time.Duration {
	if h.RecoveryPeriod.Duration == 0 {
		return devices.DefaultRecoveryPeriod
	}
	return h.RecoveryPeriod.Duration
}

// loop runs the health monitor, applies health events, and rediscovers on
// Reload, config file changes and every RescanInterval.
func (a *Agent) loop(ctx context.Context, rc devices.ResourceConfig, devs []devices.Device) error {
	var cfgEvents <-chan fsnotify.Event
	var cfgErrors <-chan error
	if a.cfg.ConfigFile != "" {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			return fmt.Errorf("watch config %s: %w", a.cfg.ConfigFile, err)
		}
		defer w.Close()
		if err := w.Add(filepath.Dir(a.cfg.ConfigFile)); err != nil {
			return fmt.Errorf("watch config %s: %w", a.cfg.ConfigFile, err)
		}
		cfgEvents, cfgErrors = w.Events, w.Errors
	}
	var tick <-chan time.Time
	if a.cfg.RescanInterval > 0 {
		t := time.NewTicker(a.cfg.RescanInterval)
		defer t.Stop()
		tick = t.C
	}
	health := make(chan devices.HealthEvent, 64)
	stopMonitor, monErr := a.startMonitor(ctx, rc.Health, devs, health)
	defer func() { stopMonitor() }()
	var debounce <-chan time.Time
	for {
		reload := false
		select {
		case <-ctx.Done():
			return nil
		case err := <-monErr:
			return err
		case ev := <-health:
			a.m.countEvent(ev)
			// Take every change already queued: one update for a burst.
			for more := true; more; {
				select {
				case ev := <-health:
					a.m.countEvent(ev)
				default:
					more = false
				}
			}
			a.publish(rc, devs)
			continue
		case <-a.reload:
			a.log.Info("reload asked: reloading config and rediscovering devices")
			reload = true
		case ev, ok := <-cfgEvents:
			if !ok {
				cfgEvents = nil // watcher closed: Reload and rescans still work
				continue
			}
			if base := filepath.Base(ev.Name); base == filepath.Base(a.cfg.ConfigFile) || base == "..data" {
				debounce = time.After(configDebounce)
			}
			continue
		case err, ok := <-cfgErrors:
			if !ok {
				cfgErrors = nil
				continue
			}
			// fsnotify blocks its reader until an error is taken; an
			// overflow may have hidden a change, so reload to be sure.
			a.log.Warn("config watch error, reloading to be sure", "path", a.cfg.ConfigFile, "err", err)
			debounce = time.After(configDebounce)
			continue
		case <-debounce:
			debounce = nil
			a.log.Info("config file changed, reloading", "path", a.cfg.ConfigFile)
			reload = true
		case <-tick:
		}
		newRC := rc
		if reload {
			var err error
			if newRC, err = loadConfig(a.cfg.ConfigFile); err != nil {
				a.log.Error("config not reloaded, keeping the running one", "path", a.cfg.ConfigFile, "err", err)
				newRC = rc
			}
		}
		newDevs, err := a.discover(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			a.log.Error("rediscover devices, keeping the known ones", "err", err)
			newDevs = devs
		}
		// Compared whole: a field added to the config or to a device
		// later is noticed without touching this code.
		configChanged := !reflect.DeepEqual(rc, newRC)
		if !configChanged && reflect.DeepEqual(devs, newDevs) {
			continue
		}
		if configChanged {
			a.log.Info("config changed, applying", "path", a.cfg.ConfigFile)
			a.warnSharing(newRC)
		}
		setChanged := !sameDeviceSet(devs, newDevs)
		if setChanged {
			a.log.Info("device set changed", "before", len(devs), "after", len(newDevs))
		}
		restart := setChanged || !reflect.DeepEqual(rc.Health, newRC.Health)
		if restart {
			stopMonitor()
		}
		rc, devs = newRC, newDevs
		a.publish(rc, devs)
		if restart {
			stopMonitor, monErr = a.startMonitor(ctx, rc.Health, devs, health)
		}
	}
}

// startMonitor runs a health monitor on devs that records into the
// agent's ledger and sends its events to health; stop cancels it and
// waits for it. An error from the monitor arrives on errc.
func (a *Agent) startMonitor(ctx context.Context, h devices.HealthConfig, devs []devices.Device, health chan<- devices.HealthEvent) (stop func(), errc <-chan error) {
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	ec := make(chan error, 1)
	d := a.cfg.Discovery
	m, err := devices.NewMonitor(devices.MonitorConfig{
		Root: d.Root, NVML: d.NVML, NVMLLib: d.NVMLLib, IgnoredXIDs: h.IgnoredXIDs,
		PollInterval: h.PollInterval.Duration, RecoveryPeriod: h.RecoveryPeriod.Duration,
		Ledger: a.ledger, Log: a.log,
	})
	if err != nil {
		cancel()
		close(done)
		ec <- fmt.Errorf("start health monitor: %w", err)
		return func() {}, ec
	}
	emit := func(ev devices.HealthEvent) {
		select {
		case health <- ev:
		case <-mctx.Done():
			// Stopping: the ledger has the change, and the next publish
			// hands it on.
		}
	}
	go func() {
		defer close(done)
		if err := m.Run(mctx, devs, emit); err != nil {
			ec <- fmt.Errorf("health monitor: %w", err)
		}
	}()
	return func() { cancel(); <-done }, ec
}

// sameDeviceSet reports whether a and b are the same devices in the same
// places (what the health monitor watches), whatever their health and
// changing attributes.
func sameDeviceSet(a, b []devices.Device) bool {
	return slices.EqualFunc(a, b, func(x, y devices.Device) bool {
		return x.ID == y.ID && x.Kind == y.Kind && x.PCIAddress == y.PCIAddress && x.Driver == y.Driver &&
			slices.Equal(x.DeviceNodes, y.DeviceNodes) && x.Attributes["uuid"] == y.Attributes["uuid"] &&
			x.Attributes["parent_uuid"] == y.Attributes["parent_uuid"]
	})
}

// serveHTTP serves the agent's handler on lis until ctx is done, then
// shuts down within httpStopTimeout.
func (a *Agent) serveHTTP(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve metrics on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), httpStopTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("stop metrics server on %s: %w", lis.Addr(), err)
	}
	return nil
}
