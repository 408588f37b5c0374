package redfishsim

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
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

// BMCConfig describes one simulated BMC.
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
	// RejectBootMode answers 400 to a PATCH that carries
	// BootSourceOverrideMode, without applying it (a vendor quirk).
	RejectBootMode bool
	// TransitionDelay is how long a power change takes: the state reads
	// PoweringOn or PoweringOff until it has passed (default 0, instant).
	TransitionDelay time.Duration
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
}

// Boot is a ComputerSystem's boot override.
type Boot struct {
	// Target is BootSourceOverrideTarget: None, Pxe, Hdd, ...
	Target string
	// Enabled is BootSourceOverrideEnabled: Disabled, Once or Continuous.
	Enabled string
	// Mode is BootSourceOverrideMode: UEFI or Legacy.
	Mode string
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
	// IgnorePower acknowledges Reset requests (204) without changing power.
	IgnorePower bool
	// MalformedJSON answers the ComputerSystem GET with truncated JSON.
	MalformedJSON bool
}

// Stats counts what a BMC was asked to do.
type Stats struct {
	// Requests is every HTTP request received.
	Requests int
	// Logins and Logouts count session creations and deletions.
	Logins  int
	Logouts int
	// Resets are the ResetType values of accepted Reset actions, in order.
	Resets []string
	// BootPatches counts accepted PATCHes of Boot; RejectedBootPatches those
	// refused because of RejectBootMode.
	BootPatches         int
	RejectedBootPatches int
}

// BMC is one running simulated BMC.
type BMC struct {
	name, user, pass            string
	manufacturer, model, serial string
	resetTypes                  []string
	rejectBootMode              bool
	transition                  time.Duration
	onPower                     func(ctx context.Context, ev PowerEvent) error
	tls                         bool
	log                         *slog.Logger
	addr                        netip.AddrPort
	srv                         *http.Server
	done                        chan struct{}
	closing                     chan struct{}
	closeOnce                   sync.Once
	mu                          sync.Mutex
	faults                      Faults
	on                          bool
	changedAt                   time.Time
	boot                        Boot
	sessions                    map[string]string // token -> session id
	nextSession                 int
	stats                       Stats
}

func newBMC(cfg BMCConfig, log *slog.Logger) (*BMC, error) {
	b := &BMC{
		name:           def(cfg.Name, "System.Embedded.1"),
		user:           def(cfg.Username, "admin"),
		pass:           def(cfg.Password, "password"),
		manufacturer:   def(cfg.Manufacturer, "Slipway"),
		model:          def(cfg.Model, "Simulated Server"),
		serial:         def(cfg.SerialNumber, "SIM0001"),
		resetTypes:     cfg.ResetTypes,
		rejectBootMode: cfg.RejectBootMode,
		transition:     cfg.TransitionDelay,
		onPower:        cfg.OnPower,
		tls:            cfg.TLS,
		faults:         cfg.Faults,
		on:             cfg.PoweredOn,
		boot:           Boot{Target: "None", Enabled: "Disabled", Mode: "UEFI"},
		sessions:       map[string]string{},
		closing:        make(chan struct{}),
	}
	if len(b.resetTypes) == 0 {
		b.resetTypes = DefaultResetTypes()
	}
	if strings.ContainsAny(b.name, "/?#") {
		return nil, fmt.Errorf("start simulated bmc %q: name must not contain / ? or #", b.name)
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
	if b.tls {
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
// someone had pressed the power button.
func (b *BMC) SetPowerState(on bool) {
	b.mu.Lock()
	b.on = on
	b.changedAt = time.Time{}
	b.mu.Unlock()
}

// Boot returns the current boot override.
func (b *BMC) Boot() Boot {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.boot
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
		writeError(w, http.StatusUnauthorized, "Base.1.8.NoValidSession", "There is no valid session established with the implementation.")
		return
	}
	sys := "/redfish/v1/Systems/" + b.name
	if f.ErrorStatus != 0 && strings.HasPrefix(path, "/redfish/v1/Systems") {
		writeError(w, f.ErrorStatus, "Base.1.8.InternalError", "The request failed due to an internal service error.")
		return
	}
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
	case path == sys+"/Actions/ComputerSystem.Reset" && r.Method == http.MethodPost:
		b.reset(w, r, f)
	case path == "/redfish/v1/Managers" && r.Method == http.MethodGet:
		writeCollection(w, "/redfish/v1/Managers", "#ManagerCollection.ManagerCollection", []any{link("/redfish/v1/Managers/BMC")})
	case path == "/redfish/v1/Managers/BMC" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{
			"@odata.id": "/redfish/v1/Managers/BMC", "@odata.type": "#Manager.v1_10_0.Manager", "Id": "BMC", "Name": "Manager",
			"ManagerType": "BMC", "Manufacturer": b.manufacturer, "Model": b.model + " BMC", "SerialNumber": b.serial,
			"FirmwareVersion": "1.0.0-sim", "Status": map[string]any{"State": "Enabled", "Health": "OK"},
			"Links": map[string]any{"ManagerForServers": []any{link(sys)}},
		})
	case path == "/redfish/v1/Chassis" && r.Method == http.MethodGet:
		writeCollection(w, "/redfish/v1/Chassis", "#ChassisCollection.ChassisCollection", []any{link("/redfish/v1/Chassis/1U")})
	case path == "/redfish/v1/Chassis/1U" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{
			"@odata.id": "/redfish/v1/Chassis/1U", "@odata.type": "#Chassis.v1_14_0.Chassis", "Id": "1U", "Name": "Chassis",
			"ChassisType": "RackMount", "Manufacturer": b.manufacturer, "Model": b.model, "SerialNumber": b.serial,
			"PowerState": b.powerState(), "Status": map[string]any{"State": "Enabled", "Health": "OK"},
			"Links": map[string]any{"ComputerSystems": []any{link(sys)}, "ManagedBy": []any{link("/redfish/v1/Managers/BMC")}},
		})
	default:
		if r.Method == http.MethodGet {
			writeError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "The resource at the URI "+r.URL.Path+" was not found.")
			return
		}
		writeError(w, http.StatusMethodNotAllowed, "Base.1.8.OperationNotAllowed", "The operation is not allowed on "+r.URL.Path+".")
	}
}

