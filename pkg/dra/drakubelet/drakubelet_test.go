package drakubelet

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	drahealthv1 "k8s.io/kubelet/pkg/apis/dra-health/v1"
	drapbv1 "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// plugin is a hand-made DRA plugin on one socket (registration, DRA and
// health services; GetInfo names no endpoint, so the kubelet uses the
// registration socket) whose behaviour each test sets.
type plugin struct {
	registerapi.UnimplementedRegistrationServer
	drapbv1.UnimplementedDRAPluginServer
	drahealthv1.UnimplementedDRAResourceHealthServer

	getInfoDelay time.Duration // first GetInfo only
	streamOnce   bool          // each health stream sends one report, then ends

	mu       sync.Mutex
	getInfos int
	streams  int
	status   *registerapi.RegistrationStatus
}

func (p *plugin) GetInfo(ctx context.Context, _ *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	p.mu.Lock()
	p.getInfos++
	first := p.getInfos == 1
	p.mu.Unlock()
	if first && p.getInfoDelay > 0 {
		select {
		case <-time.After(p.getInfoDelay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &registerapi.PluginInfo{Type: registerapi.DRAPlugin, Name: "test.example.com",
		SupportedVersions: []string{drapbv1.DRAPluginService, drahealthv1.DRAResourceHealthService}}, nil
}

func (p *plugin) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	p.mu.Lock()
	p.status = st
	p.mu.Unlock()
	return &registerapi.RegistrationStatusResponse{}, nil
}

// NodePrepareResources hangs until the kubelet gives up.
func (p *plugin) NodePrepareResources(ctx context.Context, _ *drapbv1.NodePrepareResourcesRequest) (*drapbv1.NodePrepareResourcesResponse, error) {
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

func (p *plugin) NodeWatchResources(_ *drahealthv1.NodeWatchResourcesRequest, s grpc.ServerStreamingServer[drahealthv1.NodeWatchResourcesResponse]) error {
	p.mu.Lock()
	p.streams++
	p.mu.Unlock()
	err := s.Send(&drahealthv1.NodeWatchResourcesResponse{Devices: []*drahealthv1.DeviceHealth{{
		Device: &drahealthv1.DeviceIdentifier{PoolName: "node-1", DeviceName: "gpu-0"}, Health: drahealthv1.HealthStatus_HEALTHY, HealthCheckTimeoutSeconds: 30,
	}}})
	if err != nil || p.streamOnce {
		return err
	}
	<-s.Context().Done()
	return nil
}

// serve runs p on a socket in a temp dir and returns the socket's path.
func serve(t *testing.T, p *plugin) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "test.example.com-reg.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	registerapi.RegisterRegistrationServer(s, p)
	drapbv1.RegisterDRAPluginServer(s, p)
	drahealthv1.RegisterDRAResourceHealthServer(s, p)
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("plugin Serve() = %v", err)
		}
	})
	return sock
}

// TestRegisterGetInfoDeadline: the plugin manager gives GetInfo one
// second; a plugin slower than that fails the attempt, and the reconciler
// tries again a second later.
func TestRegisterGetInfoDeadline(t *testing.T) {
	t.Parallel()
	p := &plugin{getInfoDelay: 3 * GetInfoTimeout}
	sock := serve(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k, err := Register(ctx, sock, "test.example.com")
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	defer k.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.getInfos < 2 {
		t.Errorf("GetInfo called %d times, want a second attempt after the first ran past %s", p.getInfos, GetInfoTimeout)
	}
	if p.status == nil || !p.status.PluginRegistered {
		t.Errorf("registration status %v, want registered", p.status)
	}
	if k.Info.Endpoint != sock {
		t.Errorf("endpoint %q, want the registration socket %s when GetInfo names none", k.Info.Endpoint, sock)
	}
}

// TestCallTimeout: a prepare that hangs ends at the kubelet's per-call
// deadline with DeadlineExceeded.
func TestCallTimeout(t *testing.T) {
	t.Parallel()
	sock := serve(t, &plugin{})
	k, err := Register(context.Background(), sock, "test.example.com")
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	defer k.Close()
	if k.CallTimeout != DefaultCallTimeout {
		t.Errorf("CallTimeout = %s, want the kubelet's %s", k.CallTimeout, DefaultCallTimeout)
	}
	k.CallTimeout = 200 * time.Millisecond
	_, err = k.Prepare(context.Background(), Claim{Namespace: "ns", Name: "c", UID: "u"})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("Prepare() on a hanging plugin = %v, want DeadlineExceeded", err)
	}
}

// TestHealthStreamEnds: when the plugin's health stream ends the kubelet
// forgets the driver's devices (they read Unknown) and opens the stream
// again after its retry period.
func TestHealthStreamEnds(t *testing.T) {
	t.Parallel()
	p := &plugin{streamOnce: true}
	sock := serve(t, p)
	k, err := Register(context.Background(), sock, "test.example.com")
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	defer k.Close()
	if k.HealthRetry != DefaultHealthRetry {
		t.Errorf("HealthRetry = %s, want the kubelet's %s", k.HealthRetry, DefaultHealthRetry)
	}
	k.HealthRetry = time.Hour // first: see the cache cleared and nothing reopened
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hc, err := k.WatchHealth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	for hc.Reports() == 0 || hc.Err() == nil {
		select {
		case <-hc.Changed():
		case <-deadline:
			t.Fatalf("no report and stream end within 20s: %d reports, err %v", hc.Reports(), hc.Err())
		}
	}
	if h, ok := hc.Get("node-1", "gpu-0"); ok || h.Status != drahealthv1.HealthStatus_UNKNOWN {
		t.Errorf("after the stream ended, gpu-0 = %+v (known %v), want Unknown", h, ok)
	}
	cancel()
	<-hc.Done()

	// With the kubelet's retry (shortened) the stream comes back.
	k.HealthRetry = 100 * time.Millisecond
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	hc2, err := k.WatchHealth(ctx2)
	if err != nil {
		t.Fatal(err)
	}
	for hc2.Streams() < 3 {
		select {
		case <-hc2.Changed():
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("health stream opened %d times in 20s, want it reopened after each end", hc2.Streams())
		}
	}
}
