package nodeagent

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/devices"
)

func TestNodeLabels(t *testing.T) {
	discover := func(tree string) []devices.Device {
		devs, err := devices.Discover(context.Background(), devices.Config{Root: fixture(tree), NVML: devices.NVMLOff})
		if err != nil {
			t.Fatal(err)
		}
		return devs
	}
	dgx := discover("dgx-h100")
	// As NVML adds them: memory and MIG mode (one GPU in MIG mode).
	for i := range dgx {
		if dgx[i].Kind == devices.KindGPU {
			dgx[i].Attributes["memory_mib"] = "81559"
			dgx[i].Attributes["mig_mode"] = "disabled"
		}
	}
	dgx[3].Attributes["mig_mode"] = "enabled"
	tests := []struct {
		name string
		devs []devices.Device
		want map[string]string
	}{
		{"dgx-h100", dgx, map[string]string{
			"slipway.dev/gpu.count": "8", "slipway.dev/gpu.product": "NVIDIA-H100-80GB-HBM3", "slipway.dev/gpu.memory": "81559",
			"slipway.dev/gpu.mig.capable": "true", "slipway.dev/gpu.mig.enabled": "true",
			// The 8 InfiniBand rails, not the 4 RoCE storage ports.
			"slipway.dev/hca.count": "8", "slipway.dev/hca.link-layer": "InfiniBand", "slipway.dev/hca.rate": "400",
		}},
		// From sysfs alone (no NVML) neither memory nor MIG mode is
		// known: no label claims the H100s cannot do MIG.
		{"dgx-h100 without nvml", discover("dgx-h100"), map[string]string{
			"slipway.dev/gpu.count": "8", "slipway.dev/gpu.product": "NVIDIA-H100-80GB-HBM3",
			"slipway.dev/hca.count": "8", "slipway.dev/hca.link-layer": "InfiniBand", "slipway.dev/hca.rate": "400",
		}},
		{"fpga-node", discover("fpga-node"), map[string]string{"slipway.dev/fpga.count": "3"}},
		{"empty-node", discover("empty-node"), map[string]string{}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, NodeLabels(tc.devs)); diff != "" {
			t.Errorf("NodeLabels(%s) (-want +got):\n%s", tc.name, diff)
		}
	}
	alveos := discover("fpga-node")[:2]
	if got := NodeLabels(alveos)["slipway.dev/fpga.shell"]; got != "xilinx_u250_gen3x16_xdma_shell_4_1" {
		t.Errorf("NodeLabels(two Alveos of one shell) fpga.shell = %q", got)
	}
	if got := labelValue(" " + strings.Repeat("x", 70) + "!"); len(got) != 63 {
		t.Errorf("labelValue(71 characters) has %d, want 63", len(got))
	}
}

// apiServer models what the Kubernetes API server does with the labeller's
// requests (checked against kube-apiserver v1.37 in
// test/controlplane/nodelabels_test.go): GET of the Node; PATCH with
// server-side apply, the field manager owning exactly the labels it applied
// last (a label it no longer applies goes, labels of other managers stay);
// metadata.uid as a precondition (409 when no object exists, 422 when the
// object has another); apply without it on a missing Node creates one; a
// bearer token; a Status body on errors.
type apiServer struct {
	mu      sync.Mutex
	token   string
	fail    []int             // status codes to answer, in order, before succeeding
	uid     string            // the Node's UID; "" when there is no Node
	labels  map[string]string // the Node's labels
	managed map[string]bool   // the labels LabelsFieldManager owns
	calls   int
}

