//go:build e2e

package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Reservation is a machine the DHCP peer knows: its MAC and fixed address.
type Reservation struct {
	MAC net.HardwareAddr
	IP  netip.Addr
}

// DnsmasqConfig configures dnsmasq as the DHCP and TFTP peer: the stand-in
// for Slipway's own boot services, and the comparison in the boot benchmark.
type DnsmasqConfig struct {
	// Hosts are the only clients answered (dhcp-host, dhcp-ignore=tag:!known).
	Hosts []Reservation
	// TFTPRoot serves undionly.kpxe and snponly.efi; empty disables TFTP.
	TFTPRoot string
	// ScriptURL is handed to clients that are already iPXE (option 175).
	ScriptURL string
	// Untuned leaves out the three settings that each cost a boot 3-16 s
	// (no-ping, IPv6 router advertisements, iPXE option 175.176), to show
	// what they are worth.
	Untuned bool
	// AddressesOnly makes dnsmasq a plain site DHCP server: addresses for
	// Hosts, no boot information, no router advertisements (a provisioner
	// in proxy mode adds the boot information).
	AddressesOnly bool
	// On runs dnsmasq on another host of the lab (its interface and
	// address) instead of on the bridge next to the code under test.
	On *Host
}

// StartDnsmasq runs dnsmasq in the foreground on the bridge (DHCP, TFTP
// when TFTPRoot is set, and IPv6 router advertisements unless Untuned).
func (l *Lab) StartDnsmasq(ctx context.Context, cfg DnsmasqConfig) (*Process, error) {
	p := l.cfg.Prefix
	iface, label := l.bridge, "dnsmasq"
	if cfg.On != nil {
		iface, label = cfg.On.dev, "dnsmasq-"+cfg.On.name
		p = netip.PrefixFrom(cfg.On.Addr(), cfg.On.addr.Bits())
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("port=0")
	w("interface=%s", iface)
	w("bind-interfaces")
	w("user=root") // t.TempDir() is 0700: the default user nobody could not read the TFTP root
	w("dhcp-range=%s,static,%s,1h", p.Masked().Addr(), net.IP(net.CIDRMask(p.Bits(), 32)))
	w("dhcp-leasefile=%s", filepath.Join(l.cfg.Dir, label+".leases"))
	w("log-dhcp")
	w("log-facility=-")
	for _, h := range cfg.Hosts {
		w("dhcp-host=%s,%s", h.MAC, h.IP)
	}
	w("dhcp-ignore=tag:!known")
	if cfg.AddressesOnly {
		w("no-ping")
		return l.writeAndStartDnsmasq(ctx, cfg.On, label, b.String())
	}
	w("dhcp-match=set:ipxe,175")
	w("dhcp-match=set:efi64,option:client-arch,7")
	w("dhcp-match=set:efi64,option:client-arch,9")
	w("dhcp-boot=tag:ipxe,%s", cfg.ScriptURL)
	if cfg.TFTPRoot != "" {
		w("enable-tftp")
		w("tftp-root=%s", cfg.TFTPRoot)
		w("dhcp-boot=tag:!ipxe,tag:efi64,snponly.efi,,%s", p.Addr())
		w("dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe,,%s", p.Addr())
	}
	if !cfg.Untuned {
		w("no-ping")
		w("enable-ra")
		w("dhcp-range=::,constructor:%s,ra-only", iface)
		w("dhcp-option=tag:ipxe,encap:175,176,1b")
	}
	return l.writeAndStartDnsmasq(ctx, cfg.On, label, b.String())
}

func (l *Lab) writeAndStartDnsmasq(ctx context.Context, on *Host, label, conf string) (*Process, error) {
	path := filepath.Join(l.cfg.Dir, label+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("start %s: %w", label, err)
	}
	return l.startDnsmasq(ctx, on, label, path)
}

// StartRouterAdvertisements runs a dnsmasq that only sends IPv6 router
// advertisements on the bridge (no DHCP, no DNS: it opens no UDP port), so
// iPXE does not wait ~16 s for IPv6 autoconfiguration when the DHCP server
// under test sends none itself.
func (l *Lab) StartRouterAdvertisements(ctx context.Context) (*Process, error) {
	conf := filepath.Join(l.cfg.Dir, "dnsmasq-ra.conf")
	text := fmt.Sprintf("port=0\ninterface=%s\nbind-interfaces\nuser=root\nlog-facility=-\nenable-ra\ndhcp-range=::,constructor:%s,ra-only\ndhcp-leasefile=%s\n",
		l.bridge, l.bridge, filepath.Join(l.cfg.Dir, "dnsmasq-ra.leases"))
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, fmt.Errorf("start router advertisements: %w", err)
	}
	return l.startDnsmasq(ctx, nil, "dnsmasq-ra", conf)
}

func (l *Lab) startDnsmasq(ctx context.Context, on *Host, label, conf string) (*Process, error) {
	args := []string{"--keep-in-foreground", "--conf-file=" + conf, "--pid-file=" + filepath.Join(l.cfg.Dir, label+".pid")}
	cmd := l.Command("dnsmasq", args...)
	if on != nil {
		cmd = on.Command("dnsmasq", args...)
	}
	p, err := l.StartProcess(label, cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", label, err)
	}
	// dnsmasq exits at once on a bad configuration or a taken port; give
	// it a moment so that shows up here rather than as a silent VM.
	select {
	case <-p.Done():
		log, _ := os.ReadFile(filepath.Join(l.cfg.Dir, label+".log"))
		return nil, fmt.Errorf("start %s: exited: %v: %s", label, p.Err(), strings.TrimSpace(string(log)))
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return p, nil
}