func (b *BMC) serviceRoot(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id": "/redfish/v1/", "@odata.type": "#ServiceRoot.v1_11_0.ServiceRoot",
		"Id": "RootService", "Name": "Root Service", "RedfishVersion": "1.11.0",
		"UUID":           "92384634-2938-2342-8820-489239905423",
		"Product":        b.model,
		"Vendor":         b.manufacturer,
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
		writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "The request body submitted was malformed JSON.")
		return
	}
	if f.RejectCredentials || !b.credentialsMatch(req.UserName, req.Password) {
		writeError(w, http.StatusUnauthorized, "Base.1.8.InsufficientPrivilege", "Invalid username or password.")
		return
	}
	b.mu.Lock()
	if f.MaxSessions > 0 && len(b.sessions) >= f.MaxSessions {
		b.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "Base.1.8.SessionLimitExceeded", "The maximum number of user sessions is reached.")
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
		writeError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "The session "+id+" was not found.")
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
	inTransition := b.transition > 0 && !b.changedAt.IsZero() && time.Since(b.changedAt) < b.transition
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

func (b *BMC) system(sys string) map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	return map[string]any{
		"@odata.id": sys, "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem",
		"Id": b.name, "Name": "System", "SystemType": "Physical",
		"Manufacturer": b.manufacturer, "Model": b.model, "SerialNumber": b.serial,
		"PowerState": b.powerStateLocked(),
		"Status":     map[string]any{"State": "Enabled", "Health": "OK"},
		"Boot": map[string]any{
			"BootSourceOverrideTarget":                          b.boot.Target,
			"BootSourceOverrideEnabled":                         b.boot.Enabled,
			"BootSourceOverrideMode":                            b.boot.Mode,
			"BootSourceOverrideTarget@Redfish.AllowableValues":  []string{"None", "Pxe", "Hdd", "Cd", "Usb", "BiosSetup"},
			"BootSourceOverrideEnabled@Redfish.AllowableValues": []string{"Disabled", "Once", "Continuous"},
			"BootSourceOverrideMode@Redfish.AllowableValues":    []string{"UEFI", "Legacy"},
		},
		"Actions": map[string]any{
			"#ComputerSystem.Reset": map[string]any{
				"target":                            sys + "/Actions/ComputerSystem.Reset",
				"ResetType@Redfish.AllowableValues": b.resetTypes,
			},
		},
		"Links": map[string]any{
			"Chassis":   []any{link("/redfish/v1/Chassis/1U")},
			"ManagedBy": []any{link("/redfish/v1/Managers/BMC")},
		},
	}
}

