package kubeletstub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// dialTimeout is how long the kubelet waits for a registering plugin's
// socket to accept (plugin/v1beta1/client.go dial: 10s, blocking).
const dialTimeout = 10 * time.Second

// Config configures a Stub.
type Config struct {
	// Dir is the device plugin directory. Like the kubelet's device
	// manager at start, the stub creates it if needed, deletes every
	// socket in it (the plugins' too; other files such as a checkpoint
	// stay), and then creates kubelet.sock.
	Dir string
	// DisconnectDelay is how long the stub takes, after a plugin's
	// ListAndWatch stream ends, to disconnect that endpoint. The kubelet
	// does it in the stream's goroutine, so on a loaded node it lands
	// whenever that goroutine runs; a plugin cannot see when, and must not
	// depend on it. Zero means at once.
	DisconnectDelay time.Duration
}

// Update is one ListAndWatch message as the stub received it.
type Update struct {
	// Devices is the full device list.
	Devices []*pluginapi.Device
	// At is when the stub received it.
	At time.Time
}

// Plugin is a connected plugin endpoint as the stub sees it.
type Plugin struct {
	// Request is the plugin's RegisterRequest.
	Request *pluginapi.RegisterRequest
	// RegisteredAt is when Register was called.
	RegisteredAt time.Time
	// Options are what GetDevicePluginOptions returned.
	Options *pluginapi.DevicePluginOptions
	// Client calls the plugin.
	Client pluginapi.DevicePluginClient

	socket string // absolute path of the plugin's socket
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	// orphaned is set when a refused duplicate Register dropped this
	// endpoint's client from the kubelet's books (see Register): when its
	// stream ends, nothing disconnects it.
	orphaned bool
}

// Stub is a running kubelet device manager stand-in.
type Stub struct {
	pluginapi.UnimplementedRegistrationServer

	dir    string
	socket string
	gs     *grpc.Server
	lis    *net.UnixListener
	delay  time.Duration

	mu        sync.Mutex
	changed   chan struct{}                 // closed on every registration, update or disconnection
	endpoints map[string]map[string]*Plugin // resource → socket path → endpoint (the kubelet's endpointStore)
	primary   map[string]*Plugin            // resource → the endpoint used for it (the kubelet's endpoints)
	updates   map[string][]Update
	health    map[string]map[string]string   // resource → device ID → health as the kubelet holds it
	devices   map[string][]*pluginapi.Device // resource → the latest device list (the kubelet's allDevices)
	allocated map[string]map[string]bool     // resource → device IDs Admit allocated
	attempts  map[string]int                 // Register calls
	regCount  map[string]int                 // Register calls that succeeded
	refused   map[string][]string            // the errors Register returned
	stopped   bool
}

// Start does what the kubelet's device manager does when it starts: it
// creates Dir, deletes every socket in it (a kubelet.sock that a killed
// kubelet left behind last, the order hardest for a plugin: its own socket
// goes while the stale kubelet.sock is still there), listens on
// Dir/kubelet.sock and serves Registration.
func Start(cfg Config) (*Stub, error) {
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create device plugin dir %s: %w", cfg.Dir, err)
	}
	if err := cleanSockets(cfg.Dir); err != nil {
		return nil, err
	}
	s := &Stub{
		dir:       cfg.Dir,
		socket:    filepath.Join(cfg.Dir, "kubelet.sock"),
		delay:     cfg.DisconnectDelay,
		changed:   make(chan struct{}),
		endpoints: map[string]map[string]*Plugin{},
		primary:   map[string]*Plugin{},
		updates:   map[string][]Update{},
		health:    map[string]map[string]string{},
		devices:   map[string][]*pluginapi.Device{},
		allocated: map[string]map[string]bool{},
		attempts:  map[string]int{},
		regCount:  map[string]int{},
		refused:   map[string][]string{},
	}
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.socket, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", s.socket, err)
	}
	s.lis = lis
	s.gs = grpc.NewServer()
	pluginapi.RegisterRegistrationServer(s.gs, s)
	go func() { _ = s.gs.Serve(lis) }()
	return s, nil
}

// cleanSockets removes every socket in dir, as the kubelet's
// CleanupPluginDirectory does; directories and other files stay. The
// kubelet goes in directory order, which is arbitrary; the stub removes
// kubelet.sock last.
func cleanSockets(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("clean device plugin dir %s: %w", dir, err)
	}
	slices.SortStableFunc(ents, func(a, b os.DirEntry) int {
		switch {
		case a.Name() == "kubelet.sock":
			return 1
		case b.Name() == "kubelet.sock":
			return -1
		}
		return 0
	})
	var errs []error
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() || fi.Mode()&os.ModeSocket == 0 {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean device plugin dir %s: %w", dir, err)
	}
	return nil
}

// Socket is the path of kubelet.sock.
func (s *Stub) Socket() string { return s.socket }

