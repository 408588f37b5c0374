package deviceplugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/slipway-dev/slipway/pkg/deviceplugin/allocate"
)

// server is the gRPC device plugin of one resource, on its own socket.
// Every time it serves (at start, and again when its socket is removed) it
// listens on a socket of a new name: the kubelet keeps a plugin's endpoint
// by resource and socket, refuses a Register of a socket whose old stream
// it has not yet seen end ("device plugin already connected"), and then
// never drops that endpoint. Under a new name the kubelet takes the new
// endpoint at once and drops the old one whenever it notices its stream
// ended (kubelet devicemanager PluginConnected and PluginDisconnected,
// v1.37), so nothing depends on how quickly it notices.
type server struct {
	pluginapi.UnimplementedDevicePluginServer

	name    string
	kubelet string // absolute path of kubelet.sock
	cfg     *Config
	log     *slog.Logger
	m       *metrics

	// kubeletUp is signalled when kubelet.sock is created or removed, gone when
	// a socket of ours is removed by someone else.
	kubeletUp chan struct{}
	gone      chan struct{}

	serving    atomic.Bool
	registered atomic.Bool

	mu     sync.Mutex
	socket string // absolute path of the socket served now
	st     *state
	stop   chan struct{} // closed when the current gRPC server stops; ends ListAndWatch
}

func newServer(name string, cfg *Config, log *slog.Logger, m *metrics) *server {
	return &server{
		name:      name,
		kubelet:   filepath.Join(cfg.KubeletDir, KubeletSocket),
		cfg:       cfg,
		log:       log.With("resource", name),
		m:         m,
		kubeletUp: make(chan struct{}, 1),
		gone:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
	}
}

// signal sends on a one-slot channel without blocking: one pending wake-up
// is as good as many.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// socketPath is the absolute path of the socket served now ("" before the
// first).
func (s *server) socketPath() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.socket
}

func (s *server) snapshot() *state {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// setState replaces the snapshot and wakes ListAndWatch streams.
func (s *server) setState(st *state) {
	s.mu.Lock()
	old := s.st
	s.st = st
	s.mu.Unlock()
	if old != nil && old.changed != st.changed {
		close(old.changed)
	}
	h, u := st.counts()
	s.m.devices.WithLabelValues(s.name, pluginapi.Healthy).Set(float64(h))
	s.m.devices.WithLabelValues(s.name, pluginapi.Unhealthy).Set(float64(u))
}

// run serves the resource until ctx is done: listen, serve, register;
// re-register when kubelet.sock is recreated; start over when our socket
// is removed; on ctx done stop within StopTimeout and remove the socket.
func (s *server) run(ctx context.Context) {
	backoff := s.cfg.RetryInterval
	for {
		gs, err := s.serve()
		if err != nil {
			s.log.Error("serve device plugin", "dir", s.cfg.KubeletDir, "err", err)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, s.cfg.MaxRetryInterval)
			continue
		}
		backoff = s.cfg.RetryInterval
		restart := s.watch(ctx)
		s.shutdown(gs)
		if !restart {
			// Stopped for good (resource removed or plugin stopping): the
			// series goes rather than staying at 0 for a resource that
			// no longer exists.
			s.m.registered.DeleteLabelValues(s.name)
			return
		}
		s.log.Info("device plugin socket removed, serving again on a new one", "socket", s.socketPath())
	}
}

// serve removes stale sockets of the resource, listens on a socket of a
// new name and serves in the background.
func (s *server) serve() (*grpc.Server, error) {
	socket := newSocketPath(s.cfg.KubeletDir, s.name)
	s.removeStale()
	lis, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", socket, err)
	}
	gs := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(gs, s)
	s.mu.Lock()
	s.socket = socket
	s.stop = make(chan struct{})
	s.mu.Unlock()
	// Drain stale wake-ups about the previous socket.
	select {
	case <-s.gone:
	default:
	}
	go func() {
		// Serve returns when the server stops; an error then is about the
		// listener we closed ourselves and says nothing new.
		_ = gs.Serve(lis)
	}()
	s.serving.Store(true)
	s.log.Debug("serving device plugin", "socket", socket)
	return gs, nil
}

// removeStale removes the resource's sockets that no process serves: what
// a plugin that was killed left behind. A socket that accepts is left
// alone (another process serves it).
func (s *server) removeStale() {
	stale, _ := filepath.Glob(SocketGlob(s.cfg.KubeletDir, s.name))
	for _, p := range stale {
		c, err := net.DialTimeout("unix", p, time.Second)
		if err == nil {
			c.Close()
			continue
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("remove stale device plugin socket", "socket", p, "err", err)
			continue
		}
		s.log.Debug("removed stale device plugin socket", "socket", p)
	}
}

// shutdown ends ListAndWatch streams, stops gs within StopTimeout and
// removes the socket.
func (s *server) shutdown(gs *grpc.Server) {
	s.serving.Store(false)
	s.setRegistered(false)
	s.mu.Lock()
	close(s.stop)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(s.cfg.StopTimeout)
	select {
	case <-done:
		t.Stop()
	case <-t.C:
		s.log.Warn("graceful stop timed out, closing connections", "timeout", s.cfg.StopTimeout)
		gs.Stop()
		<-done
	}
	if socket := s.socketPath(); socket != "" {
		if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("remove device plugin socket", "socket", socket, "err", err)
		}
	}
}

