//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
	"github.com/slipway-dev/slipway/test/e2e/lab"
)

// BenchmarkRealBootBIOS measures a real network boot, from QEMU power-on
// (SeaBIOS + iPXE ROM) to the node image's phone-home, served once by
// Slipway's boot services and once by the tuned dnsmasq setup from the
// field notes (no-ping, router advertisements, iPXE option 175.176, with
// the lab's HTTP server for the script, images and a config of the same
// kind), one after the other, alternating which goes first. Each iteration
// boots one VM with each; run it with -benchtime=5x for five pairs. It
// reports both mean times and their ratio (slipway/dnsmasq: below 1 is
// faster than dnsmasq), and the same for the server-bound part of the boot
// (power-on to the initrd sent).
func BenchmarkRealBootBIOS(b *testing.B) {
	img := requireImage(b)
	var r bootResults
	for i := 0; b.Loop(); i++ {
		order := []string{"slipway", "dnsmasq"}
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, who := range order {
			l := requireLab(b)
			boot := prepareBIOSBoot(b, l, img, who, "52:54:00:77:00:10", "10.77.0.10")
			p, err := boot(b.Context())
			l.Stop()
			if err != nil {
				b.Fatal(err)
			}
			r.add(who, p)
		}
	}
	r.report(b, "one after the other")
}

// BenchmarkRealBootBIOSPaired is BenchmarkRealBootBIOS with both VMs
// booting at the same moment, each on a lab network of its own (Slipway on
// 10.77.0.0/24, dnsmasq on 10.78.0.0/24), so both see the same load from
// whatever else runs on the machine: on a shared 2-core machine that noise
// is larger than the difference being measured.
func BenchmarkRealBootBIOSPaired(b *testing.B) {
	img := requireImage(b)
	var r bootResults
	for b.Loop() {
		// dnsmasq first: it binds port 67 before it binds to its interface,
		// which would clash with a socket already bound to another one.
		ld := requireLabWith(b, lab.Config{Prefix: netip.MustParsePrefix("10.78.0.1/24"), Prefix6: netip.MustParsePrefix("fd78::1/64")})
		bootD := prepareBIOSBoot(b, ld, img, "dnsmasq", "52:54:00:78:00:10", "10.78.0.10")
		ls := requireLab(b)
		bootS := prepareBIOSBoot(b, ls, img, "slipway", "52:54:00:77:00:10", "10.77.0.10")
		var wg sync.WaitGroup
		var pd, ps bootPhases
		var errD, errS error
		wg.Go(func() { pd, errD = bootD(b.Context()) })
		wg.Go(func() { ps, errS = bootS(b.Context()) })
		wg.Wait()
		ls.Stop()
		ld.Stop()
		if errD != nil || errS != nil {
			b.Fatal(errS, errD)
		}
		r.add("dnsmasq", pd)
		r.add("slipway", ps)
	}
	r.report(b, "both at once")
}