// Stop stops serving, closes every plugin connection and removes
// kubelet.sock, as the device manager's Stop does (closing its listener
// unlinks the socket).
func (s *Stub) Stop() {
	s.stop()
	_ = os.Remove(s.socket)
}

// Kill ends the stub as a kubelet that is killed or restarted by systemd
// ends: its connections close, and kubelet.sock stays on disk, refusing
// connections, until the next kubelet's start removes it.
func (s *Stub) Kill() {
	s.lis.SetUnlinkOnClose(false)
	s.stop()
}

func (s *Stub) stop() {
	s.mu.Lock()
	s.stopped = true
	var all []*Plugin
	for _, eps := range s.endpoints {
		for _, p := range eps {
			all = append(all, p)
		}
	}
	s.endpoints = map[string]map[string]*Plugin{}
	s.primary = map[string]*Plugin{}
	s.notifyLocked()
	s.mu.Unlock()
	s.gs.Stop()
	for _, p := range all {
		p.cancel()
		_ = p.conn.Close()
	}
}

func (s *Stub) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// extendedName is what the kubelet accepts as a device plugin resource
// name: a domain-prefixed name outside kubernetes.io and requests.
var extendedName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)

// Register handles a registration as the kubelet v1.37 device manager
// does: check the version and the resource name, dial the plugin's socket
// (blocking, up to 10s), read its options, and connect it, which fails with
// "device plugin already connected: <socket>" when an endpoint for the same
// resource and socket is connected. As in the kubelet, a Register that
// fails after the name check (the dial, the options or that refusal) also
// drops any connected endpoint of the same socket from the kubelet's
// clients, so that when its stream ends it is never disconnected: every
// later Register from that socket is refused until the kubelet restarts. A
// plugin must therefore register once per kubelet start and socket, and a
// plugin that serves again while the kubelet runs must do it on a socket
// of another name (the kubelet keeps endpoints by resource and socket). On success the stub follows the
// plugin's ListAndWatch, and when the stream ends it marks all of the
// resource's devices unhealthy (allocatable drops to 0), as the kubelet
// does.
func (s *Stub) Register(ctx context.Context, req *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	at := time.Now()
	name := req.GetResourceName()
	s.mu.Lock()
	s.attempts[name]++
	s.mu.Unlock()
	if !slices.Contains(pluginapi.SupportedVersions[:], req.GetVersion()) {
		return s.refuse(name, fmt.Errorf("requested device plugin version %s is not supported; supported versions are %v", req.GetVersion(), pluginapi.SupportedVersions))
	}
	if domain, n, _ := strings.Cut(name, "/"); !extendedName.MatchString(name) || len(n) > 63 || len(domain) > 253 ||
		strings.HasPrefix(name, "kubernetes.io/") || strings.HasPrefix(name, "requests.") {
		return s.refuse(name, fmt.Errorf("the ResourceName %q is invalid", name))
	}
	socket := filepath.Join(s.dir, req.GetEndpoint())
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err := dial(dctx, socket)
	if err != nil {
		return s.refuseDeregister(name, socket, fmt.Errorf("failed to dial device plugin: %w", err))
	}
	client := pluginapi.NewDevicePluginClient(conn)
	opts, err := client.GetDevicePluginOptions(dctx, &pluginapi.Empty{})
	if err != nil {
		_ = conn.Close()
		return s.refuseDeregister(name, socket, fmt.Errorf("failed to get device plugin options: %w", err))
	}
	p := &Plugin{Request: req, RegisteredAt: at, Options: opts, Client: client, socket: socket, conn: conn}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		_ = conn.Close()
		return nil, errors.New("kubelet stub is stopped")
	}
	if old, ok := s.endpoints[name][socket]; ok {
		old.orphaned = true
		s.refused[name] = append(s.refused[name], "device plugin already connected: "+socket)
		s.notifyLocked()
		s.mu.Unlock()
		_ = conn.Close()
		return &pluginapi.Empty{}, fmt.Errorf("device plugin already connected: %s", socket)
	}
	if s.endpoints[name] == nil {
		s.endpoints[name] = map[string]*Plugin{}
	}
	s.endpoints[name][socket] = p
	s.primary[name] = p
	s.regCount[name]++
	s.notifyLocked()
	s.mu.Unlock()
	// As client.Run: the stream is opened after Register has returned,
	// with a context of its own.
	sctx, scancel := context.WithCancel(context.Background())
	p.cancel = scancel
	go s.follow(sctx, name, p)
	return &pluginapi.Empty{}, nil
}

// refuseDeregister refuses a registration that failed after the kubelet
// had added its client: like the kubelet's deregisterClient, it drops every
// client of that resource and socket, a connected one too.
func (s *Stub) refuseDeregister(name, socket string, err error) (*pluginapi.Empty, error) {
	s.mu.Lock()
	if old, ok := s.endpoints[name][socket]; ok {
		old.orphaned = true
	}
	s.mu.Unlock()
	return s.refuse(name, err)
}

