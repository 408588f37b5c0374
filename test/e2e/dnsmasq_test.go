//go:build e2e

package e2e

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/test/e2e/lab"
)

// TestLabWithDnsmasq proves the lab itself, with dnsmasq as the DHCP/TFTP
// server and the lab's own HTTP boot server: every firmware path reaches
// the phone-home. It is the reference the Slipway tests are compared to.
func TestLabWithDnsmasq(t *testing.T) {
	for _, tc := range []struct {
		fw  lab.Firmware
		mac string
		ip  string
	}{
		{lab.FirmwareBIOS, "52:54:00:77:01:10", "10.77.0.10"},
		{lab.FirmwareUEFI, "52:54:00:77:01:11", "10.77.0.11"},
		{lab.FirmwareUEFIPXE, "52:54:00:77:01:12", "10.77.0.12"},
	} {
		t.Run(string(tc.fw), func(t *testing.T) {
			l := requireLab(t)
			img := requireImage(t)
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			bs, err := l.StartBootServer(ctx, img, 8080)
			if err != nil {
				t.Fatal(err)
			}
			mac, _ := net.ParseMAC(tc.mac)
			if _, err := l.StartDnsmasq(ctx, lab.DnsmasqConfig{
				Hosts:     []lab.Reservation{{MAC: mac, IP: mustAddr(tc.ip)}},
				TFTPRoot:  tftpRoot(t),
				ScriptURL: bs.ScriptURL(),
			}); err != nil {
				t.Fatal(err)
			}
			vm := newVM(t, l, "dnsmasq-"+string(tc.fw), tc.fw, tc.mac)
			if err := vm.PowerOn(ctx); err != nil {
				t.Fatal(err)
			}
			ph, err := bs.WaitPhoneHome(ctx, mac)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: power-on to phone-home %.2f s from %s", tc.fw, ph.Time.Sub(vm.PoweredOnAt()).Seconds(), ph.Remote)
			if ph.Remote != mustAddr(tc.ip) {
				t.Errorf("phone-home from %s came from %s, want the inventory address %s", tc.mac, ph.Remote, tc.ip)
			}
		})
	}
}
