//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
	"github.com/slipway-dev/slipway/test/e2e/lab"
)

// BenchmarkRealBootBIOS measures a real network boot, from QEMU power-on
// (SeaBIOS + iPXE ROM) to the node image's phone-home, served once by
// Slipway's boot services and once by the tuned dnsmasq setup from the
// field notes (no-ping, router advertisements, iPXE option 175.176, with
// the lab's HTTP server for the script and images), in the same run and
// alternating which goes first. Each iteration boots one VM with each; run
// it with -benchtime=3x for three pairs. It reports both mean times and
// their ratio (slipway/dnsmasq: below 1 is faster than dnsmasq).
func BenchmarkRealBootBIOS(b *testing.B) {
	img := requireImage(b)
	var ours, peer, oursScript, peerScript, oursInitrd, peerInitrd []time.Duration
	for i := 0; b.Loop(); i++ {
		order := []string{"slipway", "dnsmasq"}
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, who := range order {
			p, err := bootBIOSOnce(b, img, who)
			if err != nil {
				b.Fatal(err)
			}
			if who == "slipway" {
				ours, oursScript, oursInitrd = append(ours, p.phoneHome), append(oursScript, p.script), append(oursInitrd, p.initrd)
			} else {
				peer, peerScript, peerInitrd = append(peer, p.phoneHome), append(peerScript, p.script), append(peerInitrd, p.initrd)
			}
		}
	}
	mo, mp := mean(ours), mean(peer)
	b.ReportMetric(mo.Seconds(), "slipway-s/boot")
	b.ReportMetric(mp.Seconds(), "dnsmasq-s/boot")
	b.ReportMetric(mo.Seconds()/mp.Seconds(), "slipway/dnsmasq")
	// Up to the initrd, the time is the servers' (DHCP, IPv6 RA, HTTP);
	// after it, the guest kernel's under TCG, which is where the noise is.
	io, ip := mean(oursInitrd), mean(peerInitrd)
	b.ReportMetric(io.Seconds()/ip.Seconds(), "initrd-slipway/dnsmasq")
	var t strings.Builder
	fmt.Fprintf(&t, "QEMU BIOS power-on to phone-home (TCG), %d boots each\n", len(ours))
	fmt.Fprintf(&t, "%-8s %-24s %6s | %-20s | %-20s %6s\n", "server", "phone-home (s)", "mean", "script fetched (s)", "initrd sent (s)", "mean")
	fmt.Fprintf(&t, "%-8s %-24s %6.2f | %-20s | %-20s %6.2f\n", "slipway", seconds(ours), mo.Seconds(), seconds(oursScript), seconds(oursInitrd), io.Seconds())
	fmt.Fprintf(&t, "%-8s %-24s %6.2f | %-20s | %-20s %6.2f\n", "dnsmasq", seconds(peer), mp.Seconds(), seconds(peerScript), seconds(peerInitrd), ip.Seconds())
	fmt.Fprintf(&t, "ratio slipway/dnsmasq: phone-home %.2f (target: <= 1), initrd sent %.2f", mo.Seconds()/mp.Seconds(), io.Seconds()/ip.Seconds())
	b.Log(t.String())
}

// bootBIOSOnce boots one BIOS VM in a fresh lab from who ("slipway" or
// "dnsmasq") and returns the times of its phases.
func bootBIOSOnce(b *testing.B, img lab.NodeImage, who string) (bootPhases, error) {
	const mac, ip = "52:54:00:77:00:10", "10.77.0.10"
	l := requireLab(b)
	defer l.Stop()
	ctx, cancel := context.WithTimeout(b.Context(), bootTimeout)
	defer cancel()
	vm := newVM(b, l, "bench-"+who, lab.FirmwareBIOS, mac)
	switch who {
	case "slipway":
		s := startSlipway(b, l, img, true)
		defer s.Stop()
		if err := vm.PowerOn(ctx); err != nil {
			return bootPhases{}, err
		}
		ev, err := s.waitBooted(ctx, "bios-1")
		if err != nil {
			return bootPhases{}, fmt.Errorf("slipway boot: %w\nconsole:\n%s", err, vm.Console())
		}
		p := bootPhases{phoneHome: ev.Time.Sub(vm.PoweredOnAt())}
		for _, e := range s.Events() {
			switch {
			case e.Kind == bootevent.ScriptServed && p.script == 0:
				p.script = e.Time.Sub(vm.PoweredOnAt())
			case e.Kind == bootevent.InitrdServed && p.initrd == 0:
				p.initrd = e.Time.Sub(vm.PoweredOnAt())
			}
		}
		return p, nil
	default:
		bs, err := l.StartBootServer(ctx, img, 8080)
		if err != nil {
			return bootPhases{}, err
		}
		hw, _ := net.ParseMAC(mac)
		if _, err := l.StartDnsmasq(ctx, lab.DnsmasqConfig{
			Hosts:     []lab.Reservation{{MAC: hw, IP: mustAddr(ip)}},
			ScriptURL: bs.ScriptURL(),
		}); err != nil {
			return bootPhases{}, err
		}
		if err := vm.PowerOn(ctx); err != nil {
			return bootPhases{}, err
		}
		ph, err := bs.WaitPhoneHome(ctx, hw)
		if err != nil {
			return bootPhases{}, fmt.Errorf("dnsmasq boot: %w\nconsole:\n%s", err, vm.Console())
		}
		p := bootPhases{phoneHome: ph.Time.Sub(vm.PoweredOnAt())}
		for _, r := range bs.Requests() {
			switch {
			case r.Path == "/boot.ipxe" && p.script == 0:
				p.script = r.Time.Sub(vm.PoweredOnAt())
			case r.Path == "/initrd.gz" && p.initrd == 0:
				p.initrd = r.Time.Sub(vm.PoweredOnAt())
			}
		}
		return p, nil
	}
}

// bootPhases are times after power-on: the iPXE script sent (DHCP and IPv6
// autoconfiguration done), the initrd sent in full (the last file the
// server sends), and the node image's phone-home.
type bootPhases struct {
	script, initrd, phoneHome time.Duration
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

func seconds(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%.2f", d.Seconds()))
	}
	return strings.Join(parts, " ")
}
