package redfishsim

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
)

// Power states as Redfish spells them.
const (
	PowerOn  = "On"
	PowerOff = "Off"
)

// DefaultResetTypes returns the reset types a BMC allows when
// BMCConfig.ResetTypes is empty: the full set, PowerCycle included.
func DefaultResetTypes() []string {
	return []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "ForceOn", "PowerCycle", "Nmi"}
}

// What a restart request does on a powered-off system (BMCConfig.ResetWhenOff).
const (
	// ResetWhenOffRefuse answers 409 and changes nothing (the default).
	ResetWhenOffRefuse = "refuse"
	// ResetWhenOffPowerOn powers the system on.
	ResetWhenOffPowerOn = "power-on"
	// ResetWhenOffIgnore answers 204 and changes nothing.
	ResetWhenOffIgnore = "ignore"
)

// Where the virtual CD lives (BMCConfig.VirtualMedia).
const (
	// VirtualMediaOnManager: /redfish/v1/Managers/BMC/VirtualMedia/CD1 (the default).
	VirtualMediaOnManager = "manager"
	// VirtualMediaOnSystem: /redfish/v1/Systems/NAME/VirtualMedia/CD1, as
	// iDRAC since firmware 6.00.02 (dell/iDRAC-Redfish-Scripting#265).
	VirtualMediaOnSystem = "system"
	// VirtualMediaNone: no virtual media at all.
	VirtualMediaNone = "none"
)

// BMCConfig describes one simulated BMC. The behaviour fields model what
// real BMCs do; Profiles returns named combinations of them.
type BMCConfig struct {
	// Name is the ComputerSystem Id and the name the OnPower hook receives
	// (default "System.Embedded.1").
	Name string
	// Addr is the listen address (default 127.0.0.1:0, a free loopback port).
	Addr string
	// TLS serves HTTPS with the Sim's self-signed certificate; otherwise HTTP.
	TLS bool
	// Username and Password are the only credentials accepted (default
	// admin / password).
	Username string
	Password string
	// Manufacturer, Model and SerialNumber appear on the ComputerSystem,
	// Manager and Chassis (defaults "Slipway", "Simulated Server", "SIM0001").
	Manufacturer string
	Model        string
	SerialNumber string
	// PoweredOn is the initial power state (default off).
	PoweredOn bool
	// ResetTypes are the ResetType allowable values advertised and accepted
	// (default DefaultResetTypes()). Leaving PowerCycle out models iDRAC and
	// iLO 5; anything not listed is refused with 400.
	ResetTypes []string
	// ResetActionInfo advertises ResetTypes only through an ActionInfo
	// resource, as OpenBMC's bmcweb does: the system's Reset action carries
	// its target and "@Redfish.ActionInfo": ".../ResetActionInfo" and no
	// ResetType@Redfish.AllowableValues; GET of that resource answers
	// Parameters [{Name: ResetType, Required, DataType String,
	// AllowableValues: ResetTypes}]. A ResetType not listed is refused with
	// 400 ActionParameterUnknown, bmcweb's answer.
	ResetActionInfo bool
	// TransitionDelay is how long a power change takes: the state reads
	// PoweringOn or PoweringOff until it has passed (default 0, instant).
	TransitionDelay time.Duration

	// BootApplyDelay makes a Boot PATCH asynchronous: it answers 200 at
	// once, the system keeps reading the old override until the delay has
	// passed, and a boot that starts before then uses the old one (iLO 5).
	BootApplyDelay time.Duration
	// RejectBootMode answers 400 to a Boot PATCH that carries
	// BootSourceOverrideMode (older iDRAC and others); the mode then always
	// reads back as FirmwareMode.
	RejectBootMode bool
	// ApplyDespiteReject applies the target and enabled flag of a PATCH
	// refused by RejectBootMode, while still answering 400 (iDRAC 8).
	ApplyDespiteReject bool
	// FirmwareMode is the boot mode the BIOS is set to, UEFI (default) or
	// Legacy: the mode the override reads back before anyone sets it, and
	// always on a BMC with RejectBootMode.
	FirmwareMode string
	// SettingsObject makes boot settings apply only through the
	// @Redfish.Settings object (.../SD): a Boot PATCH of the system answers
	// 405, the settings object takes it (with If-Match of its ETag) and the
	// system applies it at its next power-on or reset (AMI MegaRAC).
	SettingsObject bool
	// GenericMessages puts "A general error has occurred. See ExtendedInfo
	// for more information." in every error's message and the useful text
	// only in @Message.ExtendedInfo.
	GenericMessages bool
	// IgnoreResets answers 204 to ForceRestart, GracefulRestart and
	// PowerCycle and does nothing (a lying or lazy BMC).
	IgnoreResets bool
	// ResetWhenOff is what ForceRestart or GracefulRestart does on a system
	// that is off: ResetWhenOffRefuse (default), ResetWhenOffPowerOn or
	// ResetWhenOffIgnore.
	ResetWhenOff string
	// LastResetTime and BootProgress make the system report the time it
	// last came out of reset and its boot progress (reboot evidence).
	LastResetTime bool
	BootProgress  bool
	// ChassisLastResetTime makes LastResetTime the time of the chassis's
	// last power change, on or off, in whole seconds: bmcweb reports
	// chassis0's LastStateChangeTime there, so a warm restart (ForceRestart,
	// GracefulRestart), which leaves the chassis powered, does not move it
	// and only BootProgress shows it.
	ChassisLastResetTime bool
	// VirtualMedia is where the virtual CD lives: VirtualMediaOnManager
	// (default), VirtualMediaOnSystem or VirtualMediaNone.
	VirtualMedia string
	// MediaClient fetches an inserted image's URL, as a BMC does when it
	// connects to the image server (default: a client with a 10 s timeout).
	MediaClient *http.Client

	// Faults are the faults injected from the start; see SetFaults.
	Faults Faults
	// OnPower is called, with the request's context, whenever the simulated
	// server's power changes. An error fails the Reset request with 500.
	OnPower func(ctx context.Context, ev PowerEvent) error
}