// prepareBIOSBoot starts who's servers ("slipway" or "dnsmasq") on l and
// adds a BIOS VM with mac; the returned function powers it on and returns
// the times of its boot's phases. The servers stop with l.
func prepareBIOSBoot(b *testing.B, l *lab.Lab, img lab.NodeImage, who, mac, ip string) func(context.Context) (bootPhases, error) {
	vm := newVM(b, l, "bench-"+who, lab.FirmwareBIOS, mac)
	if who == "slipway" {
		s := startSlipway(b, l, img, true)
		return func(ctx context.Context) (bootPhases, error) {
			defer s.Stop()
			ctx, cancel := context.WithTimeout(ctx, bootTimeout)
			defer cancel()
			if err := vm.PowerOn(ctx); err != nil {
				return bootPhases{}, err
			}
			ev, err := s.waitBooted(ctx, "bios-1")
			if err != nil {
				return bootPhases{}, fmt.Errorf("slipway boot: %w\nconsole:\n%s", err, vm.Console())
			}
			p := bootPhases{phoneHome: ev.Time.Sub(vm.PoweredOnAt()), uptime: guestUptime(ev.Detail)}
			for _, e := range s.Events() {
				switch {
				case e.Kind == bootevent.ScriptServed && p.script == 0:
					p.script = e.Time.Sub(vm.PoweredOnAt())
				case e.Kind == bootevent.InitrdServed && p.initrd == 0:
					p.initrd = e.Time.Sub(vm.PoweredOnAt())
				}
			}
			return p, nil
		}
	}
	bs, err := l.StartBootServer(b.Context(), img, 8080)
	if err != nil {
		b.Fatal(err)
	}
	hw, _ := net.ParseMAC(mac)
	if _, err := l.StartDnsmasq(b.Context(), lab.DnsmasqConfig{
		Hosts:     []lab.Reservation{{MAC: hw, IP: mustAddr(ip)}},
		ScriptURL: bs.ScriptURL(),
	}); err != nil {
		b.Fatal(err)
	}
	return func(ctx context.Context) (bootPhases, error) {
		ctx, cancel := context.WithTimeout(ctx, bootTimeout)
		defer cancel()
		if err := vm.PowerOn(ctx); err != nil {
			return bootPhases{}, err
		}
		ph, err := bs.WaitPhoneHome(ctx, hw)
		if err != nil {
			return bootPhases{}, fmt.Errorf("dnsmasq boot: %w\nconsole:\n%s", err, vm.Console())
		}
		p := bootPhases{phoneHome: ph.Time.Sub(vm.PoweredOnAt()), uptime: guestUptime(ph.Query)}
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
// uptime is the guest kernel's uptime at the phone-home, as it reports it.
type bootPhases struct {
	script, initrd, phoneHome, uptime time.Duration
}

// guestUptime reads uptime=SECONDS from a phone-home query.
func guestUptime(query string) time.Duration {
	v, err := url.ParseQuery(query)
	if err != nil {
		return 0
	}
	f, err := strconv.ParseFloat(v.Get("uptime"), 64)
	if err != nil {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

// bootResults collects the phases of each server's boots.
type bootResults struct {
	phases map[string][]bootPhases
}

func (r *bootResults) add(who string, p bootPhases) {
	if r.phases == nil {
		r.phases = map[string][]bootPhases{}
	}
	r.phases[who] = append(r.phases[who], p)
}

// report prints a table and reports the mean phone-home of each server and
// the ratios (slipway/dnsmasq) of the phone-home and initrd-sent means.
func (r *bootResults) report(b *testing.B, how string) {
	col := func(who string, f func(bootPhases) time.Duration) []time.Duration {
		var ds []time.Duration
		for _, p := range r.phases[who] {
			ds = append(ds, f(p))
		}
		return ds
	}
	ph := func(p bootPhases) time.Duration { return p.phoneHome }
	ini := func(p bootPhases) time.Duration { return p.initrd }
	scr := func(p bootPhases) time.Duration { return p.script }
	up := func(p bootPhases) time.Duration { return p.uptime }
	so, sp := mean(col("slipway", ph)), mean(col("dnsmasq", ph))
	io, ip := mean(col("slipway", ini)), mean(col("dnsmasq", ini))
	b.ReportMetric(so.Seconds(), "slipway-s/boot")
	b.ReportMetric(sp.Seconds(), "dnsmasq-s/boot")
	b.ReportMetric(so.Seconds()/sp.Seconds(), "slipway/dnsmasq")
	// Up to the initrd, the time is the servers' (DHCP, IPv6 RA, HTTP);
	// after it, the guest kernel's under TCG, which is where the noise is.
	b.ReportMetric(io.Seconds()/ip.Seconds(), "initrd-slipway/dnsmasq")
	var t strings.Builder
	fmt.Fprintf(&t, "QEMU BIOS power-on to phone-home (TCG), %d boots each, %s\n", len(r.phases["slipway"]), how)
	fmt.Fprintf(&t, "%-8s %-32s %6s | %-26s | %-26s %6s | %s\n", "server", "phone-home (s)", "mean", "script sent (s)", "initrd sent (s)", "mean", "guest uptime at phone-home (s)")
	for _, who := range []string{"slipway", "dnsmasq"} {
		fmt.Fprintf(&t, "%-8s %-32s %6.2f | %-26s | %-26s %6.2f | %s\n", who,
			seconds(col(who, ph)), mean(col(who, ph)).Seconds(), seconds(col(who, scr)), seconds(col(who, ini)), mean(col(who, ini)).Seconds(), seconds(col(who, up)))
	}
	fmt.Fprintf(&t, "ratio slipway/dnsmasq: phone-home %.2f (target: <= 1), initrd sent %.2f", so.Seconds()/sp.Seconds(), io.Seconds()/ip.Seconds())
	b.Log(t.String())
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
