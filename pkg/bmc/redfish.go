package bmc

import (
	"cmp"
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/common"
	"github.com/stmcginnis/gofish/redfish"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// redfishBackend drives a Redfish BMC through gofish's typed objects: the
// session, the ComputerSystem (power state, Boot, the Reset action and its
// allowed types, inline or in its @Redfish.ActionInfo, @Redfish.Settings,
// LastResetTime, BootProgress) and the VirtualMedia actions. The system and
// the reset types are read once when the connection opens and kept for the
// connection's life (one command); only what must be fresh (power state,
// boot override, reboot evidence, media) is read again.
type redfishBackend struct {
	b   inventory.BMC
	cfg Config
	log *slog.Logger

	tr  *boundTransport
	hc  *http.Client
	api *gofish.APIClient
	sys *redfish.ComputerSystem // read at open, cached
	// settingsURI is the system's @Redfish.Settings object ("" when none)
	// and applyTimes what it supports.
	settingsURI string
	applyTimes  []common.ApplyTime
	inf         Info
	q           quirks
	media       *redfish.VirtualMedia // the CD slot, found on first use
}

func newRedfish(b inventory.BMC, cfg Config, log *slog.Logger) *redfishBackend {
	return &redfishBackend{b: b, cfg: cfg, log: log}
}

func (r *redfishBackend) endpoint() string {
	scheme := r.b.Scheme
	if scheme == "" {
		scheme = "https"
		if strings.HasPrefix(r.b.URL, "redfish+http://") {
			scheme = "http"
		}
	}
	return scheme + "://" + net.JoinHostPort(r.b.Host, strconv.Itoa(int(r.b.Port)))
}

func (r *redfishBackend) open(ctx context.Context, pw inventory.Secret) error {
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
	if r.tr == nil {
		dialer := &net.Dialer{Timeout: r.cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
		r.tr = &boundTransport{base: &http.Transport{
			DialContext:         dialer.DialContext,
			TLSClientConfig:     tlsConf,
			TLSHandshakeTimeout: r.cfg.ConnectTimeout,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     30 * time.Second,
		}}
		r.hc = &http.Client{Transport: r.tr}
	}
	// The login must not be cut off half-way: a BMC that has created the
	// session but whose answer is dropped keeps it, and BMCs allow few. So
	// it runs to its end under the connect timeout alone, even after
	// Ctrl-C; the session it opened is then logged out by Close.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ConnectTimeout)
	defer cancel()
	unbind := r.tr.bind(lctx)
	// gofish makes every request with the context it connected with; the
	// bound transport gives each request the context of the call instead.
	api, err := gofish.ConnectContext(context.WithoutCancel(ctx), gofish.ClientConfig{
		Endpoint:         r.endpoint(),
		Username:         r.b.Username,
		Password:         pw.Reveal(),
		HTTPClient:       r.hc,
		ReuseConnections: true,
	})
	unbind()
	if err != nil {
		if lctx.Err() != nil {
			return lctx.Err()
		}
		return fmt.Errorf("log in: %w", describe(err))
	}
	r.api = api
	if err := ctx.Err(); err != nil {
		return err // Close logs the new session out
	}
	defer r.tr.bind(ctx)()
	if r.sys != nil {
		// Logged in again: the system is already known; its typed objects
		// must use the new session.
		r.sys.SetClient(api)
		if r.media != nil {
			r.media.SetClient(api)
		}
		return nil
	}
	if err := r.probe(ctx); err != nil {
		return fmt.Errorf("read system: %w", describe(err))
	}
	return nil
}

// probe reads the first ComputerSystem, and the reset types its Reset
// action's @Redfish.ActionInfo lists where the action lists none itself,
// and picks the quirks that apply.
func (r *redfishBackend) probe(ctx context.Context) error {
	systems, err := r.api.Service.Systems()
	if err != nil {
		return err
	}
	if len(systems) == 0 {
		return errors.New("the Systems collection is empty")
	}
	sys := systems[0]
	var raw struct {
		Settings common.Settings `json:"@Redfish.Settings"`
		Actions  struct {
			Reset struct {
				ActionInfo string `json:"@Redfish.ActionInfo"`
			} `json:"#ComputerSystem.Reset"`
		}
	}
	if err := json.Unmarshal(sys.RawData, &raw); err == nil {
		r.settingsURI = raw.Settings.SettingsObject.String()
		r.applyTimes = raw.Settings.SupportedApplyTimes
	}
	if uri := raw.Actions.Reset.ActionInfo; uri != "" && len(sys.SupportedResetTypes) == 0 {
		// gofish reads only the inline allowable values; bmcweb and others
		// list them only in the ActionInfo. Without them every type would
		// pass as allowed, and a PowerCycle the BMC lacks would be sent.
		types, err := r.resetActionInfo(uri)
		switch {
		case err != nil && ctx.Err() != nil:
			return err // interrupted or timed out: not a fact about the BMC
		case err != nil:
			r.log.Debug("bmc reset action info unreadable; its reset types are taken as not advertised", "resource", uri, "err", describe(err))
		case len(types) == 0:
			r.log.Debug("bmc reset action info lists no ResetType values; its reset types are taken as not advertised", "resource", uri)
		default:
			sys.SupportedResetTypes = types
		}
	}
	r.sys = sys
	var reset []string
	for _, t := range r.sys.SupportedResetTypes {
		reset = append(reset, string(t))
	}
	r.q = matchQuirks(r.cfg.Quirks, r.sys.Manufacturer, r.sys.Model, reset)
	r.inf = Info{Protocol: "redfish", Vendor: r.sys.Manufacturer, Model: r.sys.Model}
	return nil
}

// actionInfo is a Redfish ActionInfo resource (DMTF ActionInfo v1): the
// parameters an action takes and the values each allows. gofish has no type
// for it on systems.
type actionInfo struct {
	Parameters []struct {
		Name            string
		AllowableValues []string
	}
}

// resetActionInfo reads the ActionInfo at uri and returns the allowable
// values of its ResetType parameter (none when it has no such parameter).
func (r *redfishBackend) resetActionInfo(uri string) ([]redfish.ResetType, error) {
	resp, err := r.api.Get(uri)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var info actionInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&info); err != nil {
		return nil, fmt.Errorf("decode %s: %w", uri, err)
	}
	var types []redfish.ResetType
	for _, p := range info.Parameters {
		if p.Name != "ResetType" {
			continue
		}
		for _, v := range p.AllowableValues {
			types = append(types, redfish.ResetType(v))
		}
	}
	return types, nil
}

func (r *redfishBackend) close(ctx context.Context) error {
	if r.api == nil {
		return nil
	}
	defer r.tr.bind(ctx)()
	api := r.api
	r.api = nil
	defer r.hc.CloseIdleConnections()
	// gofish's Logout drops the DELETE's error; a session that was not
	// deleted must be reported, so delete it here.
	s, err := api.GetSession()
	if err != nil || s.ID == "" {
		return err
	}
	return api.Service.DeleteSession(s.ID)
}

func (r *redfishBackend) info() Info {
	i := r.inf
	i.Quirks = r.q.names()
	return i
}

// fresh reads the system again (power state, boot override, evidence).
func (r *redfishBackend) fresh(ctx context.Context) (*redfish.ComputerSystem, error) {
	defer r.tr.bind(ctx)()
	return redfish.GetComputerSystem(r.api, r.sys.ODataID)
}

func redfishPower(s redfish.PowerState) PowerState {
	switch strings.ToLower(string(s)) {
	case "on":
		return PowerOn
	case "off":
		return PowerOff
	case "poweringon":
		return PowerPoweringOn
	case "poweringoff":
		return PowerPoweringOff
	case "":
		return PowerStateUnknown
	}
	return PowerState(strings.ToLower(string(s)))
}

func (r *redfishBackend) snapshot(ctx context.Context) (snapshot, error) {
	sys, err := r.fresh(ctx)
	if err != nil {
		return snapshot{Power: PowerStateUnknown}, err
	}
	return snapshot{
		Power:         redfishPower(sys.PowerState),
		LastResetTime: sys.LastResetTime,
		ProgressState: string(sys.BootProgress.LastState),
		ProgressTime:  sys.BootProgress.LastStateTime,
	}, nil
}

func (r *redfishBackend) canCycle() bool { return !r.q.noPowerCycle }

// resetType maps an action to the Redfish ResetType the BMC allows.
func (r *redfishBackend) resetType(a PowerAction) (redfish.ResetType, error) {
	var want []redfish.ResetType
	switch a {
	case ActionOn:
		want = []redfish.ResetType{redfish.OnResetType, redfish.ForceOnResetType}
	case ActionOff:
		want = []redfish.ResetType{redfish.ForceOffResetType}
	case ActionSoftOff:
		want = []redfish.ResetType{redfish.GracefulShutdownResetType}
	case ActionReset:
		want = []redfish.ResetType{redfish.ForceRestartResetType, redfish.GracefulRestartResetType}
	case ActionCycle:
		want = []redfish.ResetType{redfish.PowerCycleResetType}
	}
	allowed := r.sys.SupportedResetTypes
	for _, t := range want {
		if len(allowed) == 0 || slices.Contains(allowed, t) {
			return t, nil
		}
	}
	return "", fmt.Errorf("the bmc allows no %s reset type (it allows %v)", want[0], allowed)
}

func (r *redfishBackend) send(ctx context.Context, a PowerAction) error {
	rt, err := r.resetType(a)
	if err != nil {
		return err
	}
	defer r.tr.bind(ctx)()
	return r.sys.Reset(rt)
}

var redfishTargets = map[BootDevice]redfish.BootSourceOverrideTarget{
	BootPXE: redfish.PxeBootSourceOverrideTarget, BootDisk: redfish.HddBootSourceOverrideTarget, BootCD: redfish.CdBootSourceOverrideTarget,
}

func (r *redfishBackend) setBoot(ctx context.Context, d BootDevice, o BootOptions) (bootSet, error) {
	target, ok := redfishTargets[d]
	if !ok {
		return bootSet{}, fmt.Errorf("boot device %q has no Redfish target", d)
	}
	enabled := redfish.OnceBootSourceOverrideEnabled
	if o.Persistent {
		enabled = redfish.ContinuousBootSourceOverrideEnabled
	}
	mode := redfish.UEFIBootSourceOverrideMode
	if o.Legacy {
		mode = redfish.LegacyBootSourceOverrideMode
	}
	defer r.tr.bind(ctx)()
	patch := func(withMode bool) error {
		if r.q.settingsOnly {
			attrs := redfish.SettingsAttributes{
				"BootSourceOverrideTarget":  string(target),
				"BootSourceOverrideEnabled": string(enabled),
			}
			if withMode {
				attrs["BootSourceOverrideMode"] = string(mode)
			}
			return r.sys.UpdateBootAttributesApplyAt(attrs, r.applyTime())
		}
		b := redfish.Boot{BootSourceOverrideTarget: target, BootSourceOverrideEnabled: enabled}
		if withMode {
			b.BootSourceOverrideMode = mode
		}
		return r.sys.SetBoot(b)
	}
	hinted := r.q.noBootMode && r.q.modeRefusal == ""
	err := patch(!r.q.noBootMode)
	if err != nil && !r.q.settingsOnly && r.settingsURI != "" && refusesDirectPatch(err) {
		// The BMC takes boot settings only through its settings object
		// (AMI MegaRAC and others answer 405 on the system itself).
		r.q.settingsOnly = true
		r.log.Debug("bmc refused the Boot PATCH on the system; using its settings object", "settings", r.settingsURI, "err", describe(err))
		err = patch(!r.q.noBootMode)
	}
	if err != nil && !r.q.noBootMode && refusesBootMode(err) {
		// The answer names the mode (older iDRAC and others): send the
		// rest without it; what mode the BMC holds is read back.
		r.q.noBootMode = true
		r.q.modeRefusal = "it refused BootSourceOverrideMode: " + describe(err).Error()
		r.log.Debug("bmc refused BootSourceOverrideMode; sending the override without it", "err", r.q.modeRefusal)
		err = patch(false)
	}
	if err != nil {
		return bootSet{}, err
	}
	set := bootSet{pending: r.q.settingsOnly, modeRefused: r.q.modeRefusal}
	if hinted {
		set.modeRefused = "BootSourceOverrideMode was not sent: the quirk table lists " + r.sys.Manufacturer + " " + r.sys.Model + " as refusing it"
	}
	return set, nil
}

// applyTime is when settings-object changes apply: OnReset where the BMC
// lists it, otherwise the BMC's default.
func (r *redfishBackend) applyTime() common.ApplyTime {
	if slices.Contains(r.applyTimes, common.OnResetApplyTime) {
		return common.OnResetApplyTime
	}
	return ""
}

// refusesDirectPatch is a BMC's answer that the system's Boot cannot be
// PATCHed there (405, or 400/403 pointing at the settings object).
func refusesDirectPatch(err error) bool {
	var ge *common.Error
	if !errors.As(err, &ge) {
		return false
	}
	switch ge.HTTPReturnedStatusCode {
	case http.StatusMethodNotAllowed:
		return true
	case http.StatusBadRequest, http.StatusForbidden:
		t := strings.ToLower(errorText(ge))
		return strings.Contains(t, "settings") || strings.Contains(t, "/sd")
	}
	return false
}

// refusesBootMode is a 400 whose message names BootSourceOverrideMode.
func refusesBootMode(err error) bool {
	var ge *common.Error
	if !errors.As(err, &ge) || ge.HTTPReturnedStatusCode != http.StatusBadRequest {
		return false
	}
	if strings.Contains(errorText(ge), "BootSourceOverrideMode") {
		return true
	}
	for _, e := range ge.ExtendedInfos {
		if slices.Contains(e.MessageArgs, "BootSourceOverrideMode") {
			return true
		}
	}
	return false
}

func (r *redfishBackend) bootOverride(ctx context.Context, pending bool) (BootOverride, error) {
	uri := r.sys.ODataID
	if pending && r.settingsURI != "" {
		uri = r.settingsURI
	}
	defer r.tr.bind(ctx)()
	sys, err := redfish.GetComputerSystem(r.api, uri)
	if err != nil {
		return BootOverride{}, err
	}
	o := BootOverride{FlagsRead: true, Pending: pending && r.settingsURI != ""}
	b := sys.Boot
	if b.BootSourceOverrideEnabled != redfish.DisabledBootSourceOverrideEnabled && b.BootSourceOverrideEnabled != "" {
		switch b.BootSourceOverrideTarget {
		case "", redfish.NoneBootSourceOverrideTarget:
		case redfish.PxeBootSourceOverrideTarget:
			o.Device = BootPXE
		case redfish.HddBootSourceOverrideTarget:
			o.Device = BootDisk
		case redfish.CdBootSourceOverrideTarget:
			o.Device = BootCD
		default:
			o.Device = BootDevice(strings.ToLower(string(b.BootSourceOverrideTarget)))
		}
	}
	o.Persistent = b.BootSourceOverrideEnabled == redfish.ContinuousBootSourceOverrideEnabled
	switch b.BootSourceOverrideMode {
	case redfish.UEFIBootSourceOverrideMode:
		o.Mode = ModeUEFI
	case redfish.LegacyBootSourceOverrideMode:
		o.Mode = ModeLegacy
	}
	return o, nil
}

// cdSlot finds the virtual CD: on the system (iDRAC since 6.00.02), else on
// the managers; the first slot whose media types include CD or DVD.
func (r *redfishBackend) cdSlot(ctx context.Context) (*redfish.VirtualMedia, error) {
	defer r.tr.bind(ctx)()
	isCD := func(v *redfish.VirtualMedia) bool {
		return slices.Contains(v.MediaTypes, redfish.CDMediaType) || slices.Contains(v.MediaTypes, redfish.DVDMediaType)
	}
	// A collection the BMC failed to answer is not one without a CD: when
	// no CD is found, the first such failure is the cause.
	var firstErr error
	if slots, err := r.sys.VirtualMedia(); err == nil {
		for _, v := range slots {
			if isCD(v) {
				return v, nil
			}
		}
	} else {
		firstErr = err
	}
	managers, err := r.sys.ManagedBy()
	if err != nil {
		return nil, err
	}
	for _, m := range managers {
		slots, err := m.VirtualMedia()
		if err != nil {
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		for _, v := range slots {
			if isCD(v) {
				return v, nil
			}
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return nil, errors.New("the bmc offers no virtual CD (no VirtualMedia slot with media type CD or DVD on the system or its managers)")
}

func (r *redfishBackend) readMedia(ctx context.Context) (Media, error) {
	if r.media == nil {
		v, err := r.cdSlot(ctx)
		if err != nil {
			return Media{}, err
		}
		r.media = v
	}
	defer r.tr.bind(ctx)()
	v, err := redfish.GetVirtualMedia(r.api, r.media.ODataID)
	if err != nil {
		return Media{}, err
	}
	r.media = v
	return Media{Image: v.Image, Inserted: v.Inserted}, nil
}

func (r *redfishBackend) insertMedia(ctx context.Context, image string) error {
	if _, err := r.readMedia(ctx); err != nil {
		return err
	}
	defer r.tr.bind(ctx)()
	return r.media.InsertMedia(image, true, true)
}

func (r *redfishBackend) ejectMedia(ctx context.Context) error {
	if _, err := r.readMedia(ctx); err != nil {
		return err
	}
	defer r.tr.bind(ctx)()
	return r.media.EjectMedia()
}

// boundTransport gives gofish's requests the context of the BMC call in
// progress. gofish makes every request with the context it was connected
// with, so without this a hung BMC or Ctrl-C could not stop a call; this is
// why a context is kept here, for the length of one call only.
type boundTransport struct {
	base http.RoundTripper

	mu  sync.Mutex
	ctx context.Context
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

func (t *boundTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.mu.Lock()
	ctx := t.ctx
	t.mu.Unlock()
	if ctx == nil {
		ctx = req.Context()
	}
	r := req.Clone(ctx)
	// gofish marks every request Connection: close unless it built the
	// HTTP client itself: each request would open (and TLS-handshake) a
	// connection of its own, thousands for a rack. Keep them alive.
	r.Close = false
	return t.base.RoundTrip(r)
}
