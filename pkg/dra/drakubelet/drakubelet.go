// Package drakubelet is the kubelet side of a DRA kubelet plugin for tests,
// modelled on the kubelet v1.37 plugin manager and DRA manager
// (pkg/kubelet/pluginmanager, pkg/kubelet/cm/dra):
//
//   - Register does what the plugin manager's reconciler does with a new
//     registration socket: connect (up to 10s), GetInfo with a 1s deadline,
//     check the type, name and services, NotifyRegistrationStatus; a failed
//     attempt is tried again every second, as the reconciler does.
//   - Prepare and Unprepare call NodePrepareResources and
//     NodeUnprepareResources over the real gRPC API (k8s.io/kubelet dra/v1)
//     with the kubelet's 45s per-call timeout.
//   - WatchHealth follows the dra-health/v1 stream like the kubelet's health
//     cache: a device not refreshed within its health check timeout reads
//     Unknown; when the stream ends the driver's devices are forgotten
//     (Unknown) and the stream is opened again 5s later.
//   - WipeSlices deletes the node's ResourceSlices, as the kubelet does at
//     every start before any plugin has registered.
package drakubelet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	drahealthv1 "k8s.io/kubelet/pkg/apis/dra-health/v1"
	drapbv1 "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// The kubelet's timings (v1.37).
const (
	// DefaultHealthTimeout is the kubelet's health check timeout for a
	// device whose report does not give one.
	DefaultHealthTimeout = 30 * time.Second
	// DialTimeout is how long the plugin manager waits to connect to a
	// registration socket.
	DialTimeout = 10 * time.Second
	// GetInfoTimeout is the deadline of the plugin manager's GetInfo.
	GetInfoTimeout = time.Second
	// RegisterRetry is how often the plugin manager's reconciler tries a
	// registration that failed again.
	RegisterRetry = time.Second
	// DefaultCallTimeout is the kubelet's deadline for each
	// NodePrepareResources and NodeUnprepareResources call.
	DefaultCallTimeout = 45 * time.Second
	// DefaultHealthRetry is how long the kubelet waits before opening a
	// health stream again after it ended.
	DefaultHealthRetry = 5 * time.Second
)

// Kubelet is one registered plugin as the kubelet sees it.
type Kubelet struct {
	// Info is what GetInfo returned.
	Info *registerapi.PluginInfo
	// DRA is the plugin's DRA service.
	DRA drapbv1.DRAPluginClient
	// CallTimeout bounds each Prepare and Unprepare call; Register sets
	// DefaultCallTimeout.
	CallTimeout time.Duration
	// HealthRetry is the wait before a health stream that ended is opened
	// again; Register sets DefaultHealthRetry.
	HealthRetry time.Duration
	conn        *grpc.ClientConn
	// health is the client of the health service, nil when not advertised.
	health drahealthv1.DRAResourceHealthClient
}

// Register does what the kubelet's plugin manager does with a new
// registration socket: connect, GetInfo, check that the plugin is a DRA
// plugin named driver offering v1.DRAPlugin, connect to its endpoint and
// report success. An attempt that cannot connect within DialTimeout or get
// an answer to GetInfo within GetInfoTimeout is tried again after
// RegisterRetry until ctx ends; a plugin that answers wrongly is told so
// and refused. Close closes the connection.
func Register(ctx context.Context, regSocket, driver string) (*Kubelet, error) {
	for {
		k, retry, err := register(ctx, regSocket, driver)
		if err == nil || !retry {
			return k, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("register %s: %w (last attempt: %v)", regSocket, ctx.Err(), err)
		case <-time.After(RegisterRetry):
		}
	}
}

