package httpboot

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// A node of a routed network is handed every URL on the provisioner
// address its network reaches: the script, kernel, initrd, config and
// phone-home. Nodes of the provisioner's own network keep BaseURL.
func TestRoutedNodeURLs(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Nodes = append(c.Nodes, inventory.Node{Name: "r3-1", Network: "r3", MAC: mac("52:54:00:79:00:10"), IP: netip.MustParseAddr("10.79.0.10"),
			Boot: inventory.Boot{Kernel: "vmlinuz", Initrd: "initrd.gz"}})
		c.Networks = []inventory.ProvisioningNetwork{{Name: "r3", Subnet: netip.MustParsePrefix("10.79.0.0/24"),
			Relays: []netip.Addr{netip.MustParseAddr("10.79.0.1")}, ProvisionerAddress: netip.MustParseAddr("10.99.0.1")}}
		c.Renderer = nil // the built-in phone-home renderer
	})
	r3 := inventory.Node{Name: "r3-1", Network: "r3"}
	local := inventory.Node{Name: "uefi-1"}
	for _, tt := range []struct{ what, got, want string }{
		{"ScriptURL(r3-1)", f.srv.ScriptURL(r3), "http://10.99.0.1:8080/boot/r3-1.ipxe"},
		{"FirmwareURL(r3-1)", f.srv.FirmwareURL(r3, "snponly.efi"), "http://10.99.0.1:8080/ipxe/snponly.efi"},
		{"ConfigURL(r3-1)", f.srv.ConfigURL(r3, "T"), "http://10.99.0.1:8080/config/r3-1?token=T"},
		{"ScriptURL(uefi-1)", f.srv.ScriptURL(local), "http://10.77.0.1:8080/boot/uefi-1.ipxe"},
		{"FirmwareURL(uefi-1)", f.srv.FirmwareURL(local, "snponly.efi"), "http://10.77.0.1:8080/ipxe/snponly.efi"},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.what, tt.got, tt.want)
		}
	}
	code, script := f.do(t, "GET", "/boot/r3-1.ipxe", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /boot/r3-1.ipxe = %d", code)
	}
	for _, want := range []string{
		"kernel http://10.99.0.1:8080/assets/vmlinuz ",
		"initrd http://10.99.0.1:8080/assets/initrd.gz",
		"slipway.config=http://10.99.0.1:8080/config/r3-1?token=",
		"phonehome=http://10.99.0.1:8080",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script of r3-1 lacks %q:\n%s", want, script)
		}
	}
	if strings.Contains(script, "10.77.0.1") {
		t.Errorf("script of r3-1 names the provisioner's own-network address 10.77.0.1, which its subnet does not reach:\n%s", script)
	}
	tok := strings.TrimPrefix(tokenRE.FindString(script), "token=")
	code, cfg := f.do(t, "GET", "/config/r3-1?token="+tok, nil)
	if code != http.StatusOK || !strings.Contains(cfg, "http://10.99.0.1:8080/phone-home/r3-1") {
		t.Errorf("GET /config/r3-1 = %d:\n%s\nwant the phone-home on http://10.99.0.1:8080", code, cfg)
	}
}

// A phone-home that declares a body over the limit and asks
// "Expect: 100-continue" gets 413 at once, not 100 Continue and then 413
// after uploading.
func TestPhoneHomeExpectContinue(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxPhoneHomeBytes = 100 })
	for _, tt := range []struct {
		length     int
		wantStatus string
	}{
		{length: 1 << 20, wantStatus: "HTTP/1.1 413 "},
		{length: 20, wantStatus: "HTTP/1.1 100 Continue"},
	} {
		c, err := net.Dial("tcp", strings.TrimPrefix(f.http.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "POST /phone-home/uefi-1 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", tt.length)
		br := bufio.NewReader(c)
		status, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("POST with Content-Length %d and Expect: 100-continue: no answer before the body: %v", tt.length, err)
		}
		if !strings.HasPrefix(status, tt.wantStatus) {
			t.Errorf("POST with Content-Length %d and Expect: 100-continue: first answer %q, want %q", tt.length, strings.TrimSpace(status), tt.wantStatus)
			continue
		}
		if tt.length > 100 {
			continue
		}
		// Accepted: send the body, the real answer follows.
		io.WriteString(c, strings.Repeat("x", tt.length))
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("after the body: %v", err)
			}
			if strings.HasPrefix(line, "HTTP/1.1 ") {
				if !strings.HasPrefix(line, "HTTP/1.1 200 ") {
					t.Errorf("after a %d-byte body: %q, want 200", tt.length, strings.TrimSpace(line))
				}
				break
			}
		}
	}
}
