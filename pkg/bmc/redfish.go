package bmc

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	bmclibbmc "github.com/bmc-toolbox/bmclib/v2/bmc"
	"github.com/bmc-toolbox/bmclib/v2/providers/redfish"
	"github.com/go-logr/logr"
	"github.com/stmcginnis/gofish/common"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// redfishBackend drives a Redfish BMC through bmclib's gofish provider, and
// makes the few requests bmclib cannot (reading Manufacturer, Model and the
// allowed reset types; a boot PATCH without the mode) itself, over the same
// HTTP client and session.
type redfishBackend struct {
	b    inventory.BMC
	cfg  Config
	log  *slog.Logger
	base string // scheme://host:port

	tr   *boundTransport
	hc   *http.Client
	conn *redfish.Conn
	inf  Info
	q    quirks
	sys  string // ComputerSystem @odata.id
	pw   inventory.Secret
}

func newRedfish(b inventory.BMC, cfg Config, log *slog.Logger) *redfishBackend {
	scheme := b.Scheme
	if scheme == "" {
		scheme = "https"
		if strings.HasPrefix(b.URL, "redfish+http://") {
			scheme = "http"
		}
	}
	host := b.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return &redfishBackend{b: b, cfg: cfg, log: log, base: scheme + "://" + host + ":" + strconv.Itoa(int(b.Port))}
}

func (r *redfishBackend) open(ctx context.Context, pw inventory.Secret) error {
	r.pw = pw
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case r.b.InsecureSkipVerify:
		tlsConf.InsecureSkipVerify = true
	case r.b.CAFile != "":
		pem, err := os.ReadFile(r.b.CAFile)
		if err != nil {
			return fmt.Errorf("read bmc CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("read bmc CA file %s: no PEM certificate in it", r.b.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	dialer := &net.Dialer{Timeout: r.cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	r.tr = &boundTransport{base: &http.Transport{
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: r.cfg.ConnectTimeout,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
	}}
	r.hc = &http.Client{Transport: r.tr}
	defer r.tr.bind(ctx)()

	scheme, _, _ := strings.Cut(r.base, "://")
	r.conn = redfish.New(scheme+"://"+hostOnly(r.base), r.b.Username, pw.Reveal(), logr.Discard(),
		redfish.WithHttpClient(r.hc),
		redfish.WithPort(strconv.Itoa(int(r.b.Port))),
	)
	// bmclib turns the deadline of Open's context into the HTTP client's
	// Timeout for its whole life, and that timer would race ours; the bound
	// transport enforces ctx instead, so Open gets no deadline.
	if err := r.conn.Open(context.WithoutCancel(ctx)); err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("log in: %w", describe(err))
	}
	if err := r.probe(ctx); err != nil {
		return fmt.Errorf("read system: %w", describe(err))
	}
	return nil
}

// hostOnly returns the host part of scheme://host:port, brackets kept.
func hostOnly(base string) string {
	_, hp, _ := strings.Cut(base, "://")
	i := strings.LastIndex(hp, ":")
	return hp[:i]
}

// probe reads the ComputerSystem for Manufacturer, Model and the allowed
// reset types, and picks the quirks that apply.
func (r *redfishBackend) probe(ctx context.Context) error {
	var coll struct {
		Members []common.Link
	}
	if err := r.getJSON(ctx, "/redfish/v1/Systems", &coll); err != nil {
		return err
	}
	if len(coll.Members) == 0 {
		return errors.New("the Systems collection is empty")
	}
	r.sys = coll.Members[0].String()
	var sys struct {
		Manufacturer string
		Model        string
		Actions      struct {
			Reset struct {
				Allowed []string `json:"ResetType@Redfish.AllowableValues"`
			} `json:"#ComputerSystem.Reset"`
		}
	}
	if err := r.getJSON(ctx, r.sys, &sys); err != nil {
		return err
	}
	r.q = matchQuirks(r.cfg.Quirks, sys.Manufacturer, sys.Model, sys.Actions.Reset.Allowed)
	r.inf = Info{Protocol: "redfish", Vendor: sys.Manufacturer, Model: sys.Model, Quirks: r.q.names()}
	return nil
}

func (r *redfishBackend) getJSON(ctx context.Context, path string, v any) error {
	resp, err := r.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(v); err != nil {
		return fmt.Errorf("malformed JSON in GET %s: %w", path, err)
	}
	return nil
}

// do makes one request with the session token (or basic auth before a
// session exists) and turns an error status into a gofish error, so it is
// described like bmclib's.
func (r *redfishBackend) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok := r.tr.token(); tok != "" {
		req.Header.Set("X-Auth-Token", tok)
	} else {
		req.SetBasicAuth(r.b.Username, r.pw.Reveal())
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return nil, common.ConstructError(resp.StatusCode, b)
	}
	return resp, nil
}