func (s *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	status := func(code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": msg, "code": code})
	}
	node := func() {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"apiVersion": "v1", "kind": "Node", "metadata": map[string]any{"name": "node-7", "uid": s.uid, "labels": s.labels}})
	}
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		status(http.StatusUnauthorized, "Unauthorized")
		return
	}
	if len(s.fail) > 0 {
		code := s.fail[0]
		s.fail = s.fail[1:]
		status(code, `nodes "node-7" is forbidden: User "system:serviceaccount:kube-system:slipway-device-plugin" cannot patch resource "nodes"`)
		return
	}
	if r.URL.Path != "/api/v1/nodes/node-7" {
		status(http.StatusNotFound, "no such path "+r.URL.Path)
		return
	}
	if r.Method == http.MethodGet {
		if s.uid == "" {
			status(http.StatusNotFound, `nodes "node-7" not found`)
			return
		}
		node()
		return
	}
	q := r.URL.Query()
	if r.Method != http.MethodPatch || q.Get("fieldManager") != LabelsFieldManager || q.Get("force") != "true" ||
		r.Header.Get("Content-Type") != "application/apply-patch+yaml" {
		status(http.StatusBadRequest, "unexpected request "+r.Method+" "+r.URL.String()+" "+r.Header.Get("Content-Type"))
		return
	}
	var apply struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name   string            `json:"name"`
			UID    string            `json:"uid"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	b, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(b, &apply); err != nil || apply.APIVersion != "v1" || apply.Kind != "Node" || apply.Metadata.Name != "node-7" {
		status(http.StatusBadRequest, "bad apply body "+string(b))
		return
	}
	switch {
	case s.uid == "" && apply.Metadata.UID != "":
		status(http.StatusConflict, `Operation cannot be fulfilled on nodes "node-7": uid mismatch: the provided object specified uid `+apply.Metadata.UID+", and no existing object was found")
		return
	case s.uid == "":
		s.uid = "created-by-apply" // what the labeller must never cause
	case apply.Metadata.UID != "" && apply.Metadata.UID != s.uid:
		status(http.StatusUnprocessableEntity, `Node "node-7" is invalid: metadata.uid: Invalid value: "`+apply.Metadata.UID+`": field is immutable`)
		return
	}
	for k := range s.managed {
		if _, ok := apply.Metadata.Labels[k]; !ok {
			delete(s.labels, k)
		}
	}
	s.managed = map[string]bool{}
	for k, v := range apply.Metadata.Labels {
		s.labels[k] = v
		s.managed[k] = true
	}
	node()
}

func (s *apiServer) snapshot() (map[string]string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.labels), s.calls
}

// bearer adds a token to every request, as a rest.Config's transport does.
type bearer struct {
	next  http.RoundTripper
	token string
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// tlsClient is srv's client with a bearer token.
func tlsClient(srv *httptest.Server, token string) *http.Client {
	c := srv.Client()
	c.Transport = bearer{next: c.Transport, token: token}
	return c
}

// runLabeller runs l until the test ends.
func runLabeller(t *testing.T, l *Labeller) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
}

// TestLabellerWritesOwnNode: the labeller applies the labels to its Node
// with the client it is given, retries a refused write (and says which
// RBAC it needs), removes the labels of a kind the node no longer has, and
// leaves other labels alone; a Node deleted and made again under the name
// is read anew.
func TestLabellerWritesOwnNode(t *testing.T) {
	t.Parallel()
	api := &apiServer{token: "tok-1", uid: "uid-1", fail: []int{http.StatusForbidden}, labels: map[string]string{"kubernetes.io/hostname": "node-7"}}
	srv := httptest.NewTLSServer(api)
	defer srv.Close()
	log := &logBuffer{}
	l, err := NewLabeller(LabelsConfig{NodeName: "node-7", APIServer: srv.URL, Client: tlsClient(srv, "tok-1"), Log: newTestLogger(log)})
	if err != nil {
		t.Fatal(err)
	}
	hca := devices.Device{ID: "mlx5_0", Kind: devices.KindHCA, Healthy: true, Ports: []devices.Port{{Number: 1, State: "ACTIVE", LinkLayer: "InfiniBand", Rate: "200 Gb/sec (4X HDR)"}}}
	gpu := devices.Device{ID: "GPU-1", Kind: devices.KindGPU, Model: "NVIDIA H200", Healthy: true, Attributes: map[string]string{"memory_mib": "143771", "mig_mode": "disabled"}}
	if err := l.Apply(devices.State{Devices: []devices.Device{gpu, hca}}); err != nil {
		t.Fatal(err)
	}
	runLabeller(t, l)
	waitLabels := func(what string, want map[string]string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, _ := api.snapshot()
			if cmp.Equal(want, got) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: node labels (-want +got):\n%s\nlog:\n%s", what, cmp.Diff(want, got), log.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitLabels("after a refused write and a retry", map[string]string{
		"kubernetes.io/hostname": "node-7",
		"slipway.dev/gpu.count":  "1", "slipway.dev/gpu.product": "NVIDIA-H200", "slipway.dev/gpu.memory": "143771",
		"slipway.dev/gpu.mig.capable": "true", "slipway.dev/gpu.mig.enabled": "false",
		"slipway.dev/hca.count": "1", "slipway.dev/hca.link-layer": "InfiniBand", "slipway.dev/hca.rate": "200",
	})
	if got := log.lines("rbac.yaml"); len(got) != 1 {
		t.Errorf("log lines naming the RBAC the write needs: %q, want one", got)
	}
	// The Node is deleted and made again (new UID); then the GPU goes
	// (unplugged): its labels go, the rest stay.
	api.mu.Lock()
	api.uid, api.labels, api.managed = "uid-2", map[string]string{"kubernetes.io/hostname": "node-7"}, nil
	api.mu.Unlock()
	if err := l.Apply(devices.State{Devices: []devices.Device{hca}}); err != nil {
		t.Fatal(err)
	}
	waitLabels("after the Node was made again and the GPU went", map[string]string{
		"kubernetes.io/hostname": "node-7",
		"slipway.dev/hca.count":  "1", "slipway.dev/hca.link-layer": "InfiniBand", "slipway.dev/hca.rate": "200",
	})
	// The same state again: no request.
	_, before := api.snapshot()
	if err := l.Apply(devices.State{Devices: []devices.Device{hca}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, after := api.snapshot(); after != before {
		t.Errorf("an unchanged state sent %d more requests, want none", after-before)
	}
}

// TestLabellerNeverCreatesNode: with a node name that names no Node (a
// typo, or the Node deleted), the labeller says so and creates nothing,
// even with rights that would let server-side apply create it.
func TestLabellerNeverCreatesNode(t *testing.T) {
	t.Parallel()
	api := &apiServer{token: "tok", labels: map[string]string{}}
	srv := httptest.NewTLSServer(api)
	defer srv.Close()
	log := &logBuffer{}
	l, err := NewLabeller(LabelsConfig{NodeName: "node-7", APIServer: srv.URL, Client: tlsClient(srv, "tok"), Log: newTestLogger(log)})
	if err != nil {
		t.Fatal(err)
	}
	gpu := devices.Device{ID: "GPU-1", Kind: devices.KindGPU, Model: "NVIDIA H200", Healthy: true}
	if err := l.Apply(devices.State{Devices: []devices.Device{gpu}}); err != nil {
		t.Fatal(err)
	}
	runLabeller(t, l)
	deadline := time.Now().Add(20 * time.Second)
	for len(log.lines("node node-7 does not exist")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no error naming the missing node in 20s:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	api.mu.Lock()
	uid := api.uid
	api.mu.Unlock()
	if uid != "" {
		t.Errorf("the labeller made Node node-7 (uid %q)", uid)
	}
}

func TestNewLabellerErrors(t *testing.T) {
	for _, cfg := range []LabelsConfig{
		{APIServer: "https://10.96.0.1:443", Client: http.DefaultClient},
		{NodeName: "n", APIServer: "10.96.0.1", Client: http.DefaultClient},
		{NodeName: "n", APIServer: "https://10.96.0.1:443"},
	} {
		if _, err := NewLabeller(cfg); err == nil {
			t.Errorf("NewLabeller(%+v) = nil error, want one", cfg)
		}
	}
}