// refuse records a refused registration and returns its error.
func (s *Stub) refuse(name string, err error) (*pluginapi.Empty, error) {
	s.mu.Lock()
	s.refused[name] = append(s.refused[name], err.Error())
	s.notifyLocked()
	s.mu.Unlock()
	return &pluginapi.Empty{}, err
}

// dial connects to a plugin's socket, blocking until it accepts or ctx ends.
func dial(ctx context.Context, socket string) (*grpc.ClientConn, error) {
	// A socket that does not exist or refuses is retried until ctx ends,
	// as grpc.WithBlock does in the kubelet.
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, "unix", socket)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dial %s: %w", socket, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("localhost"))
}

// follow reads the endpoint's ListAndWatch stream; when it ends, the
// endpoint is disconnected DisconnectDelay later (unless a failed Register
// orphaned it).
func (s *Stub) follow(ctx context.Context, name string, p *Plugin) {
	stream, err := p.Client.ListAndWatch(ctx, &pluginapi.Empty{})
	if err == nil {
		for {
			resp, err := stream.Recv()
			if err != nil {
				break
			}
			s.mu.Lock()
			if s.endpoints[name][p.socket] == p {
				s.updates[name] = append(s.updates[name], Update{Devices: resp.GetDevices(), At: time.Now()})
				h := map[string]string{}
				for _, d := range resp.GetDevices() {
					h[d.GetID()] = d.GetHealth()
				}
				s.health[name] = h
				s.devices[name] = resp.GetDevices()
				s.notifyLocked()
			}
			s.mu.Unlock()
		}
	}
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.orphaned || s.endpoints[name][p.socket] != p {
		return
	}
	delete(s.endpoints[name], p.socket)
	_ = p.conn.Close()
	if len(s.endpoints[name]) > 0 {
		for _, other := range s.endpoints[name] {
			s.primary[name] = other
			break
		}
	} else {
		delete(s.endpoints, name)
		delete(s.primary, name)
		// markResourceUnhealthy: every device of the resource.
		for id := range s.health[name] {
			s.health[name][id] = pluginapi.Unhealthy
		}
	}
	s.notifyLocked()
}

// Registrations returns how many times resource has registered
// successfully.
func (s *Stub) Registrations(resource string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.regCount[resource]
}

// Attempts returns how many Register calls resource made, refused ones
// included.
func (s *Stub) Attempts(resource string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[resource]
}

// Refused returns the errors Register returned to resource, in order.
func (s *Stub) Refused(resource string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.refused[resource])
}

// Updates returns every ListAndWatch message received for resource.
func (s *Stub) Updates(resource string) []Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Update(nil), s.updates[resource]...)
}

// Allocatable returns the resource as the kubelet would put it in the node
// status: devices it holds as Healthy (allocatable) and all devices
// (capacity). Both are 0 for a resource never listed.
func (s *Stub) Allocatable(resource string) (healthy, total int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.health[resource] {
		if h == pluginapi.Healthy {
			healthy++
		}
		total++
	}
	return healthy, total
}

// Endpoints returns how many endpoints (sockets) of resource the stub
// holds connected: more than one while a plugin that served again on a
// new socket has registered it and the old one's stream end has not been
// processed yet.
func (s *Stub) Endpoints(resource string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.endpoints[resource])
}

// WaitEndpoints waits until resource has exactly n endpoints connected.
func (s *Stub) WaitEndpoints(ctx context.Context, resource string, n int) error {
	return s.waitLocked(ctx, func() bool { return len(s.endpoints[resource]) == n },
		fmt.Sprintf("%d endpoints of %s", n, resource))
}

// WaitRegistrations waits until resource has registered at least n times.
func (s *Stub) WaitRegistrations(ctx context.Context, resource string, n int) error {
	return s.waitLocked(ctx, func() bool { return s.regCount[resource] >= n },
		fmt.Sprintf("%d registrations of %s", n, resource))
}

// Wait blocks until cond holds (checked under the stub's lock at every
// registration, update and disconnection, so cond must not call the Stub)
// or ctx is done. plugins maps each resource to its connected endpoint.
func (s *Stub) Wait(ctx context.Context, cond func(plugins map[string]*Plugin, updates map[string][]Update) bool) error {
	return s.waitLocked(ctx, func() bool { return cond(s.primary, s.updates) }, "kubelet stub condition")
}

// waitLocked blocks until cond, called with s.mu held, is true at one of
// the stub's changes, or ctx is done; what names the wait in the error.
func (s *Stub) waitLocked(ctx context.Context, cond func() bool, what string) error {
	for {
		s.mu.Lock()
		ok := cond()
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, context.Cause(ctx))
		case <-ch:
		}
	}
}

// WaitPlugin waits until resource is connected and has sent at least one
// device list since, and returns it with its latest list.
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
