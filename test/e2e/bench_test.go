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
	var ours, peer []time.Duration
	for i := 0; b.Loop(); i++ {
		order := []string{"slipway", "dnsmasq"}
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, who := range order {
			d, err := bootBIOSOnce(b, img, who)
			if err != nil {
				b.Fatal(err)
			}
			if who == "slipway" {
				ours = append(ours, d)
			} else {
				peer = append(peer, d)
			}
		}
	}
	mo, mp := mean(ours), mean(peer)
	b.ReportMetric(mo.Seconds(), "slipway-s/boot")
	b.ReportMetric(mp.Seconds(), "dnsmasq-s/boot")
	b.ReportMetric(mo.Seconds()/mp.Seconds(), "slipway/dnsmasq")
	var t strings.Builder
	fmt.Fprintf(&t, "QEMU BIOS power-on to phone-home (TCG), %d boots each\n", len(ours))
	fmt.Fprintf(&t, "%-10s %-30s %8s\n", "server", "boots (s)", "mean (s)")
	fmt.Fprintf(&t, "%-10s %-30s %8.2f\n", "slipway", seconds(ours), mo.Seconds())
	fmt.Fprintf(&t, "%-10s %-30s %8.2f\n", "dnsmasq", seconds(peer), mp.Seconds())
	fmt.Fprintf(&t, "ratio slipway/dnsmasq = %.2f (target: <= 1)", mo.Seconds()/mp.Seconds())
	b.Log(t.String())
}

// bootBIOSOnce boots one BIOS VM in a fresh lab from who ("slipway" or
// "dnsmasq") and returns power-on to phone-home.
func bootBIOSOnce(b *testing.B, img lab.NodeImage, who string) (time.Duration, error) {
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
			return 0, err
		}
		ev, err := s.waitBooted(ctx, "bios-1")
		if err != nil {
			return 0, fmt.Errorf("slipway boot: %w\nconsole:\n%s", err, vm.Console())
		}
		return ev.Time.Sub(vm.PoweredOnAt()), nil
	default:
		bs, err := l.StartBootServer(ctx, img, 8080)
		if err != nil {
			return 0, err
		}
		hw, _ := net.ParseMAC(mac)
		if _, err := l.StartDnsmasq(ctx, lab.DnsmasqConfig{
			Hosts:     []lab.Host{{MAC: hw, IP: mustAddr(ip)}},
			ScriptURL: bs.ScriptURL(),
		}); err != nil {
			return 0, err
		}
		if err := vm.PowerOn(ctx); err != nil {
			return 0, err
		}
		ph, err := bs.WaitPhoneHome(ctx, hw)
		if err != nil {
			return 0, fmt.Errorf("dnsmasq boot: %w\nconsole:\n%s", err, vm.Console())
		}
		return ph.Time.Sub(vm.PoweredOnAt()), nil
	}
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
