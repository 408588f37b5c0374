package deviceplugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/slipway-dev/slipway/pkg/devices"
)

// KubeletSocket is the file name of the kubelet's registration socket in
// the device plugin directory.
const KubeletSocket = "kubelet.sock"

// Defaults of Config.
const (
	DefaultCDIDir           = "/var/run/cdi"
	DefaultRegisterTimeout  = 5 * time.Second
	DefaultStopTimeout      = 5 * time.Second
	DefaultRetryInterval    = 20 * time.Millisecond
	DefaultMaxRetryInterval = 5 * time.Second
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path is
// 108 bytes with the terminating NUL).
const maxSocketPath = 107

// Config configures a Plugin.
type Config struct {
	// KubeletDir is the kubelet's device plugin directory, holding
	// kubelet.sock and the plugin's sockets. Empty means
	// /var/lib/kubelet/device-plugins.
	KubeletDir string
	// CDI makes Allocate name CDI devices and the plugin write CDI specs
	// to CDIDir.
	CDI bool
	// CDIDir is where CDI specs are written. Empty means /var/run/cdi.
	CDIDir string
	// RegisterTimeout bounds one Register call. Zero means 5s.
	RegisterTimeout time.Duration
	// StopTimeout bounds the graceful stop of one resource's server, after
	// which connections are closed. Zero means 5s.
	StopTimeout time.Duration
	// RetryInterval is the first wait before a failed registration or
	// listen is retried; it doubles up to MaxRetryInterval. Zero means
	// 20ms and 5s (a kubelet.sock just created may not accept yet).
	RetryInterval    time.Duration
	MaxRetryInterval time.Duration
	// Resources says how Apply turns devices into resources (pairs,
	// resources without topology).
	Resources BuildOptions
	// Registry is where the plugin's metrics are registered. Nil means a
	// registry of its own, with the Go and process collectors, served by
	// Handler.
	Registry *prometheus.Registry
	// Log receives registrations, resource changes and refused requests.
	// Nil discards.
	Log *slog.Logger
}

// Plugin serves a set of resources to the kubelet, one gRPC server per
// resource. Build it with New, give it devices with Apply (or resources
// with Update) before or while Run runs, and call Run once. It is a front
// end of the node agent (pkg/nodeagent): each device's health is the
// Healthy and HealthReason it is given.
type Plugin struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	running atomic.Bool
	kick    chan struct{}

	mu      sync.Mutex
	servers map[string]*server
}

