// Package drakubelet is the kubelet side of a DRA kubelet plugin for tests:
// it registers a plugin the way the kubelet's plugin manager does (GetInfo
// on the registration socket, check the type and the services, connect to
// the endpoint, NotifyRegistrationStatus), calls NodePrepareResources and
// NodeUnprepareResources over the real gRPC API (k8s.io/kubelet dra/v1),
// and follows the dra-health/v1 stream with the kubelet's rule that a
// device not refreshed within its health check timeout becomes Unknown.
package drakubelet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	drahealthv1 "k8s.io/kubelet/pkg/apis/dra-health/v1"
	drapbv1 "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// DefaultHealthTimeout is the kubelet's health check timeout for a device
// whose report does not give one.
const DefaultHealthTimeout = 30 * time.Second

// Kubelet is one registered plugin as the kubelet sees it.
type Kubelet struct {
	// Info is what GetInfo returned.
	Info *registerapi.PluginInfo
	// DRA is the plugin's DRA service.
	DRA  drapbv1.DRAPluginClient
	conn *grpc.ClientConn
	// health is the client of the health service, nil when not advertised.
	health drahealthv1.DRAResourceHealthClient
}

// Register does what the kubelet does with a new registration socket:
// GetInfo, check that the plugin is a DRA plugin named driver offering
// v1.DRAPlugin, connect to its endpoint and report success. Close closes
// the connection.
func Register(ctx context.Context, regSocket, driver string) (*Kubelet, error) {
	rc, err := grpc.NewClient("unix://"+regSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial registration socket %s: %w", regSocket, err)
	}
	defer rc.Close()
	reg := registerapi.NewRegistrationClient(rc)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// The socket file exists from bind() on, a moment before the plugin
	// listens; the kubelet's reconciler retries a failed registration, so
	// retry while the plugin is not yet answering.
	info, err := reg.GetInfo(cctx, &registerapi.InfoRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return nil, fmt.Errorf("GetInfo on %s: %w", regSocket, err)
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
		_, _ = reg.NotifyRegistrationStatus(cctx, &registerapi.RegistrationStatus{PluginRegistered: false, Error: fmt.Sprint(problems)})
		return nil, fmt.Errorf("plugin on %s refused: %v", regSocket, problems)
	}
	conn, err := grpc.NewClient("unix://"+info.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial dra endpoint %s: %w", info.Endpoint, err)
	}
	if _, err := reg.NotifyRegistrationStatus(cctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("NotifyRegistrationStatus on %s: %w", regSocket, err)
	}
	k := &Kubelet{Info: info, DRA: drapbv1.NewDRAPluginClient(conn), conn: conn}
	if slices.Contains(info.SupportedVersions, drahealthv1.DRAResourceHealthService) {
		k.health = drahealthv1.NewDRAResourceHealthClient(conn)
	}
	return k, nil
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

// Prepare calls NodePrepareResources for claims.
func (k *Kubelet) Prepare(ctx context.Context, claims ...Claim) (*drapbv1.NodePrepareResourcesResponse, error) {
	return k.DRA.NodePrepareResources(ctx, &drapbv1.NodePrepareResourcesRequest{Claims: pbClaims(claims)})
}

// Unprepare calls NodeUnprepareResources for claims.
func (k *Kubelet) Unprepare(ctx context.Context, claims ...Claim) (*drapbv1.NodeUnprepareResourcesResponse, error) {
	return k.DRA.NodeUnprepareResources(ctx, &drapbv1.NodeUnprepareResourcesRequest{Claims: pbClaims(claims)})
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
// remembers that it went stale.
type HealthCache struct {
	mu      sync.Mutex
	devices map[string]Health // "pool/device"
	reports int
	stale   []string // devices that went stale, in order
	changed chan struct{}
	done    chan struct{}
	err     error
}

// WatchHealth opens the health stream and follows it until ctx is done or
// the stream ends (Err says why). The plugin must advertise the service.
func (k *Kubelet) WatchHealth(ctx context.Context) (*HealthCache, error) {
	if k.health == nil {
		return nil, errors.New("plugin does not advertise " + drahealthv1.DRAResourceHealthService)
	}
	stream, err := k.health.NodeWatchResources(ctx, &drahealthv1.NodeWatchResourcesRequest{})
	if err != nil {
		return nil, fmt.Errorf("NodeWatchResources: %w", err)
	}
	c := &HealthCache{devices: map[string]Health{}, changed: make(chan struct{}, 1), done: make(chan struct{})}
	go c.follow(ctx, stream)
	return c, nil
}

func (c *HealthCache) follow(ctx context.Context, stream grpc.ServerStreamingClient[drahealthv1.NodeWatchResourcesResponse]) {
	defer close(c.done)
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
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		case <-check.C:
			c.expire()
		}
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
	select {
	case c.changed <- struct{}{}:
	default:
	}
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

// Get returns the health of pool/device.
func (c *HealthCache) Get(pool, device string) (Health, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.devices[pool+"/"+device]
	return h, ok
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

// Changed is signalled after each report.
func (c *HealthCache) Changed() <-chan struct{} { return c.changed }

// Done is closed when the stream has ended; Err says why.
func (c *HealthCache) Done() <-chan struct{} { return c.done }

// Err is why the stream ended.
func (c *HealthCache) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
