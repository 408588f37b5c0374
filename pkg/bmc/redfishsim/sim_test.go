package redfishsim_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/bmc/redfishsim"
)

type client struct {
	t     *testing.T
	base  string
	hc    *http.Client
	token string
}

func (c *client) do(method, path string, body any) (int, http.Header, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("X-Auth-Token", c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, resp.Header, m
}

func start(t *testing.T, cfg redfishsim.BMCConfig) (*redfishsim.BMC, *client) {
	t.Helper()
	sim, err := redfishsim.New(redfishsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	b, err := sim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, base: "http://" + b.Addr().String(), hc: &http.Client{}}
	if cfg.TLS {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(sim.CertPEM())
		c.base = "https://" + b.Addr().String()
		c.hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	return b, c
}

// TestSessionsAndAuth: the service root is open, everything else needs a
// session token or basic auth, and DELETE ends the session.
func TestSessionsAndAuth(t *testing.T) {
	b, c := start(t, redfishsim.BMCConfig{TLS: true, Name: "sys1"})
	if code, _, m := c.do("GET", "/redfish/v1/", nil); code != 200 || m["Systems"] == nil {
		t.Fatalf("GET service root = %d %v, want 200 with Systems", code, m)
	}
	if code, _, _ := c.do("GET", "/redfish/v1/Systems", nil); code != 401 {
		t.Errorf("GET Systems without a session = %d, want 401", code)
	}
	if code, _, _ := c.do("POST", "/redfish/v1/SessionService/Sessions", map[string]string{"UserName": "admin", "Password": "nope"}); code != 401 {
		t.Errorf("login with a wrong password = %d, want 401", code)
	}
	code, h, _ := c.do("POST", "/redfish/v1/SessionService/Sessions", map[string]string{"UserName": "admin", "Password": "password"})
	if code != 201 || h.Get("X-Auth-Token") == "" || !strings.HasPrefix(h.Get("Location"), "/redfish/v1/SessionService/Sessions/") {
		t.Fatalf("login = %d token %q location %q, want 201 with both", code, h.Get("X-Auth-Token"), h.Get("Location"))
	}
	c.token = h.Get("X-Auth-Token")
	if code, _, m := c.do("GET", "/redfish/v1/Systems/sys1", nil); code != 200 || m["PowerState"] != "Off" {
		t.Errorf("GET system = %d %v, want 200 and PowerState Off", code, m["PowerState"])
	}
	if b.Sessions() != 1 {
		t.Errorf("Sessions() = %d, want 1", b.Sessions())
	}
	if code, _, _ := c.do("DELETE", h.Get("Location"), nil); code != 204 {
		t.Errorf("DELETE session = %d, want 204", code)
	}
	if code, _, _ := c.do("GET", "/redfish/v1/Systems/sys1", nil); code != 401 {
		t.Errorf("GET system with a deleted session = %d, want 401", code)
	}
	if b.Sessions() != 0 {
		t.Errorf("Sessions() after DELETE = %d, want 0", b.Sessions())
	}
}

// TestResetAndBoot: reset types outside the allowable values are refused,
// the hook sees each power change with the boot override in effect, a
// one-time override is consumed by the boot, and a hook error is a 500.
func TestResetAndBoot(t *testing.T) {
	var events []redfishsim.PowerEvent
	fail := false
	b, c := start(t, redfishsim.BMCConfig{
		Name: "s", Username: "u", Password: "p", ResetTypes: []string{"On", "ForceOff"},
		OnPower: func(_ context.Context, ev redfishsim.PowerEvent) error {
			if fail {
				return errors.New("qemu did not start")
			}
			events = append(events, ev)
			return nil
		},
	})
	c.hc.Transport = basicAuth{u: "u", p: "p"}
	reset := "/redfish/v1/Systems/s/Actions/ComputerSystem.Reset"
	if code, _, _ := c.do("POST", reset, map[string]string{"ResetType": "PowerCycle"}); code != 400 {
		t.Errorf("Reset PowerCycle (not allowed) = %d, want 400", code)
	}
	if code, _, _ := c.do("PATCH", "/redfish/v1/Systems/s", map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": "Floppy"}}); code != 400 {
		t.Errorf("PATCH boot target Floppy = %d, want 400", code)
	}
	if code, _, _ := c.do("PATCH", "/redfish/v1/Systems/s", map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}); code != 204 {
		t.Errorf("PATCH boot Pxe Once = %d, want 204", code)
	}
	if code, _, _ := c.do("POST", reset, map[string]string{"ResetType": "On"}); code != 204 {
		t.Errorf("Reset On = %d, want 204", code)
	}
	if code, _, _ := c.do("POST", reset, map[string]string{"ResetType": "ForceOff"}); code != 204 {
		t.Errorf("Reset ForceOff = %d, want 204", code)
	}
	want := []redfishsim.PowerEvent{
		{BMC: "s", Action: "on", Boot: redfishsim.Boot{Target: "Pxe", Enabled: "Once", Mode: "UEFI"}},
		{BMC: "s", Action: "off"},
	}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("power events mismatch (-want +got):\n%s", diff)
	}
	if got := b.Boot(); got.Target != "None" || got.Enabled != "Disabled" {
		t.Errorf("boot after the one-time PXE boot = %+v, want None Disabled", got)
	}
	fail = true
	if code, _, m := c.do("POST", reset, map[string]string{"ResetType": "On"}); code != 500 || !strings.Contains(m["error"].(map[string]any)["message"].(string), "qemu did not start") {
		t.Errorf("Reset On with a failing hook = %d %v, want 500 naming the hook's error", code, m)
	}
	if b.PowerState() != redfishsim.PowerOff {
		t.Errorf("power after a failed hook = %s, want Off", b.PowerState())
	}
}