// register is one attempt; retry says whether the reconciler would try
// again.
func register(ctx context.Context, regSocket, driver string) (k *Kubelet, retry bool, err error) {
	rc, err := grpc.NewClient("unix://"+regSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, false, fmt.Errorf("dial registration socket %s: %w", regSocket, err)
	}
	defer rc.Close()
	dctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	if err := connected(dctx, rc); err != nil {
		return nil, true, fmt.Errorf("connect to registration socket %s: %w", regSocket, err)
	}
	reg := registerapi.NewRegistrationClient(rc)
	ictx, icancel := context.WithTimeout(ctx, GetInfoTimeout)
	defer icancel()
	info, err := reg.GetInfo(ictx, &registerapi.InfoRequest{})
	if err != nil {
		return nil, true, fmt.Errorf("GetInfo on %s: %w", regSocket, err)
	}
	if info.Endpoint == "" {
		info.Endpoint = regSocket // the kubelet's rule: one socket for both
	}
	var problems []string
	if info.Type != registerapi.DRAPlugin {
		problems = append(problems, fmt.Sprintf("type %q, want %s", info.Type, registerapi.DRAPlugin))
	}
	if info.Name != driver {
		problems = append(problems, fmt.Sprintf("name %q, want %s", info.Name, driver))
	}
	if !slices.Contains(info.SupportedVersions, drapbv1.DRAPluginService) {
		problems = append(problems, fmt.Sprintf("services %v lack %s", info.SupportedVersions, drapbv1.DRAPluginService))
	}
	if len(problems) > 0 {
		_, _ = reg.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: false, Error: fmt.Sprint(problems)})
		return nil, false, fmt.Errorf("plugin on %s refused: %v", regSocket, problems)
	}
	conn, err := grpc.NewClient("unix://"+info.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, false, fmt.Errorf("dial dra endpoint %s: %w", info.Endpoint, err)
	}
	conn.Connect() // as the kubelet does, to notice early whether the plugin is there
	if _, err := reg.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		conn.Close()
		return nil, true, fmt.Errorf("NotifyRegistrationStatus on %s: %w", regSocket, err)
	}
	k = &Kubelet{Info: info, DRA: drapbv1.NewDRAPluginClient(conn), conn: conn, CallTimeout: DefaultCallTimeout, HealthRetry: DefaultHealthRetry}
	if slices.Contains(info.SupportedVersions, drahealthv1.DRAResourceHealthService) {
		k.health = drahealthv1.NewDRAResourceHealthClient(conn)
	}
	return k, false, nil
}

// connected waits until conn is connected, as the plugin manager's
// blocking dial does.
func connected(ctx context.Context, conn *grpc.ClientConn) error {
	conn.Connect()
	for {
		s := conn.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if !conn.WaitForStateChange(ctx, s) {
			return fmt.Errorf("still %s: %w", s, ctx.Err())
		}
	}
}

// Close closes the connection to the plugin.
func (k *Kubelet) Close() error { return k.conn.Close() }

// Claim names a claim as the kubelet sends it.
type Claim struct {
	Namespace, Name, UID string
}

func pbClaims(cs []Claim) []*drapbv1.Claim {
	out := make([]*drapbv1.Claim, 0, len(cs))
	for _, c := range cs {
		out = append(out, &drapbv1.Claim{Namespace: c.Namespace, Name: c.Name, Uid: c.UID})
	}
	return out
}

// Prepare calls NodePrepareResources for claims, bounded by CallTimeout.
func (k *Kubelet) Prepare(ctx context.Context, claims ...Claim) (*drapbv1.NodePrepareResourcesResponse, error) {
	ctx, cancel := k.callContext(ctx)
	defer cancel()
	return k.DRA.NodePrepareResources(ctx, &drapbv1.NodePrepareResourcesRequest{Claims: pbClaims(claims)})
}

// Unprepare calls NodeUnprepareResources for claims, bounded by
// CallTimeout.
func (k *Kubelet) Unprepare(ctx context.Context, claims ...Claim) (*drapbv1.NodeUnprepareResourcesResponse, error) {
	ctx, cancel := k.callContext(ctx)
	defer cancel()
	return k.DRA.NodeUnprepareResources(ctx, &drapbv1.NodeUnprepareResourcesRequest{Claims: pbClaims(claims)})
}

func (k *Kubelet) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if k.CallTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, k.CallTimeout)
}

// WipeSlices deletes node's ResourceSlices (of every driver), as the
// kubelet does at each start: until a driver registers again, none of its
// devices may be offered on the node.
func WipeSlices(ctx context.Context, c kubernetes.Interface, node string) error {
	sel := fields.Set{resourceapi.ResourceSliceSelectorNodeName: node}.String()
	if err := c.ResourceV1().ResourceSlices().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{FieldSelector: sel}); err != nil {
		return fmt.Errorf("delete resource slices of node %s: %w", node, err)
	}
	return nil
}

// Health is one device's health as the kubelet holds it.
type Health struct {
	// Status is HEALTHY, UNHEALTHY or UNKNOWN (also when it went stale).
	Status drahealthv1.HealthStatus
	// Message is the plugin's detail.
	Message string
	// Received is when the last report of the device arrived.
	Received time.Time
	// Timeout is the device's health check timeout.
	Timeout time.Duration
}

