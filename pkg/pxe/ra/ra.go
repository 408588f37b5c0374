package ra

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// DefaultInterval is how often an unsolicited advertisement is sent.
const DefaultInterval = 30 * time.Second

// Config configures an Advertiser.
type Config struct {
	// Interface is the provisioning interface. Required. It needs an IPv6
	// link-local address; its other /64 prefixes are advertised for
	// stateless autoconfiguration.
	Interface string
	// Interval is the period of unsolicited advertisements (default
	// DefaultInterval). Router solicitations are answered at once.
	Interval time.Duration
	// Log receives diagnostics (nil: discard).
	Log *slog.Logger
}

// Status says whether an Advertiser is advertising.
type Status string

// Statuses.
const (
	// StatusStarting: Run has not tried to listen yet.
	StatusStarting Status = "starting"
	// StatusWaiting: the interface has no usable IPv6 link-local address
	// yet (none, or still tentative during duplicate address detection, the
	// first seconds after a link comes up); Run retries until it has one.
	StatusWaiting Status = "waiting"
	// StatusOn: advertising and answering solicitations.
	StatusOn Status = "on"
	// StatusOff: advertisements are impossible (no privilege for the ICMPv6
	// socket); boots still work, iPXE waits ~16 s for IPv6.
	StatusOff Status = "off"
)

// Advertiser sends router advertisements on one interface.
type Advertiser struct {
	cfg       Config
	log       *slog.Logger
	ready     chan struct{}
	readyOnce sync.Once

	mu     sync.Mutex
	status Status
}

// Ready is closed once Run knows the Status: advertising, waiting for the
// link-local address (it goes on retrying), or off.
func (a *Advertiser) Ready() <-chan struct{} { return a.ready }

// Status returns whether advertisements are on, off, or waiting for the
// interface's link-local address.
func (a *Advertiser) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

func (a *Advertiser) setStatus(st Status) {
	a.mu.Lock()
	a.status = st
	a.mu.Unlock()
	a.readyOnce.Do(func() { close(a.ready) })
}

// Retry pacing while the link-local address is not usable: DAD takes about
// a second (one probe, RetransTimer 1 s, plus up to a second of delay).
const (
	retryFirst = 100 * time.Millisecond
	retryMax   = 2 * time.Second
	// slowLinkLocal is how long a wait is normal before it is a warning.
	slowLinkLocal = 15 * time.Second
)