type basicAuth struct{ u, p string }

func (a basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(a.u, a.p)
	return http.DefaultTransport.RoundTrip(r)
}

// TestThousandBMCs: the demo's rack of 1000 BMCs runs in one process, each
// on its own loopback port, and Close releases every port.
func TestThousandBMCs(t *testing.T) {
	sim, err := redfishsim.New(redfishsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	seen := map[string]bool{}
	for i := range 1000 {
		b, err := sim.Start(redfishsim.BMCConfig{Name: fmt.Sprintf("node-%04d", i)})
		if err != nil {
			t.Fatalf("Start BMC %d: %v", i, err)
		}
		seen[b.Addr().String()] = true
	}
	if len(seen) != 1000 || len(sim.BMCs()) != 1000 {
		t.Fatalf("%d distinct addresses, %d BMCs; want 1000 each", len(seen), len(sim.BMCs()))
	}
	last := sim.BMCs()[999]
	resp, err := http.Get("http://" + last.Addr().String() + "/redfish/v1/")
	if err != nil {
		t.Fatalf("GET the 1000th BMC's service root: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET the 1000th BMC's service root = %d, want 200", resp.StatusCode)
	}
	if err := sim.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := http.Get("http://" + last.Addr().String() + "/redfish/v1/"); err == nil {
		t.Errorf("the 1000th BMC still answers after Close")
	}
}

// login opens a session and keeps its token in c.
func (c *client) login() {
	c.t.Helper()
	code, h, _ := c.do("POST", "/redfish/v1/SessionService/Sessions", map[string]string{"UserName": "admin", "Password": "password"})
	if code != 201 {
		c.t.Fatalf("login = %d, want 201", code)
	}
	c.token = h.Get("X-Auth-Token")
}

// TestSettingsObject: a MegaRAC-like BMC refuses the Boot PATCH on the
// system with 405, takes it on .../SD only with the current ETag, shows it
// there, and applies it at the next power-on.
func TestSettingsObject(t *testing.T) {
	b, c := start(t, redfishsim.BMCConfig{Name: "s", SettingsObject: true})
	c.login()
	boot := map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}
	if code, _, _ := c.do("PATCH", "/redfish/v1/Systems/s", boot); code != 405 {
		t.Errorf("PATCH Boot on the system = %d, want 405", code)
	}
	_, _, sys := c.do("GET", "/redfish/v1/Systems/s", nil)
	if got := fmt.Sprint(sys["@Redfish.Settings"]); !strings.Contains(got, "/redfish/v1/Systems/s/SD") {
		t.Errorf("system @Redfish.Settings = %s, want the SD object", got)
	}
	if code, _, _ := c.do("PATCH", "/redfish/v1/Systems/s/SD", boot); code != 412 {
		t.Errorf("PATCH .../SD without If-Match = %d, want 412", code)
	}
	_, h, _ := c.do("GET", "/redfish/v1/Systems/s/SD", nil)
	req, _ := http.NewRequest("PATCH", c.base+"/redfish/v1/Systems/s/SD", strings.NewReader(`{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once"}}`))
	req.Header.Set("X-Auth-Token", c.token)
	req.Header.Set("If-Match", h.Get("ETag"))
	resp, err := c.hc.Do(req)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("PATCH .../SD with If-Match = %v, %v; want 204", resp, err)
	}
	resp.Body.Close()
	if got := b.Boot(); got.Target != "None" {
		t.Errorf("system boot before the reset = %+v, want unchanged", got)
	}
	if got, ok := b.PendingSettings(); !ok || got.Target != "Pxe" {
		t.Errorf("pending settings = %+v, %v; want Pxe", got, ok)
	}
	if code, _, _ := c.do("POST", "/redfish/v1/Systems/s/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "On"}); code != 204 {
		t.Fatalf("power on = %d", code)
	}
	if diff := cmp.Diff([]redfishsim.Booted{{Device: "Pxe", Mode: "UEFI"}}, b.Booted()); diff != "" {
		t.Errorf("booted (-want +got):\n%s", diff)
	}
	if _, ok := b.PendingSettings(); ok {
		t.Errorf("settings still pending after the power-on")
	}
}