// HealthCache follows a plugin's health stream like the kubelet's DRA
// health cache: each report updates the devices it names; a device whose
// last report is older than its timeout reads Unknown, and the cache
// remembers that it went stale. When the stream ends the driver's devices
// are forgotten, as the kubelet clears its cache of that driver, and the
// stream is opened again after the Kubelet's HealthRetry, until ctx ends
// or the plugin answers Unimplemented.
type HealthCache struct {
	mu      sync.Mutex
	devices map[string]Health // "pool/device"
	reports int
	streams int      // streams opened so far
	stale   []string // devices that went stale, in order
	changed chan struct{}
	done    chan struct{}
	err     error
}

// WatchHealth opens the health stream and follows it (and the ones after
// it) until ctx is done. The plugin must advertise the service; an error
// opening the first stream is returned.
func (k *Kubelet) WatchHealth(ctx context.Context) (*HealthCache, error) {
	if k.health == nil {
		return nil, errors.New("plugin does not advertise " + drahealthv1.DRAResourceHealthService)
	}
	stream, err := k.health.NodeWatchResources(ctx, &drahealthv1.NodeWatchResourcesRequest{})
	if err != nil {
		return nil, fmt.Errorf("NodeWatchResources: %w", err)
	}
	c := &HealthCache{devices: map[string]Health{}, streams: 1, changed: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			err := c.follow(ctx, stream)
			c.mu.Lock()
			c.err = err
			clear(c.devices) // the kubelet's clearDriver: every device reads Unknown
			c.mu.Unlock()
			c.signal()
			if ctx.Err() != nil || status.Code(err) == codes.Unimplemented {
				return
			}
			for stream = nil; stream == nil; {
				select {
				case <-ctx.Done():
					return
				case <-time.After(k.HealthRetry):
				}
				if stream, err = k.health.NodeWatchResources(ctx, &drahealthv1.NodeWatchResourcesRequest{}); err != nil {
					c.mu.Lock()
					c.err = err
					c.mu.Unlock()
					continue
				}
				c.mu.Lock()
				c.streams++
				c.mu.Unlock()
			}
		}
	}()
	return c, nil
}

// follow applies the reports of one stream until it ends and returns why.
func (c *HealthCache) follow(ctx context.Context, stream grpc.ServerStreamingClient[drahealthv1.NodeWatchResourcesResponse]) error {
	recv := make(chan *drahealthv1.NodeWatchResourcesResponse)
	errc := make(chan error, 1)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case recv <- r:
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			}
		}
	}()
	check := time.NewTicker(50 * time.Millisecond)
	defer check.Stop()
	for {
		select {
		case r := <-recv:
			c.apply(r)
		case err := <-errc:
			return err
		case <-check.C:
			c.expire()
		}
	}
}

func (c *HealthCache) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *HealthCache) apply(r *drahealthv1.NodeWatchResourcesResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for _, d := range r.Devices {
		timeout := time.Duration(d.HealthCheckTimeoutSeconds) * time.Second
		if timeout <= 0 {
			timeout = DefaultHealthTimeout
		}
		c.devices[d.Device.PoolName+"/"+d.Device.DeviceName] = Health{Status: d.Health, Message: d.Message, Received: now, Timeout: timeout}
	}
	c.reports++
	c.signal()
}

func (c *HealthCache) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for k, h := range c.devices {
		if h.Status != drahealthv1.HealthStatus_UNKNOWN && now.Sub(h.Received) > h.Timeout {
			h.Status = drahealthv1.HealthStatus_UNKNOWN
			c.devices[k] = h
			c.stale = append(c.stale, k)
		}
	}
}

// Get returns the health of pool/device, and false (status Unknown) for a
// device the cache does not hold.
func (c *HealthCache) Get(pool, device string) (Health, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.devices[pool+"/"+device]
	return h, ok
}

// Streams is how many health streams were opened so far.
func (c *HealthCache) Streams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams
}

// Len is how many devices the cache holds.
func (c *HealthCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.devices)
}

// Reports is how many reports arrived.
func (c *HealthCache) Reports() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reports
}

// Stale lists the devices that went stale (Unknown) so far.
func (c *HealthCache) Stale() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.stale)
}

// Changed is signalled after each report and when a stream ends.
func (c *HealthCache) Changed() <-chan struct{} { return c.changed }

// Done is closed when the cache stopped following the plugin (ctx done, or
// the plugin answered Unimplemented); Err says why.
func (c *HealthCache) Done() <-chan struct{} { return c.done }

// Err is why the last stream ended (or could not be opened).
func (c *HealthCache) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
