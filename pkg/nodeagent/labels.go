package nodeagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slipway-dev/slipway/pkg/devices"
)

// LabelPrefix starts every node label the agent writes.
const LabelPrefix = "slipway.dev/"

// LabelsFieldManager is the server-side apply field manager of the node
// labels: the API server removes a label this manager applied before and
// no longer applies, and leaves every other label alone.
const LabelsFieldManager = "slipway-device-plugin"

// Defaults of LabelsConfig.
const (
	DefaultLabelsTimeout = 10 * time.Second
	labelsMinBackoff     = time.Second
	labelsMaxBackoff     = time.Minute
)

// LabelsConfig configures a Labeller.
type LabelsConfig struct {
	// NodeName is the Node the agent runs on (the downward API's
	// spec.nodeName). Required. The Node must exist: the labeller never
	// creates one.
	NodeName string
	// APIServer is the API server's URL, such as https://10.96.0.1:443.
	// Required.
	APIServer string
	// Client sends the requests with the agent's credentials and trusts
	// the API server's CA: for instance rest.HTTPClientFor of the config of
	// a kubeconfig, or of the pod's service account (whose token client-go
	// reads again as the kubelet rotates it). Required.
	Client *http.Client
	// Timeout bounds one request. Zero means DefaultLabelsTimeout.
	Timeout time.Duration
	// Log receives the labels applied and failures. Nil discards.
	Log *slog.Logger
}

// Labeller is the front end that writes what the node has (GPU product,
// count, memory and MIG capability, HCA link layer and rate, FPGA shell) as
// labels on the node's own Node object, with server-side apply, so that
// pods can be placed by them as with NVIDIA's GPU feature discovery.
type Labeller struct {
	cfg    LabelsConfig
	log    *slog.Logger
	client *http.Client
	wake   chan struct{}

	mu      sync.Mutex
	want    map[string]string // labels from the last Apply
	applied map[string]string // labels the API server last accepted; nil before
	lastErr string
	uid     string // the Node's UID, read before the first write
}

// NewLabeller checks cfg.
func NewLabeller(cfg LabelsConfig) (*Labeller, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("node labels: node name is empty (set it from the downward API's spec.nodeName)")
	}
	u, err := url.Parse(cfg.APIServer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("node labels: api server %q: want a URL such as https://10.96.0.1:443", cfg.APIServer)
	}
	if cfg.Client == nil {
		return nil, errors.New("node labels: no API client")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultLabelsTimeout
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Labeller{
		cfg:    cfg,
		log:    log.With("node", cfg.NodeName),
		client: cfg.Client,
		wake:   make(chan struct{}, 1),
	}, nil
}

// Apply computes the node's labels from st and, when they changed, asks
// Run to write them.
func (l *Labeller) Apply(st devices.State) error {
	want := NodeLabels(st.Devices)
	l.mu.Lock()
	changed := !maps.Equal(want, l.want)
	l.want = want
	l.mu.Unlock()
	if changed {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// Ready is always nil: labels help scheduling but the devices are served
// without them; failures are logged.
func (l *Labeller) Ready() error { return nil }

// Run writes the labels whenever they change, retrying a failed write with
// backoff (1s to 1m), until ctx is done.
func (l *Labeller) Run(ctx context.Context) error {
	backoff := labelsMinBackoff
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.wake:
		case <-retry:
		}
		l.mu.Lock()
		want, applied := l.want, l.applied
		l.mu.Unlock()
		if applied != nil && maps.Equal(want, applied) {
			retry = nil
			continue
		}
		if err := l.write(ctx, want); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			l.mu.Lock()
			repeated := err.Error() == l.lastErr
			l.lastErr = err.Error()
			l.mu.Unlock()
			if !repeated {
				l.log.Error("node labels not written, retrying", "retry_in", backoff, "err", err)
			}
			retry = time.After(backoff)
			backoff = min(2*backoff, labelsMaxBackoff)
			continue
		}
		l.mu.Lock()
		l.applied, l.lastErr = want, ""
		l.mu.Unlock()
		backoff, retry = labelsMinBackoff, nil
		l.log.Info("node labels written", "labels", len(want))
	}
}

// write applies labels to the Node with server-side apply. Apply creates
// an object that does not exist, so the Node is read first (a wrong
// --node-name is an error, never a new Node) and its UID goes into the
// apply as a precondition: a Node deleted meanwhile is not made again.
func (l *Labeller) write(ctx context.Context, labels map[string]string) error {
	l.mu.Lock()
	uid := l.uid
	l.mu.Unlock()
	if uid == "" {
		var err error
		if uid, err = l.nodeUID(ctx); err != nil {
			return err
		}
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": "v1",
		"kind":       "Node",
		"metadata":   map[string]any{"name": l.cfg.NodeName, "uid": uid, "labels": labels},
	})
	if err != nil {
		return fmt.Errorf("encode node labels: %w", err)
	}
	resp, msg, err := l.do(ctx, http.MethodPatch, "?fieldManager="+LabelsFieldManager+"&force=true", "application/apply-patch+yaml", body)
	if err != nil {
		return err
	}
	// Keep the UID only while writes succeed: the API server answers a
	// Node deleted meanwhile with 409 (uid mismatch, no object) and one
	// made again under the name with 422 (uid immutable); the next try
	// reads the Node anew.
	l.mu.Lock()
	l.uid = ""
	if resp.StatusCode == http.StatusOK {
		l.uid = uid
	}
	l.mu.Unlock()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	return l.refused(resp, msg, "patch")
}

