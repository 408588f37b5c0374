package kubeletstub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// Config configures a Stub.
type Config struct {
	// Dir is the device plugin directory; kubelet.sock is created in it.
	Dir string
	// CleanDir removes every other file in Dir at start, as the kubelet
	// does when it (re)starts.
	CleanDir bool
}

// Update is one ListAndWatch message as the stub received it.
type Update struct {
	// Devices is the full device list.
	Devices []*pluginapi.Device
	// At is when the stub received it.
	At time.Time
}

// Plugin is a registered plugin as the stub sees it.
type Plugin struct {
	// Request is the plugin's RegisterRequest.
	Request *pluginapi.RegisterRequest
	// RegisteredAt is when Register was called.
	RegisteredAt time.Time
	// Options are what GetDevicePluginOptions returned.
	Options *pluginapi.DevicePluginOptions
	// Client calls the plugin.
	Client pluginapi.DevicePluginClient

	conn   *grpc.ClientConn
	cancel context.CancelFunc
}

// Stub is a running kubelet registration stub.
type Stub struct {
	pluginapi.UnimplementedRegistrationServer

	dir    string
	socket string
	gs     *grpc.Server

	mu       sync.Mutex
	changed  chan struct{} // closed on every registration or update
	plugins  map[string]*Plugin
	updates  map[string][]Update
	regCount map[string]int
	stopped  bool
}

// Start listens on Dir/kubelet.sock and serves Registration.
func Start(cfg Config) (*Stub, error) {
	if cfg.CleanDir {
		ents, err := os.ReadDir(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("clean device plugin dir %s: %w", cfg.Dir, err)
		}
		for _, e := range ents {
			if err := os.RemoveAll(filepath.Join(cfg.Dir, e.Name())); err != nil {
				return nil, fmt.Errorf("clean device plugin dir %s: %w", cfg.Dir, err)
			}
		}
	}
	s := &Stub{
		dir:      cfg.Dir,
		socket:   filepath.Join(cfg.Dir, "kubelet.sock"),
		changed:  make(chan struct{}),
		plugins:  map[string]*Plugin{},
		updates:  map[string][]Update{},
		regCount: map[string]int{},
	}
	if err := os.Remove(s.socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale %s: %w", s.socket, err)
	}
	lis, err := net.Listen("unix", s.socket)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", s.socket, err)
	}
	s.gs = grpc.NewServer()
	pluginapi.RegisterRegistrationServer(s.gs, s)
	go func() { _ = s.gs.Serve(lis) }()
	return s, nil
}

// Socket is the path of kubelet.sock.
func (s *Stub) Socket() string { return s.socket }

// Stop stops serving, closes every plugin connection and removes
// kubelet.sock, as a kubelet that exits.
func (s *Stub) Stop() {
	s.mu.Lock()
	s.stopped = true
	plugins := s.plugins
	s.plugins = map[string]*Plugin{}
	s.mu.Unlock()
	s.gs.Stop()
	for _, p := range plugins {
		p.cancel()
		_ = p.conn.Close()
	}
	_ = os.Remove(s.socket)
}

func (s *Stub) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Register handles a plugin's registration like the kubelet: check the
// version, dial the plugin's endpoint, read its options, follow
// ListAndWatch.
func (s *Stub) Register(ctx context.Context, req *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	at := time.Now()
	if req.GetVersion() != pluginapi.Version {
		return nil, fmt.Errorf("register %s: version %q is not supported, want %q", req.GetResourceName(), req.GetVersion(), pluginapi.Version)
	}
	endpoint := filepath.Join(s.dir, req.GetEndpoint())
	conn, err := grpc.NewClient("unix://"+endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("register %s: dial %s: %w", req.GetResourceName(), endpoint, err)
	}
	client := pluginapi.NewDevicePluginClient(conn)
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	opts, err := client.GetDevicePluginOptions(octx, &pluginapi.Empty{})
	cancel()
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("register %s: get options from %s: %w", req.GetResourceName(), endpoint, err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	stream, err := client.ListAndWatch(sctx, &pluginapi.Empty{})
	if err != nil {
		scancel()
		_ = conn.Close()
		return nil, fmt.Errorf("register %s: list and watch %s: %w", req.GetResourceName(), endpoint, err)
	}
	p := &Plugin{Request: req, RegisteredAt: at, Options: opts, Client: client, conn: conn, cancel: scancel}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		scancel()
		_ = conn.Close()
		return nil, errors.New("kubelet stub is stopped")
	}
	if old := s.plugins[req.GetResourceName()]; old != nil {
		old.cancel()
		_ = old.conn.Close()
	}
	s.plugins[req.GetResourceName()] = p
	s.regCount[req.GetResourceName()]++
	s.notifyLocked()
	s.mu.Unlock()
	go s.follow(req.GetResourceName(), p, stream)
	return &pluginapi.Empty{}, nil
}

func (s *Stub) follow(name string, p *Plugin, stream pluginapi.DevicePlugin_ListAndWatchClient) {
	for {
		resp, err := stream.Recv()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.plugins[name] == p {
			s.updates[name] = append(s.updates[name], Update{Devices: resp.GetDevices(), At: time.Now()})
			s.notifyLocked()
		}
		s.mu.Unlock()
	}
}

// Registrations returns how many times resource has registered.
func (s *Stub) Registrations(resource string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.regCount[resource]
}

// Updates returns every ListAndWatch message received for resource.
func (s *Stub) Updates(resource string) []Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Update(nil), s.updates[resource]...)
}

// WaitRegistrations waits until resource has registered at least n times.
func (s *Stub) WaitRegistrations(ctx context.Context, resource string, n int) error {
	for {
		s.mu.Lock()
		ok := s.regCount[resource] >= n
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d registrations of %s: %w", n, resource, ctx.Err())
		case <-ch:
		}
	}
}

// Wait blocks until cond holds (checked under the stub's lock at every
// registration and update, so cond must not call the Stub) or ctx is done.
func (s *Stub) Wait(ctx context.Context, cond func(plugins map[string]*Plugin, updates map[string][]Update) bool) error {
	for {
		s.mu.Lock()
		ok := cond(s.plugins, s.updates)
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for kubelet stub condition: %w", ctx.Err())
		case <-ch:
		}
	}
}

// WaitPlugin waits until resource is registered and has sent at least one
// device list, and returns it with its latest list.
func (s *Stub) WaitPlugin(ctx context.Context, resource string) (*Plugin, []*pluginapi.Device, error) {
	var p *Plugin
	var devs []*pluginapi.Device
	err := s.Wait(ctx, func(ps map[string]*Plugin, us map[string][]Update) bool {
		p = ps[resource]
		u := us[resource]
		if p == nil || len(u) == 0 || u[len(u)-1].At.Before(p.RegisteredAt) {
			return false
		}
		devs = u[len(u)-1].Devices
		return true
	})
	if err != nil {
		return nil, nil, fmt.Errorf("wait for %s: %w", resource, err)
	}
	return p, devs, nil
}

// WaitDevices waits until resource's latest device list satisfies cond and
// returns that update.
func (s *Stub) WaitDevices(ctx context.Context, resource string, cond func([]*pluginapi.Device) bool) (Update, error) {
	var got Update
	err := s.Wait(ctx, func(_ map[string]*Plugin, us map[string][]Update) bool {
		u := us[resource]
		if len(u) == 0 || !cond(u[len(u)-1].Devices) {
			return false
		}
		got = u[len(u)-1]
		return true
	})
	if err != nil {
		return Update{}, fmt.Errorf("wait for devices of %s: %w", resource, err)
	}
	return got, nil
}