func (b *BMC) patchSystem(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Boot *struct {
			BootSourceOverrideTarget  string
			BootSourceOverrideEnabled string
			BootSourceOverrideMode    string
		}
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "The request body submitted was malformed JSON.")
		return
	}
	if req.Boot == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	nb := req.Boot
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rejectBootMode && nb.BootSourceOverrideMode != "" {
		b.stats.RejectedBootPatches++
		writeError(w, http.StatusBadRequest, "Base.1.8.PropertyNotWritable", "The property BootSourceOverrideMode is a read only property and cannot be assigned a value.")
		return
	}
	for _, c := range []struct {
		name, v string
		valid   []string
	}{
		{"BootSourceOverrideTarget", nb.BootSourceOverrideTarget, []string{"None", "Pxe", "Hdd", "Cd", "Usb", "BiosSetup"}},
		{"BootSourceOverrideEnabled", nb.BootSourceOverrideEnabled, []string{"Disabled", "Once", "Continuous"}},
		{"BootSourceOverrideMode", nb.BootSourceOverrideMode, []string{"UEFI", "Legacy"}},
	} {
		if c.v != "" && !slices.Contains(c.valid, c.v) {
			writeError(w, http.StatusBadRequest, "Base.1.8.PropertyValueNotInList", fmt.Sprintf("The value %s for the property %s is not in the list of acceptable values.", c.v, c.name))
			return
		}
	}
	if nb.BootSourceOverrideTarget != "" {
		b.boot.Target = nb.BootSourceOverrideTarget
	}
	if nb.BootSourceOverrideEnabled != "" {
		b.boot.Enabled = nb.BootSourceOverrideEnabled
	}
	if nb.BootSourceOverrideMode != "" {
		b.boot.Mode = nb.BootSourceOverrideMode
	}
	b.stats.BootPatches++
	w.WriteHeader(http.StatusNoContent)
}

func (b *BMC) reset(w http.ResponseWriter, r *http.Request, f Faults) {
	var req struct{ ResetType string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "The request body submitted was malformed JSON.")
		return
	}
	if !slices.Contains(b.resetTypes, req.ResetType) {
		writeError(w, http.StatusBadRequest, "Base.1.8.ActionParameterNotSupported", fmt.Sprintf("The parameter ResetType value %q is not supported by the action ComputerSystem.Reset.", req.ResetType))
		return
	}
	b.mu.Lock()
	b.stats.Resets = append(b.stats.Resets, req.ResetType)
	was := b.on
	boot := b.boot
	b.mu.Unlock()
	if f.IgnorePower {
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
		if was {
			actions = []string{"reset"}
		} else {
			writeError(w, http.StatusConflict, "Base.1.8.ActionNotSupported", "The system is powered off; a restart needs a running system.")
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
		if b.onPower != nil {
			ev := PowerEvent{BMC: b.name, Action: a}
			if a != "off" {
				ev.Boot = boot
			}
			if err := b.onPower(r.Context(), ev); err != nil {
				writeError(w, http.StatusInternalServerError, "Base.1.8.InternalError", "The power hook failed: "+err.Error())
				return
			}
		}
		b.mu.Lock()
		b.on = a != "off"
		b.changedAt = time.Now()
		if a != "off" && b.boot.Enabled == "Once" {
			b.boot.Enabled = "Disabled"
			b.boot.Target = "None"
		}
		b.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
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

func writeError(w http.ResponseWriter, status int, id, msg string) {
	writeJSON(w, status, map[string]any{
		"error": map[string]any{
			"code": id, "message": msg,
			"@Message.ExtendedInfo": []any{map[string]any{"MessageId": id, "Message": msg, "Severity": "Critical"}},
		},
	})
}

func newToken() string {
	var buf [16]byte
	_, _ = rand.Read(buf[:])
	return hex.EncodeToString(buf[:])
}
