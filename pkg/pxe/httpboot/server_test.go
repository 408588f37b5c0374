package httpboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"

	goldenfile "github.com/slipway-dev/slipway/internal/golden"
	"github.com/slipway-dev/slipway/internal/servetest"
)

type recorder struct {
	mu     sync.Mutex
	events []bootevent.Event
}

func (r *recorder) Publish(e bootevent.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		s := string(e.Kind) + " " + e.Node
		if e.Detail != "" {
			s += " (" + e.Detail + ")"
		}
		out = append(out, s)
	}
	return out
}

// waitKinds waits until n events have arrived (asset events are published
// after the last byte is written, which the client may read first) and
// returns kinds().
func (r *recorder) waitKinds(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := r.kinds()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = nil
}

func mac(s string) inventory.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return inventory.HardwareAddr(m)
}

func testNodes() []inventory.Node {
	return []inventory.Node{
		{Name: "bios-1", MAC: mac("52:54:00:77:00:10"), IP: netip.MustParseAddr("127.0.0.1"),
			Boot: inventory.Boot{Firmware: inventory.FirmwareBIOS, Kernel: "vmlinuz", Initrd: "initrd.gz", KernelArgs: "console=ttyS0 panic=1"}},
		{Name: "uefi-1", MAC: mac("52:54:00:77:00:11"), IP: netip.MustParseAddr("10.77.0.11"),
			Boot: inventory.Boot{Firmware: inventory.FirmwareUEFI, Kernel: "debian/vmlinuz-6.1", Initrd: "debian/initrd.img-6.1"}},
		{Name: "remote-1", MAC: mac("52:54:00:77:00:12"), IP: netip.MustParseAddr("10.77.0.12"),
			Boot: inventory.Boot{Kernel: "https://mirror.example/k/vmlinuz", Initrd: "https://mirror.example/k/initrd.img?v=2"}},
		{Name: "off-1", MAC: mac("52:54:00:77:00:13"), IP: netip.MustParseAddr("10.77.0.13"), Disabled: true,
			Boot: inventory.Boot{Kernel: "vmlinuz", Initrd: "initrd.gz"}},
	}
}

type fixture struct {
	srv      *Server
	http     *httptest.Server
	events   *recorder
	now      *time.Time
	rendered *int
	assets   string
}