// TestAsyncBootOverride: an iLO-like BMC answers the PATCH at once but
// shows the override only after BootApplyDelay; a boot before then uses the
// old one. The "not yet" half uses a delay no stall of a loaded machine
// reaches, the "landed" half polls: neither depends on the test's speed.
func TestAsyncBootOverride(t *testing.T) {
	pxeOnce := map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}
	b, c := start(t, redfishsim.BMCConfig{Name: "s", BootApplyDelay: time.Hour})
	c.login()
	if code, _, _ := c.do("PATCH", "/redfish/v1/Systems/s", pxeOnce); code != 200 {
		t.Fatalf("PATCH = %d, want 200", code)
	}
	_, _, sys := c.do("GET", "/redfish/v1/Systems/s", nil)
	if got := sys["Boot"].(map[string]any)["BootSourceOverrideTarget"]; got != "None" {
		t.Errorf("override right after the PATCH = %v, want None (not applied yet)", got)
	}
	c.do("POST", "/redfish/v1/Systems/s/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "On"})
	if got := b.Booted(); len(got) != 1 || got[0].Device != "Hdd" {
		t.Errorf("a boot before the override landed = %+v, want Hdd", got)
	}

	b2, c2 := start(t, redfishsim.BMCConfig{Name: "s2", BootApplyDelay: 50 * time.Millisecond})
	c2.login()
	if code, _, _ := c2.do("PATCH", "/redfish/v1/Systems/s2", pxeOnce); code != 200 {
		t.Fatalf("PATCH = %d, want 200", code)
	}
	for deadline := time.Now().Add(10 * time.Second); b2.Boot().Target != "Pxe"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("override 10 s after the PATCH = %+v, want Pxe (applied after 50 ms)", b2.Boot())
		}
	}
	c2.do("POST", "/redfish/v1/Systems/s2/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "On"})
	if got := b2.Booted(); len(got) != 1 || got[0].Device != "Pxe" {
		t.Errorf("a boot after the override landed = %+v, want Pxe", got)
	}
}

// TestInsertMediaConflict: a second InsertMedia while an image is connected
// is refused, as real BMCs do.
func TestInsertMediaConflict(t *testing.T) {
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("iso")) }))
	defer img.Close()
	b, c := start(t, redfishsim.BMCConfig{Name: "s"})
	c.login()
	insert := "/redfish/v1/Managers/BMC/VirtualMedia/CD1/Actions/VirtualMedia.InsertMedia"
	if code, _, _ := c.do("POST", insert, map[string]any{"Image": img.URL + "/a.iso", "Inserted": true}); code != 204 {
		t.Fatalf("InsertMedia = %d, want 204", code)
	}
	if code, _, m := c.do("POST", insert, map[string]any{"Image": img.URL + "/b.iso", "Inserted": true}); code != 409 || !strings.Contains(fmt.Sprint(m), "already connected") {
		t.Errorf("second InsertMedia = %d %v, want 409 already connected", code, m)
	}
	if got := b.Media(); got.Image != img.URL+"/a.iso" || got.Size != 3 {
		t.Errorf("media = %+v, want a.iso (3 bytes fetched)", got)
	}
}