func (r *redfishBackend) close(ctx context.Context) error {
	if r.conn == nil {
		return nil
	}
	defer r.tr.bind(ctx)()
	// gofish's Logout drops the DELETE's error; bmclib's Close returns nil.
	err := r.conn.Close(ctx)
	r.hc.CloseIdleConnections()
	return err
}

func (r *redfishBackend) info() Info              { return r.inf }
func (r *redfishBackend) bootFlagsReadable() bool { return true }
func (r *redfishBackend) quirks() quirks          { return r.q }

func (r *redfishBackend) powerState(ctx context.Context) (PowerState, error) {
	defer r.tr.bind(ctx)()
	s, err := r.conn.PowerStateGet(ctx)
	if err != nil {
		return PowerStateUnknown, err
	}
	switch strings.ToLower(s) {
	case "on":
		return PowerOn, nil
	case "off":
		return PowerOff, nil
	case "poweringon":
		return PowerPoweringOn, nil
	case "poweringoff":
		return PowerPoweringOff, nil
	}
	return PowerState(strings.ToLower(s)), nil
}

// bmclibRedfishVerb maps an action to bmclib's Redfish verbs, whose names
// are crossed: bmclib "cycle" sends ForceRestart, "reset" sends PowerCycle.
func bmclibRedfishVerb(a PowerAction) string {
	switch a {
	case ActionSoftOff:
		return "soft"
	case ActionReset:
		return "cycle"
	case ActionCycle:
		return "reset"
	}
	return string(a) // on, off
}

func (r *redfishBackend) setPower(ctx context.Context, a PowerAction) error {
	defer r.tr.bind(ctx)()
	_, err := r.conn.PowerSet(ctx, bmclibRedfishVerb(a))
	return err
}

func (r *redfishBackend) setBoot(ctx context.Context, d BootDevice, o BootOptions, q quirks) error {
	defer r.tr.bind(ctx)()
	if !q.noBootMode {
		_, err := r.conn.BootDeviceSet(ctx, string(d), o.Persistent, !o.Legacy)
		return err
	}
	// bmclib always sends the mode first and retries without it on error;
	// on the BMCs this quirk names the first PATCH fails or misapplies, so
	// send only what they accept.
	target := "Pxe"
	if d == BootDisk {
		target = "Hdd"
	}
	enabled := "Once"
	if o.Persistent {
		enabled = "Continuous"
	}
	body := map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": target, "BootSourceOverrideEnabled": enabled}}
	resp, err := r.do(ctx, http.MethodPatch, r.sys, body)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func (r *redfishBackend) bootOverride(ctx context.Context) (BootOverride, bool, error) {
	defer r.tr.bind(ctx)()
	ov, err := r.conn.BootDeviceOverrideGet(ctx)
	if err != nil {
		return BootOverride{}, false, err
	}
	o := BootOverride{Persistent: ov.IsPersistent, Legacy: !ov.IsEFIBoot}
	switch ov.Device {
	case bmclibbmc.BootDeviceTypeNone:
	case bmclibbmc.BootDeviceTypePXE:
		o.Device = BootPXE
	case bmclibbmc.BootDeviceTypeDisk:
		o.Device = BootDisk
	default:
		o.Device = BootDevice(ov.Device)
	}
	return o, true, nil
}

// boundTransport gives gofish's requests the context of the BMC call in
// progress. gofish makes every request with the context it was connected
// with, so without this a hung BMC or Ctrl-C could not stop a call; this is
// why a context is kept here, for the length of one call only. It also keeps
// connections alive (gofish asks to close each one, which costs a TLS
// handshake per request) and remembers the session token for the few
// requests the backend makes itself.
type boundTransport struct {
	base http.RoundTripper

	mu  sync.Mutex
	ctx context.Context
	tok string
}

// bind makes ctx the context of gofish's requests until the returned
// function is called.
func (t *boundTransport) bind(ctx context.Context) (unbind func()) {
	t.mu.Lock()
	t.ctx = ctx
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		t.ctx = nil
		t.mu.Unlock()
	}
}

func (t *boundTransport) token() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tok
}

func (t *boundTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.mu.Lock()
	ctx := t.ctx
	t.mu.Unlock()
	if ctx == nil {
		ctx = req.Context()
	}
	r2 := req.Clone(ctx)
	r2.Close = false
	r2.Header.Del("Connection")
	resp, err := t.base.RoundTrip(r2)
	if err != nil {
		return nil, err
	}
	if req.Method == http.MethodPost && resp.StatusCode == http.StatusCreated && strings.HasSuffix(strings.TrimSuffix(req.URL.Path, "/"), "/Sessions") {
		if tok := resp.Header.Get("X-Auth-Token"); tok != "" {
			t.mu.Lock()
			t.tok = tok
			t.mu.Unlock()
		}
	}
	return resp, nil
}