// PowerEvent is one change of the simulated server's power.
type PowerEvent struct {
	// BMC is the BMC's Name.
	BMC string
	// Action is "on", "off" or "reset" (a warm restart of a running server).
	Action string
	// Boot is the boot override in effect for the boot this event starts
	// (on and reset); a one-time override is cleared after this event.
	Boot Boot
	// Media is the image URL in the virtual CD at this boot ("" when none).
	Media string
}

// Boot is a ComputerSystem's boot override.
type Boot struct {
	// Target is BootSourceOverrideTarget: None, Pxe, Hdd, Cd, ...
	Target string
	// Enabled is BootSourceOverrideEnabled: Disabled, Once or Continuous.
	Enabled string
	// Mode is BootSourceOverrideMode: UEFI or Legacy.
	Mode string
}

// Booted is one boot of the simulated host: what it really started from.
type Booted struct {
	// Device is Pxe, Cd, Usb, BiosSetup, or Hdd (the default boot order).
	Device string
	// Mode is the firmware mode the host booted in: UEFI or Legacy.
	Mode string
	// Media is the virtual CD's image URL when Device is Cd ("" when the
	// drive was empty, and the boot found nothing).
	Media string
}

// Media is the virtual CD's state.
type Media struct {
	// Image is the inserted image's URL ("" when empty).
	Image string
	// Inserted is true while an image is inserted.
	Inserted bool
	// Size is how many bytes the BMC read from the image URL at insert.
	Size int64
}

// Faults are injected misbehaviours of one BMC.
type Faults struct {
	// Latency is added to every request before it is handled.
	Latency time.Duration
	// Hang makes every request wait without an answer until the client
	// gives up or the BMC is closed.
	Hang bool
	// ErrorStatus, when non-zero, is the HTTP status (such as 500) every
	// request under /redfish/v1/Systems is answered with.
	ErrorStatus int
	// RejectCredentials refuses every login and basic-auth request with 401.
	RejectCredentials bool
	// MaxSessions refuses a new session with 503 once that many are open
	// (iDRAC allows 8); 0 means no limit.
	MaxSessions int
	// IgnorePower acknowledges every Reset request (204) without changing
	// power.
	IgnorePower bool
	// MalformedJSON answers the ComputerSystem GET with truncated JSON.
	MalformedJSON bool
	// ActionInfoStatus, when non-zero, is the HTTP status (such as 500) the
	// ResetActionInfo GET is answered with (BMCConfig.ResetActionInfo), as
	// a bmcweb whose D-Bus call for AllowedHostTransitions fails answers;
	// the system itself still reads.
	ActionInfoStatus int
	// MediaActionStatus, when non-zero, is the HTTP status (such as 500)
	// InsertMedia and EjectMedia are answered with, changing nothing, as
	// BMCs whose virtual media service is busy or detached answer; reading
	// the virtual CD still works.
	MediaActionStatus int
}

// Stats counts what a BMC was asked to do.
type Stats struct {
	// Requests is every HTTP request received.
	Requests int
	// Logins and Logouts count session creations and deletions;
	// RefusedLogins counts logins refused for the session limit.
	Logins        int
	Logouts       int
	RefusedLogins int
	// Resets are the ResetType values of accepted Reset actions, in order.
	Resets []string
	// BootPatches counts accepted Boot PATCHes of the system or its
	// settings object; RejectedBootPatches those refused (400 for the mode,
	// 405 on a system that takes settings only through .../SD).
	BootPatches         int
	RejectedBootPatches int
	// SettingsPatches counts accepted PATCHes of the settings object.
	SettingsPatches int
	// Inserts and Ejects count accepted InsertMedia and EjectMedia actions.
	Inserts int
	Ejects  int
}

// BMC is one running simulated BMC.
type BMC struct {
	cfg       BMCConfig
	name      string
	user      string
	pass      string
	log       *slog.Logger
	addr      netip.AddrPort
	srv       *http.Server
	done      chan struct{}
	closing   chan struct{}
	closeOnce sync.Once

	mu          sync.Mutex
	faults      Faults
	on          bool
	changedAt   time.Time
	boot        Boot              // the override the system holds (and reads back)
	pending     *pendingBoot      // an accepted PATCH not applied yet (BootApplyDelay)
	settings    *Boot             // the settings object's pending Boot (SettingsObject)
	etag        int               // the settings object's ETag generation
	lastReset   time.Time         // when the system last came out of reset (ChassisLastResetTime: last power change)
	progress    string            // BootProgress.LastState
	progressAt  time.Time         // BootProgress.LastStateTime
	media       Media             // the virtual CD
	booted      []Booted          // every boot of the host, in order
	sessions    map[string]string // token -> session id
	nextSession int
	stats       Stats
}

type pendingBoot struct {
	boot Boot
	at   time.Time
}