// alreadyConnected is the kubelet's answer to a second Register for a
// resource and socket it has connected (devicemanager PluginConnected).
const alreadyConnected = "device plugin already connected"

// sameSocket reports whether a and b are the same socket file: one kubelet
// start, not a kubelet.sock created again (perhaps on the same inode).
func sameSocket(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.ModTime().Equal(b.ModTime())
}

// watch registers the socket served now once with each kubelet start
// (each kubelet.sock) and keeps the registration until ctx is done
// (false) or the socket is gone (true). A Register in flight is cancelled
// when the socket goes: the kubelet would wait for it until the timeout.
func (s *server) watch(ctx context.Context) bool {
	socket := s.socketPath()
	backoff := s.cfg.RetryInterval
	retry := time.NewTimer(0) // register at once
	defer retry.Stop()
	var with os.FileInfo // the kubelet.sock this socket is registered with
	waiting := false     // "waiting for the kubelet" was logged
	for {
		select {
		case <-ctx.Done():
			return false
		case <-s.gone:
			if _, err := os.Stat(socket); err != nil {
				return true
			}
		case <-s.kubeletUp:
			backoff = s.cfg.RetryInterval
			retry.Reset(0)
		case <-retry.C:
			if _, err := os.Stat(socket); err != nil {
				// The kubelet removed our socket before its removal
				// event reached us: serve again before registering.
				return true
			}
			kubelet, err := os.Stat(s.kubelet)
			if err != nil {
				// No kubelet yet: its kubelet.sock event wakes us; the
				// slow retry covers a missed event.
				s.setRegistered(false)
				retry.Reset(backoff)
				backoff = min(2*backoff, s.cfg.MaxRetryInterval)
				continue
			}
			if sameSocket(with, kubelet) {
				// Registered with this kubelet start already.
				s.setRegistered(true)
				continue
			}
			gone, up, err := s.registerWatching(ctx, socket)
			if gone {
				return true
			}
			if up {
				// kubelet.sock was created again meanwhile: look again.
				retry.Reset(0)
			}
			switch {
			case err == nil:
				s.m.registrations.WithLabelValues(s.name, "ok").Inc()
				s.log.Info("registered with kubelet", "socket", socket)
			case ctx.Err() != nil:
				return false
			case strings.Contains(err.Error(), alreadyConnected):
				// The kubelet has this socket connected and keeps it:
				// registered. Registering again would only be refused.
				s.m.registrations.WithLabelValues(s.name, "already_connected").Inc()
				s.log.Info("kubelet has this plugin connected already, counted as registered", "socket", socket)
			case status.Code(err) == codes.Unavailable:
				// kubelet.sock is there but nothing answers: a killed
				// kubelet's socket, left until the next kubelet starts
				// and creates its own (which wakes us).
				s.setRegistered(false)
				s.m.registrations.WithLabelValues(s.name, "error").Inc()
				if !waiting {
					s.log.Info("kubelet not answering on its socket, waiting for it", "socket", s.kubelet, "err", err)
					waiting = true
				}
				if !up {
					retry.Reset(backoff)
					backoff = min(2*backoff, s.cfg.MaxRetryInterval)
				}
				continue
			default:
				s.setRegistered(false)
				s.m.registrations.WithLabelValues(s.name, "error").Inc()
				s.log.Warn("register with kubelet, will retry", "socket", s.kubelet, "retry_in", backoff, "err", err)
				if !up {
					retry.Reset(backoff)
					backoff = min(2*backoff, s.cfg.MaxRetryInterval)
				}
				continue
			}
			backoff, waiting = s.cfg.RetryInterval, false
			// The kubelet that answered is the one listening now: a
			// killed kubelet's socket, stat'ed before the Register,
			// refuses connections, and the next kubelet may replace it
			// while the Register dials. Recording the old one would
			// register this socket again with the new kubelet, which
			// refuses it and then never drops this endpoint.
			if now, err := os.Stat(s.kubelet); err == nil {
				kubelet = now
			}
			with = kubelet
			s.setRegistered(true)
		}
	}
}

// registerWatching registers socket with the kubelet while watching for
// its removal (gone: the Register was cancelled) and for kubelet.sock
// being created (up).
func (s *server) registerWatching(ctx context.Context, socket string) (gone, up bool, err error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.register(rctx, socket) }()
	for {
		select {
		case err := <-done:
			return false, up, err
		case <-s.gone:
			if _, err := os.Stat(socket); err != nil {
				cancel()
				<-done
				return true, up, nil
			}
		case <-s.kubeletUp:
			up = true
		}
	}
}

// setRegistered records whether the resource is registered.
func (s *server) setRegistered(ok bool) {
	s.registered.Store(ok)
	v := 0.0
	if ok {
		v = 1
	}
	s.m.registered.WithLabelValues(s.name).Set(v)
}