// TestResetActionInfo: the openbmc profile names its reset types only in
// the ResetActionInfo resource its Reset action links to, refuses a type
// that resource does not list as bmcweb does, and reports LastResetTime as
// the chassis's last power change, which a warm restart does not move.
func TestResetActionInfo(t *testing.T) {
	p, ok := redfishsim.LookupProfile("openbmc")
	if !ok {
		t.Fatal(`LookupProfile("openbmc"): no such profile`)
	}
	cfg := p.Config
	cfg.Name, cfg.Username, cfg.Password, cfg.PoweredOn = "system", "u", "p", true
	cfg.ResetTypes = []string{"On", "ForceOff", "ForceRestart", "GracefulShutdown"}
	b, c := start(t, cfg)
	c.hc.Transport = basicAuth{u: "u", p: "p"}

	code, _, sys := c.do("GET", "/redfish/v1/Systems/system", nil)
	if code != 200 {
		t.Fatalf("GET system = %d, want 200", code)
	}
	action, _ := sys["Actions"].(map[string]any)["#ComputerSystem.Reset"].(map[string]any)
	wantAction := map[string]any{
		"target":              "/redfish/v1/Systems/system/Actions/ComputerSystem.Reset",
		"@Redfish.ActionInfo": "/redfish/v1/Systems/system/ResetActionInfo",
	}
	if diff := cmp.Diff(wantAction, action); diff != "" {
		t.Errorf("GET system: #ComputerSystem.Reset (-want +got):\n%s", diff)
	}

	code, _, info := c.do("GET", "/redfish/v1/Systems/system/ResetActionInfo", nil)
	if code != 200 {
		t.Fatalf("GET ResetActionInfo = %d, want 200", code)
	}
	wantParams := []any{map[string]any{
		"Name": "ResetType", "Required": true, "DataType": "String",
		"AllowableValues": []any{"On", "ForceOff", "ForceRestart", "GracefulShutdown"},
	}}
	if diff := cmp.Diff(wantParams, info["Parameters"]); diff != "" {
		t.Errorf("GET ResetActionInfo: Parameters (-want +got):\n%s", diff)
	}

	reset := "/redfish/v1/Systems/system/Actions/ComputerSystem.Reset"
	code, _, m := c.do("POST", reset, map[string]string{"ResetType": "PowerCycle"})
	ext, _ := m["error"].(map[string]any)["@Message.ExtendedInfo"].([]any)
	if code != 400 || len(ext) != 1 || ext[0].(map[string]any)["MessageId"] != "Base.1.8.ActionParameterUnknown" ||
		ext[0].(map[string]any)["Message"] != "The action Reset was submitted with the invalid parameter PowerCycle." {
		t.Errorf("Reset PowerCycle (not in the ActionInfo) = %d %v, want 400 ActionParameterUnknown naming PowerCycle", code, m)
	}
	if got := b.Stats().Resets; len(got) != 0 {
		t.Errorf("reset types accepted after a refused PowerCycle: %v, want none", got)
	}

	evidence := func() (last, progressAt string) {
		t.Helper()
		_, _, s := c.do("GET", "/redfish/v1/Systems/system", nil)
		bp, _ := s["BootProgress"].(map[string]any)
		last, _ = s["LastResetTime"].(string)
		progressAt, _ = bp["LastStateTime"].(string)
		return last, progressAt
	}
	last0, prog0 := evidence()
	if last0 == "" || !strings.HasSuffix(last0, "+00:00") || strings.Contains(last0, ".") {
		t.Errorf("LastResetTime = %q, want whole seconds ending in +00:00 as bmcweb writes it", last0)
	}
	if code, _, _ := c.do("POST", reset, map[string]string{"ResetType": "ForceRestart"}); code != 204 {
		t.Fatalf("Reset ForceRestart = %d, want 204", code)
	}
	last1, prog1 := evidence()
	if last1 != last0 || prog1 == prog0 {
		t.Errorf("after ForceRestart: LastResetTime %q -> %q, BootProgress at %q -> %q; want LastResetTime unchanged (the chassis stayed on) and BootProgress moved", last0, last1, prog0, prog1)
	}
	if code, _, _ := c.do("POST", reset, map[string]string{"ResetType": "ForceOff"}); code != 204 {
		t.Fatalf("Reset ForceOff = %d, want 204", code)
	}
	if last2, _ := evidence(); last2 == last1 {
		t.Errorf("after ForceOff: LastResetTime still %q, want the chassis's power change", last2)
	}

	b.SetFaults(redfishsim.Faults{ActionInfoStatus: 500})
	if code, _, _ := c.do("GET", "/redfish/v1/Systems/system/ResetActionInfo", nil); code != 500 {
		t.Errorf("GET ResetActionInfo with ActionInfoStatus 500 = %d, want 500", code)
	}
	if code, _, _ := c.do("GET", "/redfish/v1/Systems/system", nil); code != 200 {
		t.Errorf("GET system with ActionInfoStatus 500 = %d, want 200", code)
	}
}