func newFixture(t *testing.T, change func(*Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	assets := filepath.Join(dir, "assets")
	if err := os.MkdirAll(filepath.Join(assets, "debian"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"vmlinuz":               strings.Repeat("K", 4096),
		"initrd.gz":             strings.Repeat("I", 1000),
		"debian/vmlinuz-6.1":    "kernel",
		"debian/initrd.img-6.1": "initrd",
	} {
		if err := os.WriteFile(filepath.Join(assets, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "secret"), []byte("secret"), 0o600)
	os.Symlink(filepath.Join(dir, "secret"), filepath.Join(assets, "escape"))
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := &fixture{events: &recorder{}, now: &now, rendered: new(int), assets: assets}
	cfg := Config{
		BaseURL:  "http://10.77.0.1:8080",
		AssetDir: assets,
		Nodes:    testNodes(),
		Tokens:   NewTokens(10*time.Minute, func() time.Time { return *f.now }),
		Renderer: RendererFunc(func(_ context.Context, n inventory.Node) ([]byte, error) {
			*f.rendered++
			return []byte("config for " + n.Name + "\n"), nil
		}),
		Events: f.events,
	}
	if change != nil {
		change(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.srv = s
	f.http = httptest.NewServer(s.Handler())
	t.Cleanup(f.http.Close)
	return f
}

func (f *fixture) do(t *testing.T, method, path string, body io.Reader, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.http.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var tokenRE = regexp.MustCompile(`token=[A-Za-z0-9_-]+`)

func TestScriptGolden(t *testing.T) {
	f := newFixture(t, nil)
	for _, name := range []string{"bios-1", "uefi-1", "remote-1"} {
		t.Run(name, func(t *testing.T) {
			code, body := f.do(t, "GET", "/boot/"+name+".ipxe", nil)
			if code != http.StatusOK {
				t.Fatalf("GET /boot/%s.ipxe = %d, want 200", name, code)
			}
			if !tokenRE.MatchString(body) {
				t.Fatalf("script for %s has no config token:\n%s", name, body)
			}
			got := tokenRE.ReplaceAllString(body, "token=TOKEN")
			goldenfile.Check(t, filepath.Join("testdata", name+".ipxe.golden"), []byte(got))
		})
	}
}

func TestScriptFacts(t *testing.T) {
	f := newFixture(t, nil)
	_, body := f.do(t, "GET", "/boot/uefi-1.ipxe", nil)
	for _, want := range []string{
		"kernel http://10.77.0.1:8080/assets/debian/vmlinuz-6.1 initrd=initrd.img-6.1 ",
		"initrd http://10.77.0.1:8080/assets/debian/initrd.img-6.1",
		"slipway.node=uefi-1",
		"slipway.config=http://10.77.0.1:8080/config/uefi-1?token=",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("script for uefi-1 lacks %q:\n%s", want, body)
		}
	}
	a, b := tokenRE.FindString(body), tokenRE.FindString(func() string { _, s := f.do(t, "GET", "/boot/uefi-1.ipxe", nil); return s }())
	if a == b {
		t.Errorf("two script fetches carry the same token %s, want a fresh one each", a)
	}
}

func TestScriptTemplateOverride(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.ScriptTemplate = "#!ipxe\nchain {{.KernelURL}} node={{.Node}}\n"
	})
	_, body := f.do(t, "GET", "/boot/bios-1.ipxe", nil)
	if want := "#!ipxe\nchain http://10.77.0.1:8080/assets/vmlinuz node=bios-1\n"; body != want {
		t.Errorf("script with a custom template = %q, want %q", body, want)
	}
	for _, bad := range []string{"{{.Nope", "#!ipxe\nkernel {{.Kernel}}\n"} {
		if _, err := New(Config{BaseURL: "http://10.0.0.1:8080", ScriptTemplate: bad}); err == nil || !strings.Contains(err.Error(), "ipxe script template") {
			t.Errorf("New with template %q = %v, want a template error", bad, err)
		}
	}
}

// TestExampleTemplates keeps the examples in images/ipxe valid.
func TestExampleTemplates(t *testing.T) {
	files, _ := filepath.Glob("../../../images/ipxe/*.tmpl")
	if len(files) == 0 {
		t.Fatal("no templates in images/ipxe")
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		f := newFixture(t, func(c *Config) { c.ScriptTemplate = string(b) })
		code, body := f.do(t, "GET", "/boot/bios-1.ipxe", nil)
		if code != http.StatusOK || !strings.HasPrefix(body, "#!ipxe") || !strings.Contains(body, "slipway.config=http://10.77.0.1:8080/config/bios-1?token=") {
			t.Errorf("%s: GET /boot/bios-1.ipxe = %d:\n%s", file, code, body)
		}
	}
}

func TestScriptOnlyForKnownNodes(t *testing.T) {
	f := newFixture(t, nil)
	for _, p := range []string{"/boot/nobody.ipxe", "/boot/off-1.ipxe", "/boot/bios-1", "/boot/bios-1.sh"} {
		if code, _ := f.do(t, "GET", p, nil); code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, code)
		}
	}
	if got := f.events.kinds(); len(got) != 0 {
		t.Errorf("events after refused scripts = %v, want none", got)
	}
}

func tokenFor(t *testing.T, f *fixture, node string) string {
	t.Helper()
	_, body := f.do(t, "GET", "/boot/"+node+".ipxe", nil)
	tok := strings.TrimPrefix(tokenRE.FindString(body), "token=")
	if tok == "" {
		t.Fatalf("no token in the script for %s", node)
	}
	return tok
}

func TestConfigTokens(t *testing.T) {
	tests := []struct {
		name   string
		query  func(t *testing.T, f *fixture) string // returns path+query
		detail string
	}{
		{"missing", func(t *testing.T, f *fixture) string { return "/config/bios-1" }, "no token"},
		{"wrong", func(t *testing.T, f *fixture) string {
			tokenFor(t, f, "bios-1")
			return "/config/bios-1?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		}, "unknown token"},
		{"other node's", func(t *testing.T, f *fixture) string { return "/config/bios-1?token=" + tokenFor(t, f, "uefi-1") }, "token belongs to another node"},
		{"expired", func(t *testing.T, f *fixture) string {
			tok := tokenFor(t, f, "bios-1")
			*f.now = f.now.Add(10*time.Minute + time.Second)
			return "/config/bios-1?token=" + tok
		}, "token expired"},
		{"used", func(t *testing.T, f *fixture) string {
			tok := tokenFor(t, f, "bios-1")
			if code, _ := f.do(t, "GET", "/config/bios-1?token="+tok, nil); code != 200 {
				t.Fatalf("first use of a fresh token = %d, want 200", code)
			}
			*f.rendered = 0
			return "/config/bios-1?token=" + tok
		}, "token already used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			p := tt.query(t, f)
			f.events.reset()
			code, body := f.do(t, "GET", p, nil)
			if code != http.StatusForbidden {
				t.Errorf("GET config with %s token = %d, want 403", tt.name, code)
			}
			if strings.Contains(body, "config for") || *f.rendered != 0 {
				t.Errorf("GET config with %s token served the config (body %q, renders %d)", tt.name, body, *f.rendered)
			}
			want := []string{"config_refused bios-1 (" + tt.detail + ")"}
			if diff := cmp.Diff(want, f.events.kinds()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("unknown node", func(t *testing.T) {
		f := newFixture(t, nil)
		if code, _ := f.do(t, "GET", "/config/nobody?token=x", nil); code != http.StatusForbidden {
			t.Errorf("GET /config/nobody = %d, want 403", code)
		}
	})
	t.Run("failed render keeps the token", func(t *testing.T) {
		fail := true
		f := newFixture(t, func(c *Config) {
			c.Renderer = RendererFunc(func(_ context.Context, n inventory.Node) ([]byte, error) {
				if fail {
					return nil, errors.New("state directory unavailable")
				}
				return []byte("config for " + n.Name + "\n"), nil
			})
		})
		tok := tokenFor(t, f, "uefi-1")
		if code, _ := f.do(t, "GET", "/config/uefi-1?token="+tok, nil); code != http.StatusInternalServerError {
			t.Fatalf("GET config while the renderer fails = %d, want 500", code)
		}
		fail = false
		code, body := f.do(t, "GET", "/config/uefi-1?token="+tok, nil)
		if code != http.StatusOK || body != "config for uefi-1\n" {
			t.Errorf("GET config again after a failed render = %d %q, want 200 with the config", code, body)
		}
		if code, _ := f.do(t, "GET", "/config/uefi-1?token="+tok, nil); code != http.StatusForbidden {
			t.Errorf("GET config a third time = %d, want 403 (token used)", code)
		}
	})
	t.Run("valid once", func(t *testing.T) {
		f := newFixture(t, nil)
		tok := tokenFor(t, f, "uefi-1")
		code, body := f.do(t, "GET", "/config/uefi-1?token="+tok, nil)
		if code != http.StatusOK || body != "config for uefi-1\n" {
			t.Errorf("GET config with a fresh token = %d %q, want 200 with the rendered config", code, body)
		}
	})
}

func TestRequireNodeIP(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RequireNodeIP = true })
	// The test client is 127.0.0.1: bios-1's address, not uefi-1's.
	if code, _ := f.do(t, "GET", "/boot/uefi-1.ipxe", nil); code != http.StatusForbidden {
		t.Errorf("GET uefi-1's script from another address = %d, want 403", code)
	}
	if code, _ := f.do(t, "GET", "/config/uefi-1?token="+func() string {
		tok, _ := f.srv.tokens.Issue("uefi-1")
		return tok
	}(), nil); code != http.StatusForbidden {
		t.Errorf("GET uefi-1's config with a valid token from another address = %d, want 403", code)
	}
	if *f.rendered != 0 {
		t.Errorf("config rendered %d times for a refused address", *f.rendered)
	}
	if code, _ := f.do(t, "POST", "/phone-home/uefi-1", strings.NewReader("step=kubeadm-join status=ok")); code != http.StatusForbidden {
		t.Errorf("POST uefi-1's phone-home from another address = %d, want 403", code)
	}
	tok := tokenFor(t, f, "bios-1")
	if code, _ := f.do(t, "GET", "/config/bios-1?token="+tok, nil); code != http.StatusOK {
		t.Errorf("GET bios-1's config from its own address = %d, want 200", code)
	}
	if code, _ := f.do(t, "POST", "/phone-home/bios-1", strings.NewReader("step=kubeadm-join status=ok")); code != http.StatusOK {
		t.Errorf("POST bios-1's phone-home from its own address = %d, want 200", code)
	}
	want := []string{"config_refused uefi-1 (not the node's address)", "script_served bios-1", "config_fetched bios-1", "phone_home bios-1 (step=kubeadm-join status=ok)"}
	if diff := cmp.Diff(want, f.events.waitKinds(t, len(want))); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestPhoneHome(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.MaxPhoneHomeBytes = 100
		c.NextAction = func(n inventory.Node) string { return "poweroff" }
	})
	code, body := f.do(t, "POST", "/phone-home/uefi-1", strings.NewReader("kubeadm join done\n"))
	if code != http.StatusOK || body != "poweroff" {
		t.Errorf("POST phone-home = %d %q, want 200 poweroff", code, body)
	}
	code, _ = f.do(t, "GET", "/phone-home?mac=52:54:00:77:00:10&uptime=2.5", nil)
	if code != http.StatusOK {
		t.Errorf("GET phone-home?mac= = %d, want 200", code)
	}
	code, _ = f.do(t, "POST", "/phone-home/uefi-1", strings.NewReader(strings.Repeat("x", 101)))
	if code != http.StatusRequestEntityTooLarge {
		t.Errorf("POST 101-byte phone-home with a 100-byte limit = %d, want 413", code)
	}
	for _, p := range []string{"/phone-home/nobody", "/phone-home/off-1", "/phone-home?mac=52:54:00:00:00:01", "/phone-home"} {
		if code, _ := f.do(t, "GET", p, nil); code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, code)
		}
	}
	want := []string{"phone_home uefi-1 (kubeadm join done)", "phone_home bios-1 (mac=52:54:00:77:00:10&uptime=2.5)"}
	if diff := cmp.Diff(want, f.events.kinds()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestAssets(t *testing.T) {
	f := newFixture(t, nil)
	code, body := f.do(t, "GET", "/assets/vmlinuz", nil)
	if code != 200 || body != strings.Repeat("K", 4096) {
		t.Errorf("GET /assets/vmlinuz = %d, %d bytes; want 200, 4096 bytes", code, len(body))
	}
	code, body = f.do(t, "GET", "/assets/initrd.gz", nil, "Range", "bytes=10-19")
	if code != http.StatusPartialContent || body != strings.Repeat("I", 10) {
		t.Errorf("GET /assets/initrd.gz Range 10-19 = %d %q, want 206 and 10 bytes", code, body)
	}
	// bios-1 is 127.0.0.1, the test client's address: events name it.
	want := []string{"kernel_served bios-1", "initrd_served bios-1 (range bytes=10-19)"}
	if diff := cmp.Diff(want, f.events.waitKinds(t, len(want))); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	f.events.reset()
	for _, p := range []string{"/assets/escape", "/assets/..%2fsecret", "/assets/debian", "/assets/nope", "/ipxe/undionly.kpxe"} {
		code, body := f.do(t, "GET", p, nil)
		if code == http.StatusOK || strings.Contains(body, "secret") {
			t.Errorf("GET %s = %d %q, want a refusal", p, code, body)
		}
	}
	// A raw ".." path never reaches the handler: the client cleans it or
	// the mux redirects it; either way the secret stays put.
	conn, err := net.Dial("tcp", f.http.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /assets/../../secret HTTP/1.0\r\n\r\n")
	raw, _ := io.ReadAll(conn)
	if strings.Contains(string(raw), "\r\n\r\nsecret") || strings.HasPrefix(string(raw), "HTTP/1.0 200") {
		t.Errorf("raw GET /assets/../../secret answered:\n%s", raw)
	}
	if got := f.events.kinds(); len(got) != 0 {
		t.Errorf("events after refused assets = %v, want none", got)
	}
}

func TestMissingAssets(t *testing.T) {
	f := newFixture(t, nil)
	if got := f.srv.MissingAssets(); len(got) != 0 {
		t.Errorf("MissingAssets with every file present = %v, want none", got)
	}
	os.Remove(filepath.Join(f.assets, "debian", "initrd.img-6.1"))
	want := []string{"node uefi-1: debian/initrd.img-6.1 is not a file in " + f.assets}
	if diff := cmp.Diff(want, f.srv.MissingAssets()); diff != "" {
		t.Errorf("MissingAssets (-want +got):\n%s", diff)
	}
}

func TestHeadSendsNoEvent(t *testing.T) {
	f := newFixture(t, nil)
	if code, _ := f.do(t, "HEAD", "/assets/vmlinuz", nil); code != http.StatusOK {
		t.Fatalf("HEAD /assets/vmlinuz = %d, want 200", code)
	}
	// A HEAD response ends when its handler returns, so an event from it
	// would be recorded before the GET's.
	f.do(t, "GET", "/assets/vmlinuz", nil, "Range", "bytes=0-9")
	if diff := cmp.Diff([]string{"kernel_served bios-1 (range bytes=0-9)"}, f.events.waitKinds(t, 1)); diff != "" {
		t.Errorf("events after HEAD and GET (-want +got):\n%s", diff)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	f := newFixture(t, nil)
	f.do(t, "GET", "/boot/bios-1.ipxe", nil)
	f.do(t, "GET", "/assets/vmlinuz", nil)
	f.do(t, "GET", "/config/bios-1?token=bad", nil)
	code, body := f.do(t, "GET", "/healthz", nil)
	if code != 200 || body != "ok\n" {
		t.Errorf("GET /healthz = %d %q, want 200 ok", code, body)
	}
	_, m := f.do(t, "GET", "/metrics", nil)
	for _, want := range []string{
		`slipway_boot_http_requests_total{code="200",kind="script"} 1`,
		`slipway_boot_http_requests_total{code="200",kind="kernel"} 1`,
		`slipway_boot_http_requests_total{code="403",kind="config"} 1`,
		`slipway_boot_http_response_bytes_total{kind="kernel"} 4096`,
		`slipway_boot_http_request_duration_seconds_count{kind="script"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no base url", Config{}, "base url"},
		{"missing asset dir", Config{BaseURL: "http://10.0.0.1:8080", AssetDir: "/nonexistent/slipway"}, "asset directory"},
		{"missing firmware dir", Config{BaseURL: "http://10.0.0.1:8080", FirmwareDir: "/nonexistent/slipway"}, "install the ipxe package"},
	} {
		if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%s) = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestRunListensAndStops(t *testing.T) {
	s, err := New(Config{BaseURL: "http://127.0.0.1:1", Addr: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	servetest.Wait(t, s.Ready(), done)
	resp, err := http.Get("http://" + s.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// A second server on the same port must refuse with a hint.
	s2, _ := New(Config{BaseURL: "http://127.0.0.1:1", Addr: netip.MustParseAddrPort(s.Addr().String())})
	if err := s2.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "already uses the port") {
		t.Errorf("Run on a taken port = %v, want a port-taken error", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
}