func newBMC(cfg BMCConfig, log *slog.Logger) (*BMC, error) {
	b := &BMC{
		cfg:      cfg,
		name:     def(cfg.Name, "System.Embedded.1"),
		user:     def(cfg.Username, "admin"),
		pass:     def(cfg.Password, "password"),
		faults:   cfg.Faults,
		on:       cfg.PoweredOn,
		sessions: map[string]string{},
		closing:  make(chan struct{}),
		progress: "None",
	}
	b.cfg.Manufacturer = def(cfg.Manufacturer, "Slipway")
	b.cfg.Model = def(cfg.Model, "Simulated Server")
	b.cfg.SerialNumber = def(cfg.SerialNumber, "SIM0001")
	b.cfg.FirmwareMode = def(cfg.FirmwareMode, "UEFI")
	b.cfg.ResetWhenOff = def(cfg.ResetWhenOff, ResetWhenOffRefuse)
	b.cfg.VirtualMedia = def(cfg.VirtualMedia, VirtualMediaOnManager)
	if len(b.cfg.ResetTypes) == 0 {
		b.cfg.ResetTypes = DefaultResetTypes()
	}
	if b.cfg.MediaClient == nil {
		b.cfg.MediaClient = &http.Client{Timeout: 10 * time.Second}
	}
	if strings.ContainsAny(b.name, "/?#") {
		return nil, fmt.Errorf("start simulated bmc %q: name must not contain / ? or #", b.name)
	}
	switch b.cfg.FirmwareMode {
	case "UEFI", "Legacy":
	default:
		return nil, fmt.Errorf("start simulated bmc %s: FirmwareMode %q: want UEFI or Legacy", b.name, b.cfg.FirmwareMode)
	}
	switch b.cfg.ResetWhenOff {
	case ResetWhenOffRefuse, ResetWhenOffPowerOn, ResetWhenOffIgnore:
	default:
		return nil, fmt.Errorf("start simulated bmc %s: ResetWhenOff %q: want refuse, power-on or ignore", b.name, b.cfg.ResetWhenOff)
	}
	switch b.cfg.VirtualMedia {
	case VirtualMediaOnManager, VirtualMediaOnSystem, VirtualMediaNone:
	default:
		return nil, fmt.Errorf("start simulated bmc %s: VirtualMedia %q: want manager, system or none", b.name, b.cfg.VirtualMedia)
	}
	b.boot = Boot{Target: "None", Enabled: "Disabled", Mode: b.cfg.FirmwareMode}
	// The host ran before the simulation began: an hour ago it last came
	// out of reset, and it is running or was switched off since.
	b.lastReset = time.Now().Add(-time.Hour)
	b.progress, b.progressAt = "OSRunning", b.lastReset
	if !b.on {
		b.progress, b.progressAt = "None", b.lastReset.Add(time.Minute)
		if b.cfg.ChassisLastResetTime {
			b.lastReset = b.progressAt
		}
	}
	b.log = log.With("bmc", b.name)
	return b, nil
}

func def(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// Name returns the BMC's system name.
func (b *BMC) Name() string { return b.name }

// Addr returns the address the BMC listens on.
func (b *BMC) Addr() netip.AddrPort { return b.addr }

// URL returns the BMC's URL in inventory form: redfish://127.0.0.1:PORT for
// HTTPS, redfish+http://127.0.0.1:PORT for plain HTTP.
func (b *BMC) URL() string {
	if b.cfg.TLS {
		return "redfish://" + b.addr.String()
	}
	return "redfish+http://" + b.addr.String()
}

// SetFaults replaces the BMC's injected faults; it affects requests that
// arrive afterwards.
func (b *BMC) SetFaults(f Faults) {
	b.mu.Lock()
	b.faults = f
	b.mu.Unlock()
}

// PowerState returns On or Off (a transition in progress reports its target).
func (b *BMC) PowerState() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.on {
		return PowerOn
	}
	return PowerOff
}

// SetPowerState sets the power state directly, without calling OnPower, as if
// someone had pressed the power button (the reboot evidence moves as it
// would).
func (b *BMC) SetPowerState(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if on == b.on {
		return
	}
	now := time.Now()
	b.on = on
	b.changedAt = time.Time{}
	b.progress, b.progressAt = "None", now
	if on || b.cfg.ChassisLastResetTime {
		b.lastReset = now
	}
	if on {
		b.progress = "OSRunning"
	}
}

// Boot returns the boot override the system holds now: an asynchronous
// PATCH shows once its delay has passed, and settings pending in the
// settings object do not show until the next reset (see PendingSettings).
func (b *BMC) Boot() Boot {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.settleLocked(time.Now())
	return b.boot
}

// PendingSettings returns the Boot waiting in the settings object for the
// next reset, and false when nothing is pending.
func (b *BMC) PendingSettings() (Boot, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.settings == nil {
		return Boot{}, false
	}
	return *b.settings, true
}

// Booted returns every boot of the simulated host so far, in order: what it
// really started from.
func (b *BMC) Booted() []Booted {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.booted)
}

// Media returns the virtual CD's state.
func (b *BMC) Media() Media {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.media
}

// Sessions returns how many sessions are open.
func (b *BMC) Sessions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

// ExpireSessions ends every open session, as a BMC does when its session
// timeout passes or it restarts; clients must log in again.
func (b *BMC) ExpireSessions() {
	b.mu.Lock()
	clear(b.sessions)
	b.mu.Unlock()
}

// Stats returns what the BMC was asked to do so far.
func (b *BMC) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.stats
	s.Resets = slices.Clone(s.Resets)
	return s
}

// Close stops the BMC: it closes the listener and every connection, and
// releases requests held by Hang.
func (b *BMC) Close() error {
	var err error
	b.closeOnce.Do(func() {
		close(b.closing)
		if b.srv != nil {
			err = b.srv.Close()
			<-b.done
		}
	})
	if err != nil {
		return fmt.Errorf("stop simulated bmc %s: %w", b.name, err)
	}
	return nil
}

// Resource paths of a BMC.
func (b *BMC) sysPath() string      { return "/redfish/v1/Systems/" + b.name }
func (b *BMC) settingsPath() string { return b.sysPath() + "/SD" }

// actionInfoPath is the Reset action's ActionInfo, where bmcweb has it.
func (b *BMC) actionInfoPath() string { return b.sysPath() + "/ResetActionInfo" }
func (b *BMC) mediaPath() string {
	switch b.cfg.VirtualMedia {
	case VirtualMediaOnSystem:
		return b.sysPath() + "/VirtualMedia"
	case VirtualMediaOnManager:
		return "/redfish/v1/Managers/BMC/VirtualMedia"
	}
	return ""
}