// nodeUID reads the Node and returns its UID.
func (l *Labeller) nodeUID(ctx context.Context) (string, error) {
	resp, msg, err := l.do(ctx, http.MethodGet, "", "", nil)
	if err != nil {
		return "", err
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return "", fmt.Errorf("node %s does not exist: check --node-name (the downward API's spec.nodeName)", l.cfg.NodeName)
	default:
		return "", l.refused(resp, msg, "get")
	}
	var n struct {
		Metadata struct {
			UID string `json:"uid"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(msg, &n); err != nil || n.Metadata.UID == "" {
		return "", fmt.Errorf("get node %s: no uid in the answer: %s", l.cfg.NodeName, statusMessage(msg))
	}
	return n.Metadata.UID, nil
}

// do sends one request about the Node, bounded by Timeout, and returns
// the response with (the start of) its body.
func (l *Labeller) do(ctx context.Context, method, query, contentType string, body []byte) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	u := strings.TrimSuffix(l.cfg.APIServer, "/") + "/api/v1/nodes/" + url.PathEscape(l.cfg.NodeName) + query
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("%s node %s: %w", strings.ToLower(method), l.cfg.NodeName, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s node %s: %w", strings.ToLower(method), l.cfg.NodeName, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp, msg, nil
}

// refused is the error for a request the API server did not accept.
func (l *Labeller) refused(resp *http.Response, msg []byte, verb string) error {
	if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("%s node %s: %s: %s (the agent needs get and patch on its own Node: images/device-plugin/rbac.yaml)",
			verb, l.cfg.NodeName, resp.Status, statusMessage(msg))
	}
	return fmt.Errorf("%s node %s: %s: %s", verb, l.cfg.NodeName, resp.Status, statusMessage(msg))
}

// statusMessage returns the message of a Kubernetes Status body, or the
// body.
func statusMessage(b []byte) string {
	var st struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &st) == nil && st.Message != "" {
		return st.Message
	}
	return strings.TrimSpace(string(b))
}

// NodeLabels returns the labels that describe devs, all under LabelPrefix:
//
//	gpu.count, gpu.product, gpu.memory (MiB), gpu.mig.capable,
//	gpu.mig.enabled   the GPUs (product and memory of the first; memory
//	                  and MIG only where NVML reported them)
//	hca.count, hca.link-layer, hca.rate (Gb/s)
//	                  the HCAs of the link layer most of them have
//	                  (InfiniBand on a tie), rate the fastest active port
//	fpga.count, fpga.shell
//	                  the FPGAs, shell when they all share one
//
// A kind the node lacks has no labels, so they disappear when its devices
// do. Values are cut to what a label value may hold.
func NodeLabels(devs []devices.Device) map[string]string {
	out := map[string]string{}
	set := func(k, v string) {
		if v = labelValue(v); v != "" {
			out[LabelPrefix+k] = v
		}
	}
	var gpus, hcas, fpgas []devices.Device
	for _, d := range devs {
		switch d.Kind {
		case devices.KindGPU:
			gpus = append(gpus, d)
		case devices.KindHCA:
			hcas = append(hcas, d)
		case devices.KindFPGA:
			fpgas = append(fpgas, d)
		}
	}
	if len(gpus) > 0 {
		set("gpu.count", strconv.Itoa(len(gpus)))
		set("gpu.product", gpus[0].Model)
		set("gpu.memory", gpus[0].Attributes["memory_mib"])
		// MIG mode is known only where NVML reported the GPUs (it gives
		// every GPU its memory, and a MIG mode unless MIG is
		// unsupported); from sysfs alone it is unknown, not "false".
		nvml, capable, enabled := false, false, false
		for _, g := range gpus {
			nvml = nvml || g.Attributes["memory_mib"] != ""
			capable = capable || g.Attributes["mig_mode"] != ""
			enabled = enabled || g.Attributes["mig_mode"] == "enabled"
		}
		if nvml {
			set("gpu.mig.capable", strconv.FormatBool(capable))
			set("gpu.mig.enabled", strconv.FormatBool(enabled))
		}
	}
	if len(hcas) > 0 {
		byLayer := map[string][]devices.Device{}
		for _, h := range hcas {
			if len(h.Ports) > 0 {
				byLayer[h.Ports[0].LinkLayer] = append(byLayer[h.Ports[0].LinkLayer], h)
			}
		}
		layer := devices.LinkLayerInfiniBand
		if len(byLayer[devices.LinkLayerEthernet]) > len(byLayer[layer]) {
			layer = devices.LinkLayerEthernet
		}
		if hs := byLayer[layer]; len(hs) > 0 {
			set("hca.count", strconv.Itoa(len(hs)))
			set("hca.link-layer", layer)
			rate := 0
			for _, h := range hs {
				for _, p := range h.Ports {
					if r, err := strconv.Atoi(strings.Fields(p.Rate + " 0")[0]); err == nil && p.State == "ACTIVE" {
						rate = max(rate, r)
					}
				}
			}
			if rate > 0 {
				set("hca.rate", strconv.Itoa(rate))
			}
		}
	}
	if len(fpgas) > 0 {
		set("fpga.count", strconv.Itoa(len(fpgas)))
		shells := map[string]bool{}
		for _, f := range fpgas {
			shells[f.Attributes["shell"]] = true
		}
		if len(shells) == 1 {
			set("fpga.shell", slices.Collect(maps.Keys(shells))[0])
		}
	}
	return out
}

// labelValue makes s a valid label value: at most 63 characters of
// [A-Za-z0-9._-], beginning and ending with an alphanumeric; spaces and
// other characters become "-".
func labelValue(s string) string {
	v := strings.Trim(strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '-'
	}, s), "._-")
	return strings.TrimRight(v[:min(len(v), 63)], "._-")
}