// register calls the kubelet's Registration service for socket.
func (s *server) register(ctx context.Context, socket string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RegisterTimeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+s.kubelet, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial kubelet %s: %w", s.kubelet, err)
	}
	defer conn.Close()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     filepath.Base(socket),
		ResourceName: s.name,
		Options:      &pluginapi.DevicePluginOptions{GetPreferredAllocationAvailable: true},
	})
	if err != nil {
		return fmt.Errorf("register %s with kubelet %s: %w", s.name, s.kubelet, err)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// GetDevicePluginOptions advertises GetPreferredAllocation.
func (s *server) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{GetPreferredAllocationAvailable: true}, nil
}

// ListAndWatch sends the full device list now and on every change, until
// the stream ends or the server stops.
func (s *server) ListAndWatch(_ *pluginapi.Empty, stream pluginapi.DevicePlugin_ListAndWatchServer) error {
	s.mu.Lock()
	stop := s.stop
	s.mu.Unlock()
	for {
		st := s.snapshot()
		if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: st.list}); err != nil {
			return fmt.Errorf("send device list of %s: %w", s.name, err)
		}
		select {
		case <-st.changed:
		case <-stream.Context().Done():
			return nil
		case <-stop:
			return nil
		}
	}
}

// GetPreferredAllocation answers from the allocation policy. It never
// fails: an error fails the pod's admission, while an empty answer lets the
// kubelet choose by itself.
func (s *server) GetPreferredAllocation(_ context.Context, req *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	t0 := time.Now()
	defer func() { s.m.preferred.WithLabelValues(s.name).Observe(time.Since(t0).Seconds()) }()
	st := s.snapshot()
	resp := &pluginapi.PreferredAllocationResponse{}
	for _, cr := range req.GetContainerRequests() {
		ids, err := preferred(st, cr)
		if err != nil {
			s.log.Warn("no preferred allocation, the kubelet will choose", "available", cr.GetAvailableDeviceIDs(),
				"must_include", cr.GetMustIncludeDeviceIDs(), "size", cr.GetAllocationSize(), "err", err)
			ids = nil
		}
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerPreferredAllocationResponse{DeviceIDs: ids})
	}
	return resp, nil
}

// preferred asks the policy of st's resource (topology, or spreading for
// time-slicing replicas) and turns a panic in it into an error, for the
// same reason GetPreferredAllocation never fails.
func preferred(st *state, cr *pluginapi.ContainerPreferredAllocationRequest) (ids []string, err error) {
	defer func() {
		if r := recover(); r != nil {
			ids, err = nil, fmt.Errorf("allocation policy failed: %v", r)
		}
	}()
	req := allocate.Request{
		Available:   cr.GetAvailableDeviceIDs(),
		MustInclude: cr.GetMustIncludeDeviceIDs(),
		Size:        int(cr.GetAllocationSize()),
	}
	if st.res.Replicas > 1 {
		for _, id := range slices.Concat(req.Available, req.MustInclude) {
			if _, ok := st.byID[id]; !ok {
				return nil, fmt.Errorf("choose preferred replicas: %q is not advertised", id)
			}
		}
		return allocate.Spread(req, func(id string) string { return st.res.Devices[st.byID[id]].Parts[0].ID })
	}
	return st.topo.Preferred(req)
}

// Allocate returns the device nodes, environment and CDI devices of each
// container's devices. Unknown or unhealthy IDs are an error naming them.
func (s *server) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	t0 := time.Now()
	defer func() { s.m.allocate.WithLabelValues(s.name).Observe(time.Since(t0).Seconds()) }()
	st := s.snapshot()
	resp := &pluginapi.AllocateResponse{}
	for _, cr := range req.GetContainerRequests() {
		var devs []Device
		var unknown, unhealthy []string
		for _, id := range cr.GetDevicesIds() {
			i, ok := st.byID[id]
			switch {
			case !ok:
				unknown = append(unknown, id)
			case !st.healthy[i]:
				unhealthy = append(unhealthy, id+" ("+st.reasons[i]+")")
			default:
				devs = append(devs, st.res.Devices[i])
			}
		}
		if len(unknown) > 0 || len(unhealthy) > 0 {
			s.m.allocations.WithLabelValues(s.name, "error").Inc()
			var why []string
			if len(unknown) > 0 {
				why = append(why, "unknown devices "+strings.Join(unknown, ", "))
			}
			if len(unhealthy) > 0 {
				why = append(why, "unhealthy devices "+strings.Join(unhealthy, ", "))
			}
			return nil, status.Errorf(codes.InvalidArgument, "allocate %s: %s", s.name, strings.Join(why, "; "))
		}
		s.m.allocations.WithLabelValues(s.name, "ok").Inc()
		s.m.allocated.WithLabelValues(s.name).Add(float64(len(devs)))
		resp.ContainerResponses = append(resp.ContainerResponses, containerResponse(devs, s.cfg.CDI))
	}
	return resp, nil
}

// PreStartContainer is not required (the plugin does not advertise it).
func (s *server) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}