// New checks cfg; Run starts advertising.
func New(cfg Config) (*Advertiser, error) {
	if cfg.Interface == "" {
		return nil, errors.New("router advertisements: no interface")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	a := &Advertiser{cfg: cfg, log: cfg.Log, ready: make(chan struct{}), status: StatusStarting}
	if a.log == nil {
		a.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return a, nil
}

// Message returns the advertisement for ifi: router lifetime 0, no managed
// or other configuration, the interface's non-link-local /64 prefixes, and
// its link-layer address.
func Message(ifi *net.Interface, addrs []net.Addr) *ndp.RouterAdvertisement {
	m := &ndp.RouterAdvertisement{CurrentHopLimit: 64}
	seen := map[netip.Prefix]bool{}
	for _, a := range addrs {
		pn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(pn.IP)
		if !ok || !ip.Is6() || ip.Is4In6() || ip.IsLinkLocalUnicast() {
			continue
		}
		ones, _ := pn.Mask.Size()
		if ones != 64 {
			continue
		}
		p := netip.PrefixFrom(ip, 64).Masked()
		if seen[p] {
			continue
		}
		seen[p] = true
		m.Options = append(m.Options, &ndp.PrefixInformation{
			PrefixLength:                   64,
			OnLink:                         true,
			AutonomousAddressConfiguration: true,
			ValidLifetime:                  time.Hour,
			PreferredLifetime:              30 * time.Minute,
			Prefix:                         p.Addr(),
		})
	}
	if len(ifi.HardwareAddr) > 0 {
		m.Options = append(m.Options, &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr})
	}
	return m
}

// Run advertises until ctx is done and returns nil then. It returns an error
// when the interface is missing. While the interface has no usable
// link-local address (none yet, or tentative during duplicate address
// detection) it retries, so a link that came up a moment ago gets
// advertisements as soon as it can; when the ICMPv6 socket is refused
// (no CAP_NET_RAW) it logs a warning and waits for ctx, since boots work
// without advertisements.
func (a *Advertiser) Run(ctx context.Context) error {
	ifi, err := net.InterfaceByName(a.cfg.Interface)
	if err != nil {
		return fmt.Errorf("router advertisements on %s: %w", a.cfg.Interface, err)
	}
	c, err := a.listen(ctx, ifi)
	if err != nil {
		// Boots still work without advertisements, only ~16 s slower in
		// iPXE, so this is a warning rather than a reason to stop serving.
		a.log.Warn("router advertisements off: iPXE will wait ~16 s for IPv6 autoconfiguration",
			"interface", a.cfg.Interface, "err", err,
			"fix", "run with CAP_NET_RAW, or set network.routerAdvertisements: false")
		a.setStatus(StatusOff)
		<-ctx.Done()
		return nil
	}
	if c == nil {
		return nil // ctx ended while waiting
	}
	defer c.Close()
	if err := c.JoinGroup(netip.MustParseAddr("ff02::2")); err != nil {
		return fmt.Errorf("router advertisements on %s: join all-routers group: %w", a.cfg.Interface, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	if err := c.SetICMPFilter(&f); err != nil {
		return fmt.Errorf("router advertisements on %s: icmp filter: %w", a.cfg.Interface, err)
	}
	allNodes := netip.MustParseAddr("ff02::1")
	send := func() {
		addrs, err := ifi.Addrs()
		if err != nil {
			a.log.Warn("router advertisement: interface addresses", "err", err)
			return
		}
		if err := c.WriteTo(Message(ifi, addrs), nil, allNodes); err != nil {
			a.log.Warn("router advertisement send failed", "err", err)
		}
	}
	a.log.Info("router advertisements on", "interface", a.cfg.Interface)
	a.setStatus(StatusOn)
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()
	go func() {
		t := time.NewTicker(a.cfg.Interval)
		defer t.Stop()
		send()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				send()
			}
		}
	}()
	for {
		msg, _, from, err := c.ReadFrom()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("router advertisements on %s: %w", a.cfg.Interface, err)
			}
			// A malformed ICMPv6 message is the sender's problem.
			a.log.Debug("router advertisement: read", "err", err)
			continue
		}
		if _, ok := msg.(*ndp.RouterSolicitation); ok {
			a.log.Debug("router solicitation", "from", from.String())
			send()
		}
	}
}

// listen opens the NDP socket on ifi's link-local address, retrying while
// the address is missing or tentative. It returns a nil Conn and nil error
// when ctx ends first, and an error only for a refusal that retrying
// cannot cure (no privilege).
func (a *Advertiser) listen(ctx context.Context, ifi *net.Interface) (*ndp.Conn, error) {
	delay := retryFirst
	start, warned := time.Now(), false
	for {
		c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
		if err == nil {
			return c, nil
		}
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return nil, err
		}
		if a.Status() != StatusWaiting {
			a.log.Info("router advertisements waiting for a usable IPv6 link-local address (duplicate address detection runs for a few seconds after a link comes up)",
				"interface", a.cfg.Interface, "err", err)
			a.setStatus(StatusWaiting)
		}
		if !warned && time.Since(start) > slowLinkLocal {
			warned = true
			a.log.Warn("router advertisements still waiting: the interface has no usable IPv6 link-local address; iPXE waits ~16 s for IPv6 until it has one",
				"interface", a.cfg.Interface, "waited", time.Since(start).Round(time.Second).String(), "err", err,
				"fix", "check that IPv6 is enabled on the interface (disable_ipv6=0) and that it has carrier, or set network.routerAdvertisements: false")
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil
		case <-t.C:
		}
		delay = min(2*delay, retryMax)
	}
}