// New checks cfg and returns a Plugin with no resources.
func New(cfg Config) (*Plugin, error) {
	if cfg.KubeletDir == "" {
		cfg.KubeletDir = pluginapi.DevicePluginPath
	}
	dir, err := filepath.Abs(cfg.KubeletDir)
	if err != nil {
		return nil, fmt.Errorf("kubelet dir %q: %w", cfg.KubeletDir, err)
	}
	cfg.KubeletDir = dir
	if cfg.CDIDir == "" {
		cfg.CDIDir = DefaultCDIDir
	}
	if cfg.RegisterTimeout <= 0 {
		cfg.RegisterTimeout = DefaultRegisterTimeout
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	if cfg.MaxRetryInterval < cfg.RetryInterval {
		cfg.MaxRetryInterval = max(DefaultMaxRetryInterval, cfg.RetryInterval)
	}
	if n := len(filepath.Join(dir, KubeletSocket)); n > maxSocketPath {
		return nil, fmt.Errorf("kubelet dir %s: socket paths would be %d bytes, longer than the %d a unix socket allows", dir, n, maxSocketPath)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return &Plugin{
		cfg:     cfg,
		log:     log,
		m:       newMetrics(reg),
		kick:    make(chan struct{}, 1),
		servers: map[string]*server{},
	}, nil
}

// Apply advertises the devices of st as its config assigns them to
// resources (Config.Resources adds pairs and resources without topology),
// each with the health it has in st. It is the plugin's side of the node
// agent's front-end seam.
func (p *Plugin) Apply(st devices.State) error {
	return p.Update(ResourcesFor(st, p.cfg.Resources))
}

// Update replaces the advertised resources. A resource that is new gets a
// server, one that is gone is stopped and its socket removed, and one that
// stays keeps its server and registration: its ListAndWatch streams get the
// new device list. With CDI, the specs are written before any Allocate can
// name the new devices. Invalid resources are left out and reported in the
// error, as is a failure to write CDI specs; the rest are applied.
func (p *Plugin) Update(rs []Resource) error {
	var errs []error
	valid := make([]Resource, 0, len(rs))
	names := map[string]bool{}
	for _, r := range rs {
		err := validateResource(r)
		if err == nil && names[r.Name] {
			err = fmt.Errorf("resource %s: listed twice", r.Name)
		}
		if err == nil {
			if n := len(SocketGlob(p.cfg.KubeletDir, r.Name)); n > maxSocketPath {
				err = fmt.Errorf("resource %s: socket path is %d bytes, longer than the %d a unix socket allows", r.Name, n, maxSocketPath)
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		names[r.Name] = true
		valid = append(valid, r)
	}
	if p.cfg.CDI {
		if err := WriteCDISpecs(p.cfg.CDIDir, valid); err != nil {
			errs = append(errs, err)
		}
	}
	p.mu.Lock()
	for _, r := range valid {
		s := p.servers[r.Name]
		if s == nil {
			s = newServer(r.Name, &p.cfg, p.log, p.m)
			p.servers[r.Name] = s
			p.log.Info("resource added", "resource", r.Name, "devices", len(r.Devices))
		}
		prev := s.snapshot()
		st := newState(r, prev)
		s.setState(st)
		if !st.topology && !r.ExcludeTopology && len(r.Devices) > 0 && (prev == nil || prev.topology) {
			// Normal in a VM (numa_node -1); on bare metal it means NUMA
			// is off in the firmware.
			p.log.Info("advertising without NUMA topology: a device's NUMA node is unknown", "resource", r.Name)
		}
	}
	for name := range p.servers {
		if !names[name] {
			p.log.Info("resource removed", "resource", name)
			delete(p.servers, name)
			p.m.devices.DeleteLabelValues(name, pluginapi.Healthy)
			p.m.devices.DeleteLabelValues(name, pluginapi.Unhealthy)
			p.m.registered.DeleteLabelValues(name)
		}
	}
	p.mu.Unlock()
	signal(p.kick)
	return errors.Join(errs...)
}

// Run serves the resources until ctx is done, starting and stopping servers
// as Update changes them and dispatching kubelet socket events. It returns
// nil on a clean stop, after every server has stopped and removed its
// socket, and an error when the kubelet directory cannot be watched.
func (p *Plugin) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("run device plugin: already running")
	}
	defer p.running.Store(false)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch kubelet dir %s: %w", p.cfg.KubeletDir, err)
	}
	defer w.Close()
	if err := w.Add(p.cfg.KubeletDir); err != nil {
		return fmt.Errorf("watch kubelet dir %s: %w", p.cfg.KubeletDir, err)
	}
	type runner struct {
		s      *server
		cancel context.CancelFunc
		done   chan struct{}
	}
	running := map[*server]*runner{}
	stopRunner := func(r *runner) {
		r.cancel()
		<-r.done
	}
	defer func() {
		// Stop every server at once; each is bounded by StopTimeout.
		for _, r := range running {
			r.cancel()
		}
		for _, r := range running {
			<-r.done
		}
	}()
	reconcile := func() {
		p.mu.Lock()
		want := make(map[*server]bool, len(p.servers))
		for _, s := range p.servers {
			want[s] = true
		}
		p.mu.Unlock()
		for s, r := range running {
			if !want[s] {
				stopRunner(r)
				delete(running, s)
			}
		}
		for s := range want {
			if running[s] != nil {
				continue
			}
			sctx, cancel := context.WithCancel(ctx)
			r := &runner{s: s, cancel: cancel, done: make(chan struct{})}
			running[s] = r
			go func() {
				defer close(r.done)
				s.run(sctx)
			}()
		}
	}
	reconcile()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
			reconcile()
		case ev, ok := <-w.Events:
			if !ok {
				return fmt.Errorf("watch kubelet dir %s: watcher closed", p.cfg.KubeletDir)
			}
			p.dispatch(ev)
		case err, ok := <-w.Errors:
			if !ok {
				return fmt.Errorf("watch kubelet dir %s: watcher closed", p.cfg.KubeletDir)
			}
			p.log.Warn("watch kubelet dir", "dir", p.cfg.KubeletDir, "err", err)
		}
	}
}

// dispatch wakes the servers an event in the kubelet dir concerns.
func (p *Plugin) dispatch(ev fsnotify.Event) {
	base := filepath.Base(ev.Name)
	p.mu.Lock()
	defer p.mu.Unlock()
	if base == KubeletSocket && ev.Has(fsnotify.Create) {
		p.log.Info("kubelet socket created, registering again", "socket", ev.Name)
		for _, s := range p.servers {
			signal(s.kubeletUp)
		}
		return
	}
	if base == KubeletSocket && (ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)) {
		// Each server looks at kubelet.sock again: if it is gone, so are
		// our registrations (not ready until the kubelet is back); if it
		// is there, this was a killed kubelet's socket removed by the next
		// kubelet's start, perhaps after we registered with that one.
		p.log.Info("kubelet socket removed", "socket", ev.Name)
		for _, s := range p.servers {
			signal(s.kubeletUp)
		}
		return
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		for _, s := range p.servers {
			// An event about an earlier socket of the server (removed
			// by the server itself when it served again) is no news.
			if filepath.Base(s.socketPath()) == base {
				signal(s.gone)
			}
		}
	}
}

// Ready returns nil when every resource is served and registered with the
// kubelet, and otherwise an error naming those that are not.
func (p *Plugin) Ready() error {
	if !p.running.Load() {
		return errors.New("device plugin is not running")
	}
	p.mu.Lock()
	var bad []string
	for name, s := range p.servers {
		switch {
		case !s.serving.Load():
			bad = append(bad, name+" not serving")
		case !s.registered.Load():
			bad = append(bad, name+" not registered")
		}
	}
	p.mu.Unlock()
	if len(bad) > 0 {
		slices.Sort(bad)
		return fmt.Errorf("device plugin not ready: %s", strings.Join(bad, ", "))
	}
	return nil
}

// Handler serves /metrics (Prometheus) and /healthz (200 "ok" when Ready,
// 503 with the reason otherwise).
func (p *Plugin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := p.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}