// ServeHTTP implements http.Handler.
func (b *BMC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer drain(r.Body)
	b.mu.Lock()
	b.stats.Requests++
	f := b.faults
	b.mu.Unlock()
	b.log.Debug("redfish request", "method", r.Method, "path", r.URL.Path)

	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-b.closing:
			t.Stop()
			return
		}
	}
	if f.Hang {
		select {
		case <-r.Context().Done():
		case <-b.closing:
		}
		return
	}

	path := strings.TrimSuffix(r.URL.Path, "/")
	if path == "/redfish" {
		writeJSON(w, http.StatusOK, map[string]any{"v1": "/redfish/v1/"})
		return
	}
	if path == "/redfish/v1" {
		b.serviceRoot(w, r)
		return
	}
	if path == "/redfish/v1/SessionService/Sessions" && r.Method == http.MethodPost {
		b.login(w, r, f)
		return
	}
	if !b.authorized(r, f) {
		b.writeError(w, http.StatusUnauthorized, "Base.1.8.NoValidSession", "There is no valid session established with the implementation.", "")
		return
	}
	sys := b.sysPath()
	if f.ErrorStatus != 0 && strings.HasPrefix(path, "/redfish/v1/Systems") {
		b.writeError(w, f.ErrorStatus, "Base.1.8.InternalError", "The request failed due to an internal service error.", "")
		return
	}
	media := b.mediaPath()
	switch {
	case path == "/redfish/v1/SessionService" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{
			"@odata.id": "/redfish/v1/SessionService", "@odata.type": "#SessionService.v1_1_8.SessionService",
			"Id": "SessionService", "Name": "Session Service", "ServiceEnabled": true, "SessionTimeout": 1800,
			"Sessions": link("/redfish/v1/SessionService/Sessions"),
		})
	case path == "/redfish/v1/SessionService/Sessions" && r.Method == http.MethodGet:
		b.mu.Lock()
		var members []any
		for _, id := range b.sessions {
			members = append(members, link("/redfish/v1/SessionService/Sessions/"+id))
		}
		b.mu.Unlock()
		writeCollection(w, "/redfish/v1/SessionService/Sessions", "#SessionCollection.SessionCollection", members)
	case strings.HasPrefix(path, "/redfish/v1/SessionService/Sessions/") && r.Method == http.MethodDelete:
		b.logout(w, strings.TrimPrefix(path, "/redfish/v1/SessionService/Sessions/"))
	case path == "/redfish/v1/Systems" && r.Method == http.MethodGet:
		writeCollection(w, "/redfish/v1/Systems", "#ComputerSystemCollection.ComputerSystemCollection", []any{link(sys)})
	case path == sys && r.Method == http.MethodGet:
		if f.MalformedJSON {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"@odata.id": "` + sys + `", "PowerState": "On", "Boot": {`))
			return
		}
		writeJSON(w, http.StatusOK, b.system(sys))
	case path == sys && r.Method == http.MethodPatch:
		b.patchSystem(w, r)
	case b.cfg.SettingsObject && path == b.settingsPath() && r.Method == http.MethodGet:
		b.getSettings(w)
	case b.cfg.SettingsObject && path == b.settingsPath() && r.Method == http.MethodPatch:
		b.patchSettings(w, r)
	case path == sys+"/Actions/ComputerSystem.Reset" && r.Method == http.MethodPost:
		b.reset(w, r, f)
	case b.cfg.ResetActionInfo && path == b.actionInfoPath() && r.Method == http.MethodGet:
		if f.ActionInfoStatus != 0 {
			b.writeError(w, f.ActionInfoStatus, "Base.1.8.InternalError", "The request failed due to an internal service error.", "")
			return
		}
		b.resetActionInfo(w)
	case media != "" && path == media && r.Method == http.MethodGet:
		writeCollection(w, media, "#VirtualMediaCollection.VirtualMediaCollection", []any{link(media + "/CD1")})
	case media != "" && path == media+"/CD1" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, b.mediaResource(media+"/CD1"))
	case media != "" && strings.HasPrefix(path, media+"/CD1/Actions/") && r.Method == http.MethodPost && f.MediaActionStatus != 0:
		b.writeError(w, f.MediaActionStatus, "Base.1.8.InternalError", "Virtual Media is detached or Virtual Media devices are already in use.", "Retry the operation.")
	case media != "" && path == media+"/CD1/Actions/VirtualMedia.InsertMedia" && r.Method == http.MethodPost:
		b.insertMedia(w, r)
	case media != "" && path == media+"/CD1/Actions/VirtualMedia.EjectMedia" && r.Method == http.MethodPost:
		b.ejectMedia(w)
	case path == "/redfish/v1/Managers" && r.Method == http.MethodGet:
		writeCollection(w, "/redfish/v1/Managers", "#ManagerCollection.ManagerCollection", []any{link("/redfish/v1/Managers/BMC")})
	case path == "/redfish/v1/Managers/BMC" && r.Method == http.MethodGet:
		m := map[string]any{
			"@odata.id": "/redfish/v1/Managers/BMC", "@odata.type": "#Manager.v1_10_0.Manager", "Id": "BMC", "Name": "Manager",
			"ManagerType": "BMC", "Manufacturer": b.cfg.Manufacturer, "Model": b.cfg.Model + " BMC", "SerialNumber": b.cfg.SerialNumber,
			"FirmwareVersion": "1.0.0-sim", "Status": map[string]any{"State": "Enabled", "Health": "OK"},
			"Links": map[string]any{"ManagerForServers": []any{link(sys)}},
		}
		if b.cfg.VirtualMedia == VirtualMediaOnManager {
			m["VirtualMedia"] = link(media)
		}
		writeJSON(w, http.StatusOK, m)
	case path == "/redfish/v1/Chassis" && r.Method == http.MethodGet:
		writeCollection(w, "/redfish/v1/Chassis", "#ChassisCollection.ChassisCollection", []any{link("/redfish/v1/Chassis/1U")})
	case path == "/redfish/v1/Chassis/1U" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{
			"@odata.id": "/redfish/v1/Chassis/1U", "@odata.type": "#Chassis.v1_14_0.Chassis", "Id": "1U", "Name": "Chassis",
			"ChassisType": "RackMount", "Manufacturer": b.cfg.Manufacturer, "Model": b.cfg.Model, "SerialNumber": b.cfg.SerialNumber,
			"PowerState": b.powerState(), "Status": map[string]any{"State": "Enabled", "Health": "OK"},
			"Links": map[string]any{"ComputerSystems": []any{link(sys)}, "ManagedBy": []any{link("/redfish/v1/Managers/BMC")}},
		})
	default:
		if r.Method == http.MethodGet {
			b.writeError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "The resource at the URI "+r.URL.Path+" was not found.", "")
			return
		}
		b.writeError(w, http.StatusMethodNotAllowed, "Base.1.8.OperationNotAllowed", "The operation is not allowed on "+r.URL.Path+".", "")
	}
}

func (b *BMC) serviceRoot(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id": "/redfish/v1/", "@odata.type": "#ServiceRoot.v1_11_0.ServiceRoot",
		"Id": "RootService", "Name": "Root Service", "RedfishVersion": "1.11.0",
		"UUID":           "92384634-2938-2342-8820-489239905423",
		"Product":        b.cfg.Model,
		"Vendor":         b.cfg.Manufacturer,
		"Systems":        link("/redfish/v1/Systems"),
		"Managers":       link("/redfish/v1/Managers"),
		"Chassis":        link("/redfish/v1/Chassis"),
		"SessionService": link("/redfish/v1/SessionService"),
		"Links":          map[string]any{"Sessions": link("/redfish/v1/SessionService/Sessions")},
	})
}

func (b *BMC) login(w http.ResponseWriter, r *http.Request, f Faults) {
	var req struct{ UserName, Password string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		b.writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "The request body submitted was malformed JSON.", "")
		return
	}
	if f.RejectCredentials || !b.credentialsMatch(req.UserName, req.Password) {
		b.writeError(w, http.StatusUnauthorized, "Base.1.8.InsufficientPrivilege", "Invalid username or password.", "")
		return
	}
	b.mu.Lock()
	if f.MaxSessions > 0 && len(b.sessions) >= f.MaxSessions {
		b.stats.RefusedLogins++
		b.mu.Unlock()
		id := "Base.1.8.SessionLimitExceeded"
		if b.cfg.GenericMessages {
			id = "IDRAC.2.8.RAC0218"
		}
		b.writeError(w, http.StatusServiceUnavailable, id, "The maximum number of user sessions is reached.", "Close one or more sessions and retry the operation.")
		return
	}
	b.nextSession++
	id := fmt.Sprintf("%d", b.nextSession)
	tok := newToken()
	b.sessions[tok] = id
	b.stats.Logins++
	b.mu.Unlock()
	loc := "/redfish/v1/SessionService/Sessions/" + id
	w.Header().Set("X-Auth-Token", tok)
	w.Header().Set("Location", loc)
	writeJSON(w, http.StatusCreated, map[string]any{
		"@odata.id": loc, "@odata.type": "#Session.v1_3_0.Session", "Id": id, "Name": "User Session", "UserName": req.UserName,
	})
}

func (b *BMC) logout(w http.ResponseWriter, id string) {
	b.mu.Lock()
	found := false
	for tok, sid := range b.sessions {
		if sid == id {
			delete(b.sessions, tok)
			found = true
		}
	}
	if found {
		b.stats.Logouts++
	}
	b.mu.Unlock()
	if !found {
		b.writeError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "The session "+id+" was not found.", "")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (b *BMC) credentialsMatch(user, pass string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(b.user))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(b.pass))
	return u&p == 1
}

func (b *BMC) authorized(r *http.Request, f Faults) bool {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		b.mu.Lock()
		_, ok := b.sessions[tok]
		b.mu.Unlock()
		return ok
	}
	if user, pass, ok := r.BasicAuth(); ok {
		return !f.RejectCredentials && b.credentialsMatch(user, pass)
	}
	return false
}

// powerState returns the Redfish PowerState, with transitions; b.mu is not held.
func (b *BMC) powerState() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.powerStateLocked()
}

func (b *BMC) powerStateLocked() string {
	inTransition := b.cfg.TransitionDelay > 0 && !b.changedAt.IsZero() && time.Since(b.changedAt) < b.cfg.TransitionDelay
	switch {
	case b.on && inTransition:
		return "PoweringOn"
	case !b.on && inTransition:
		return "PoweringOff"
	case b.on:
		return PowerOn
	}
	return PowerOff
}

// settleLocked applies an asynchronous PATCH whose delay has passed.
func (b *BMC) settleLocked(now time.Time) {
	if b.pending != nil && !now.Before(b.pending.at) {
		b.boot = b.pending.boot
		b.pending = nil
	}
}

func bootJSON(bt Boot) map[string]any {
	return map[string]any{
		"BootSourceOverrideTarget":                          bt.Target,
		"BootSourceOverrideEnabled":                         bt.Enabled,
		"BootSourceOverrideMode":                            bt.Mode,
		"BootSourceOverrideTarget@Redfish.AllowableValues":  bootTargets,
		"BootSourceOverrideEnabled@Redfish.AllowableValues": []string{"Disabled", "Once", "Continuous"},
		"BootSourceOverrideMode@Redfish.AllowableValues":    []string{"UEFI", "Legacy"},
	}
}

var bootTargets = []string{"None", "Pxe", "Hdd", "Cd", "Usb", "BiosSetup"}

// timeJSON formats a Redfish date-time with milliseconds, so that two
// resets within one second still differ.
func timeJSON(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

func (b *BMC) system(sys string) map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.settleLocked(time.Now())
	resetAction := map[string]any{"target": sys + "/Actions/ComputerSystem.Reset"}
	if b.cfg.ResetActionInfo {
		resetAction["@Redfish.ActionInfo"] = b.actionInfoPath()
	} else {
		resetAction["ResetType@Redfish.AllowableValues"] = b.cfg.ResetTypes
	}
	m := map[string]any{
		"@odata.id": sys, "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem",
		"Id": b.name, "Name": "System", "SystemType": "Physical",
		"Manufacturer": b.cfg.Manufacturer, "Model": b.cfg.Model, "SerialNumber": b.cfg.SerialNumber,
		"PowerState": b.powerStateLocked(),
		"Status":     map[string]any{"State": "Enabled", "Health": "OK"},
		"Boot":       bootJSON(b.boot),
		"Actions": map[string]any{
			"#ComputerSystem.Reset": resetAction,
		},
		"Links": map[string]any{
			"Chassis":   []any{link("/redfish/v1/Chassis/1U")},
			"ManagedBy": []any{link("/redfish/v1/Managers/BMC")},
		},
	}
	switch {
	case !b.cfg.LastResetTime || b.lastReset.IsZero():
	case b.cfg.ChassisLastResetTime:
		// bmcweb: seconds since the epoch, written with +00:00.
		m["LastResetTime"] = b.lastReset.UTC().Format("2006-01-02T15:04:05-07:00")
	default:
		m["LastResetTime"] = timeJSON(b.lastReset)
	}
	if b.cfg.BootProgress {
		bp := map[string]any{"LastState": b.progress}
		if !b.progressAt.IsZero() {
			bp["LastStateTime"] = timeJSON(b.progressAt)
		}
		m["BootProgress"] = bp
	}
	if b.cfg.SettingsObject {
		m["@Redfish.Settings"] = map[string]any{
			"@odata.type":         "#Settings.v1_3_5.Settings",
			"SettingsObject":      link(b.settingsPath()),
			"SupportedApplyTimes": []string{"OnReset"},
		}
	}
	if b.cfg.VirtualMedia == VirtualMediaOnSystem {
		m["VirtualMedia"] = link(b.mediaPath())
	}
	return m
}

// resetActionInfo answers the Reset action's ActionInfo (DMTF ActionInfo
// v1, as bmcweb writes it).
func (b *BMC) resetActionInfo(w http.ResponseWriter) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id": b.actionInfoPath(), "@odata.type": "#ActionInfo.v1_1_2.ActionInfo",
		"Id": "ResetActionInfo", "Name": "Reset Action Info",
		"Parameters": []any{map[string]any{
			"Name": "ResetType", "Required": true, "DataType": "String",
			"AllowableValues": b.cfg.ResetTypes,
		}},
	})
}

// bootRequest is the Boot part of a PATCH body.
type bootRequest struct {
	Boot *struct {
		BootSourceOverrideTarget  string
		BootSourceOverrideEnabled string
		BootSourceOverrideMode    string
	}
	ApplyTime *struct{ ApplyTime string } `json:"@Redfish.SettingsApplyTime"`
}

// checkBoot validates a Boot request against the allowable values and the
// BMC's behaviour. It returns the Boot that results from applying it to
// cur, whether the target may still be applied although the answer is an
// error (ApplyDespiteReject), and the error to answer with (status 0: none).
func (b *BMC) checkBoot(req bootRequest, cur Boot) (next Boot, applyAnyway bool, status int, id, msg string) {
	nb := req.Boot
	for _, c := range []struct {
		name, v string
		valid   []string
	}{
		{"BootSourceOverrideTarget", nb.BootSourceOverrideTarget, bootTargets},
		{"BootSourceOverrideEnabled", nb.BootSourceOverrideEnabled, []string{"Disabled", "Once", "Continuous"}},
		{"BootSourceOverrideMode", nb.BootSourceOverrideMode, []string{"UEFI", "Legacy"}},
	} {
		if c.v != "" && !slices.Contains(c.valid, c.v) {
			return cur, false, http.StatusBadRequest, "Base.1.8.PropertyValueNotInList",
				fmt.Sprintf("The value %s for the property %s is not in the list of acceptable values.", c.v, c.name)
		}
	}
	next = cur
	if nb.BootSourceOverrideTarget != "" {
		next.Target = nb.BootSourceOverrideTarget
	}
	if nb.BootSourceOverrideEnabled != "" {
		next.Enabled = nb.BootSourceOverrideEnabled
	}
	if b.cfg.RejectBootMode && nb.BootSourceOverrideMode != "" {
		return next, b.cfg.ApplyDespiteReject, http.StatusBadRequest, "Base.1.8.PropertyNotWritable",
			"The property BootSourceOverrideMode is a read only property and cannot be assigned a value."
	}
	if nb.BootSourceOverrideMode != "" {
		next.Mode = nb.BootSourceOverrideMode
	}
	return next, false, 0, "", ""
}

func (b *BMC) patchSystem(w http.ResponseWriter, r *http.Request) {
	var req bootRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		b.writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "The request body submitted was malformed JSON.", "")
		return
	}
	if req.Boot == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cfg.SettingsObject {
		b.stats.RejectedBootPatches++
		b.writeError(w, http.StatusMethodNotAllowed, "Base.1.8.ActionNotSupported",
			"The Boot properties of this system can only be changed through its settings resource "+b.settingsPath()+".",
			"Send the PATCH to the URI in @Redfish.Settings.SettingsObject; it is applied at the next reset.")
		return
	}
	now := time.Now()
	b.settleLocked(now)
	cur := b.boot
	if b.pending != nil {
		cur = b.pending.boot
	}
	next, applyAnyway, status, id, msg := b.checkBoot(req, cur)
	if status != 0 {
		b.stats.RejectedBootPatches++
		if applyAnyway {
			b.applyBootLocked(next, now)
		}
		b.writeError(w, status, id, msg, "Remove the property from the request body and resubmit the request.")
		return
	}
	b.applyBootLocked(next, now)
	b.stats.BootPatches++
	if b.cfg.BootApplyDelay > 0 {
		// iLO answers 200 with a message body while the change is queued.
		writeJSON(w, http.StatusOK, map[string]any{"error": map[string]any{
			"code": "iLO.0.10.ExtendedInfo", "message": "See @Message.ExtendedInfo for more information.",
			"@Message.ExtendedInfo": []any{map[string]any{"MessageId": "Base.1.8.Success"}},
		}})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// applyBootLocked applies next now, or after BootApplyDelay.
func (b *BMC) applyBootLocked(next Boot, now time.Time) {
	if b.cfg.BootApplyDelay > 0 {
		b.pending = &pendingBoot{boot: next, at: now.Add(b.cfg.BootApplyDelay)}
		return
	}
	b.boot = next
}

func (b *BMC) settingsETag() string { return fmt.Sprintf(`W/"sd-%d"`, b.etag) }

func (b *BMC) getSettings(w http.ResponseWriter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bt := b.boot
	if b.settings != nil {
		bt = *b.settings
	}
	w.Header().Set("ETag", b.settingsETag())
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id": b.settingsPath(), "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem",
		"Id": "SD", "Name": "System settings (pending)", "Boot": bootJSON(bt),
	})
}

func (b *BMC) patchSettings(w http.ResponseWriter, r *http.Request) {
	var req bootRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		b.writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "The request body submitted was malformed JSON.", "")
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if m := r.Header.Get("If-Match"); m != b.settingsETag() {
		b.writeError(w, http.StatusPreconditionFailed, "Base.1.8.PreconditionFailed",
			"The ETag supplied did not match the ETag required to change this resource.", "Read the resource again and resubmit with its ETag in If-Match.")
		return
	}
	if req.ApplyTime != nil && req.ApplyTime.ApplyTime != "OnReset" {
		b.writeError(w, http.StatusBadRequest, "Base.1.8.PropertyValueNotInList",
			fmt.Sprintf("The value %s for the property ApplyTime is not in the list of acceptable values.", req.ApplyTime.ApplyTime), "")
		return
	}
	if req.Boot == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	cur := b.boot
	if b.settings != nil {
		cur = *b.settings
	}
	next, applyAnyway, status, id, msg := b.checkBoot(req, cur)
	if status != 0 {
		b.stats.RejectedBootPatches++
		if applyAnyway {
			b.settings = &next
			b.etag++
		}
		b.writeError(w, status, id, msg, "Remove the property from the request body and resubmit the request.")
		return
	}
	b.settings = &next
	b.etag++
	b.stats.BootPatches++
	b.stats.SettingsPatches++
	w.WriteHeader(http.StatusNoContent)
}

func (b *BMC) mediaResource(id string) map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var image any
	connected := "NotConnected"
	if b.media.Inserted {
		image, connected = b.media.Image, "URI"
	}
	return map[string]any{
		"@odata.id": id, "@odata.type": "#VirtualMedia.v1_3_0.VirtualMedia", "Id": "CD1", "Name": "Virtual CD",
		"MediaTypes": []string{"CD", "DVD"}, "Image": image, "ImageName": path.Base(b.media.Image),
		"Inserted": b.media.Inserted, "WriteProtected": true, "ConnectedVia": connected,
		"TransferProtocolType": "HTTP",
		"Actions": map[string]any{
			"#VirtualMedia.InsertMedia": map[string]any{"target": id + "/Actions/VirtualMedia.InsertMedia"},
			"#VirtualMedia.EjectMedia":  map[string]any{"target": id + "/Actions/VirtualMedia.EjectMedia"},
		},
	}
}

// insertMedia connects the virtual CD to an image URL. Like a real BMC it
// refuses while another image is connected and reads the image from its
// server, failing when that server cannot be reached.
func (b *BMC) insertMedia(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Image          string
		Inserted       *bool
		WriteProtected *bool
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		b.writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "The request body submitted was malformed JSON.", "")
		return
	}
	u, err := url.Parse(req.Image)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		b.writeError(w, http.StatusBadRequest, "Base.1.8.PropertyValueFormatError",
			fmt.Sprintf("The value %q for the property Image is of a different format than the property can accept.", req.Image), "Give an http:// or https:// URL of the image.")
		return
	}
	b.mu.Lock()
	busy := b.media.Inserted
	b.mu.Unlock()
	if busy {
		b.writeError(w, http.StatusConflict, "Base.1.8.ResourceInUse",
			"Virtual Media image server is already connected.", "Eject the inserted image first.")
		return
	}
	size, err := b.fetchImage(r.Context(), req.Image)
	if err != nil {
		b.writeError(w, http.StatusBadRequest, "Base.1.8.ResourceAtUriUnauthorized",
			fmt.Sprintf("Unable to connect to the image server for %s: %v", req.Image, err), "Check that the image URL is reachable from the BMC.")
		return
	}
	b.mu.Lock()
	b.media = Media{Image: req.Image, Inserted: true, Size: size}
	b.stats.Inserts++
	b.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (b *BMC) fetchImage(ctx context.Context, u string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := b.cfg.MediaClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return io.Copy(io.Discard, io.LimitReader(resp.Body, 8<<30))
}

func (b *BMC) ejectMedia(w http.ResponseWriter) {
	b.mu.Lock()
	b.media = Media{}
	b.stats.Ejects++
	b.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (b *BMC) reset(w http.ResponseWriter, r *http.Request, f Faults) {
	var req struct{ ResetType string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		b.writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "The request body submitted was malformed JSON.", "")
		return
	}
	if !slices.Contains(b.cfg.ResetTypes, req.ResetType) {
		if b.cfg.ResetActionInfo {
			b.writeError(w, http.StatusBadRequest, "Base.1.8.ActionParameterUnknown",
				fmt.Sprintf("The action Reset was submitted with the invalid parameter %s.", req.ResetType),
				"Correct the invalid parameter and resubmit the request if the operation failed.")
			return
		}
		b.writeError(w, http.StatusBadRequest, "Base.1.8.ActionParameterNotSupported", fmt.Sprintf("The parameter ResetType value %q is not supported by the action ComputerSystem.Reset.", req.ResetType), "")
		return
	}
	b.mu.Lock()
	b.stats.Resets = append(b.stats.Resets, req.ResetType)
	was := b.on
	b.mu.Unlock()
	restart := req.ResetType == "ForceRestart" || req.ResetType == "GracefulRestart" || req.ResetType == "PowerCycle"
	if f.IgnorePower || (b.cfg.IgnoreResets && restart) {
		w.WriteHeader(http.StatusNoContent)
		return
	}

	var actions []string
	switch req.ResetType {
	case "On", "ForceOn":
		if !was {
			actions = []string{"on"}
		}
	case "ForceOff", "GracefulShutdown":
		if was {
			actions = []string{"off"}
		}
	case "PushPowerButton":
		if was {
			actions = []string{"off"}
		} else {
			actions = []string{"on"}
		}
	case "ForceRestart", "GracefulRestart":
		switch {
		case was:
			actions = []string{"reset"}
		case b.cfg.ResetWhenOff == ResetWhenOffPowerOn:
			actions = []string{"on"}
		case b.cfg.ResetWhenOff == ResetWhenOffIgnore:
		default:
			b.writeError(w, http.StatusConflict, "Base.1.8.ActionNotSupported", "Unable to perform the operation because the server is powered off.", "Power the server on first.")
			return
		}
	case "PowerCycle":
		if was {
			actions = []string{"off", "on"}
		} else {
			actions = []string{"on"}
		}
	}
	for _, a := range actions {
		if err := b.power(r.Context(), a); err != nil {
			b.writeError(w, http.StatusInternalServerError, "Base.1.8.InternalError", "The power hook failed: "+err.Error(), "")
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// power changes the simulated server's power: "off", "on" or "reset". A
// boot (on, reset) applies pending settings, records what the host booted,
// tells OnPower and consumes a one-time override.
func (b *BMC) power(ctx context.Context, a string) error {
	now := time.Now()
	b.mu.Lock()
	ev := PowerEvent{BMC: b.name, Action: a}
	if a != "off" {
		// A pending asynchronous PATCH that has not landed yet is not
		// what this boot uses.
		b.settleLocked(now)
		if b.settings != nil {
			b.boot = *b.settings
			b.settings = nil
			b.etag++
		}
		ev.Boot = b.boot
		dev := "Hdd"
		if b.boot.Enabled == "Once" || b.boot.Enabled == "Continuous" {
			if b.boot.Target != "None" && b.boot.Target != "" {
				dev = b.boot.Target
			}
		}
		rec := Booted{Device: dev, Mode: b.boot.Mode}
		if b.cfg.RejectBootMode {
			rec.Mode = b.cfg.FirmwareMode
		}
		if dev == "Cd" && b.media.Inserted {
			rec.Media = b.media.Image
			ev.Media = b.media.Image
		}
		b.booted = append(b.booted, rec)
	}
	b.mu.Unlock()
	if b.cfg.OnPower != nil {
		if err := b.cfg.OnPower(ctx, ev); err != nil {
			return err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.on = a != "off"
	b.changedAt = now
	if a == "off" {
		b.progress, b.progressAt = "None", now
		if b.cfg.ChassisLastResetTime {
			b.lastReset = now
		}
		return nil
	}
	if a != "reset" || !b.cfg.ChassisLastResetTime {
		b.lastReset = now
	}
	b.progress, b.progressAt = "SystemHardwareInitializationComplete", now
	if b.boot.Enabled == "Once" {
		b.boot.Enabled = "Disabled"
		b.boot.Target = "None"
	}
	return nil
}

func link(id string) map[string]any { return map[string]any{"@odata.id": id} }

func writeCollection(w http.ResponseWriter, id, typ string, members []any) {
	if members == nil {
		members = []any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id": id, "@odata.type": typ, "Name": "Collection",
		"Members": members, "Members@odata.count": len(members),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// generalError is the Message of BMCs that keep the useful text in
// @Message.ExtendedInfo.
const generalError = "A general error has occurred. See ExtendedInfo for more information."

// writeError answers with a Redfish error body. With GenericMessages the
// message is the generic one and only ExtendedInfo says what happened.
func (b *BMC) writeError(w http.ResponseWriter, status int, id, msg, resolution string) {
	code, top := id, msg
	if b.cfg.GenericMessages {
		code, top = "Base.1.8.GeneralError", generalError
	}
	info := map[string]any{"MessageId": id, "Message": msg, "Severity": "Critical"}
	if resolution != "" {
		info["Resolution"] = resolution
	}
	writeJSON(w, status, map[string]any{
		"error": map[string]any{"code": code, "message": top, "@Message.ExtendedInfo": []any{info}},
	})
}

func newToken() string {
	var buf [16]byte
	_, _ = rand.Read(buf[:])
	return hex.EncodeToString(buf[:])
}
