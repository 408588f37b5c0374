package pxe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
	"github.com/slipway-dev/slipway/pkg/pxe/dhcp"
	"github.com/slipway-dev/slipway/pkg/pxe/httpboot"
	"github.com/slipway-dev/slipway/pkg/pxe/ra"
	"github.com/slipway-dev/slipway/pkg/pxe/tftp"
)

// Config configures the boot services of one inventory.
type Config struct {
	// Inventory is the loaded inventory; its network section says where to
	// serve and its enabled nodes are the only clients answered. Required.
	Inventory *inventory.Inventory
	// TFTPRoot holds the iPXE binaries (default tftp.DefaultRoot, where
	// Debian's ipxe package puts them). Also served over HTTP under /ipxe/.
	TFTPRoot string
	// AssetDir holds the kernels, initrds and images the profiles name.
	AssetDir string
	// Renderer produces each node's configuration (default
	// httpboot.PhoneHomeRenderer).
	Renderer httpboot.Renderer
	// ScriptTemplate replaces the built-in iPXE script template (see
	// httpboot.ScriptData for what it sees; empty: built-in).
	ScriptTemplate string
	// NextAction answers a node's phone-home (default httpboot.DefaultNextAction).
	NextAction func(node inventory.Node) string
	// DHCPPort, DHCPClientPort and TFTPPort override the ports (defaults
	// 67, 68 and 69), for labs on high ports.
	DHCPPort, DHCPClientPort, TFTPPort uint16
	// HTTPPort overrides the boot HTTP port (default: the inventory's
	// network.provisioner.httpPort); see ServedHTTPPort.
	HTTPPort uint16
	// DHCPListenAddr is the address the DHCP socket binds (default 0.0.0.0,
	// which receiving broadcasts needs). Tests bind 127.0.0.1 so a relay on
	// another loopback address can use the same port.
	DHCPListenAddr netip.Addr
	// Listeners are sockets the caller bound for the services (tests and
	// the demo bind port 0 first and hand them over, so no port is probed
	// and released). A nil field: the service binds its own from the ports
	// above.
	Listeners Listeners
	// SkipInterfaceCheck skips checking that network.provisioner.interface exists and
	// carries network.provisioner.address (tests on loopback).
	SkipInterfaceCheck bool
	// Bus receives every event (default: a new bus, see Services.Bus).
	Bus *bootevent.Bus
	// Registry receives the metrics served at /metrics (default: a new one).
	Registry *prometheus.Registry
	// Log receives diagnostics and one line per event (nil: discard).
	Log *slog.Logger
}

// Listeners are bound sockets handed to the boot services. Each one is
// closed by the service that takes it when its Run ends.
type Listeners struct {
	// DHCP is the DHCP server socket (port 67 on a real network). It must
	// be able to broadcast where clients are not relayed.
	DHCP net.PacketConn
	// DHCPProxy is the PXE boot server socket of proxy mode (port 4011);
	// with DHCP given and DHCPProxy nil, proxy mode serves DHCP only.
	DHCPProxy net.PacketConn
	// TFTP is the TFTP socket (port 69).
	TFTP net.PacketConn
	// HTTP is the boot HTTP listener. Its port is the one written into the
	// URLs handed to nodes.
	HTTP net.Listener
}

// ServedHTTPPort returns the boot HTTP port the services listen on and write
// into every URL handed to nodes: the port of Listeners.HTTP, else
// HTTPPort, else the inventory's network.provisioner.httpPort, else
// httpboot.DefaultPort. A listener whose port differs from a non-zero
// HTTPPort is an error.
func (c Config) ServedHTTPPort() (uint16, error) {
	port := c.HTTPPort
	if c.Listeners.HTTP != nil {
		lp := listenerPort(c.Listeners.HTTP.Addr())
		if port != 0 && port != lp {
			return 0, fmt.Errorf("boot services: the HTTP listener is on port %d but the HTTP port is set to %d", lp, port)
		}
		return lp, nil
	}
	if port == 0 && c.Inventory != nil {
		port = c.Inventory.Network.HTTPPort
	}
	if port == 0 {
		port = httpboot.DefaultPort
	}
	return port, nil
}

// BaseURL returns the boot HTTP server's URL as nodes reach it, such as
// http://10.40.0.2:8080: the provisioner's address on the provisioning
// network and ServedHTTPPort. A node config that phones home uses it.
func (c Config) BaseURL() (string, error) {
	if c.Inventory == nil {
		return "", errors.New("boot services: no inventory")
	}
	port, err := c.ServedHTTPPort()
	if err != nil {
		return "", err
	}
	return "http://" + net.JoinHostPort(c.Inventory.Network.Address.String(), strconv.Itoa(int(port))), nil
}

func listenerPort(a net.Addr) uint16 {
	switch a := a.(type) {
	case *net.TCPAddr:
		return uint16(a.Port)
	case *net.UDPAddr:
		return uint16(a.Port)
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Port()
	}
	return 0
}

// Services are the boot services of one inventory.
type Services struct {
	inv  *inventory.Inventory
	bus  *bootevent.Bus
	dhcp *dhcp.Server
	tftp *tftp.Server
	http *httpboot.Server
	ra   *ra.Advertiser
	log  *slog.Logger

	// ready closes once every service is ready; stopped once Run returned.
	readyOnce sync.Once
	ready     chan struct{}
	stopped   chan struct{}
	stopOnce  sync.Once
}

// New checks the inventory's network section and builds every service.
func New(cfg Config) (*Services, error) {
	if cfg.Inventory == nil {
		return nil, errors.New("boot services: no inventory")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	nw := cfg.Inventory.Network
	if !nw.Address.Is4() {
		return nil, fmt.Errorf("boot services: network.provisioner.address %v: want the provisioner's IPv4 address on the provisioning network", nw.Address)
	}
	if !cfg.SkipInterfaceCheck {
		if err := CheckInterface(nw.Interface, nw.Address); err != nil {
			return nil, err
		}
		if err := checkProvisionerAddresses(cfg.Inventory, net.InterfaceAddrs, log); err != nil {
			return nil, err
		}
	}
	bus := cfg.Bus
	if bus == nil {
		bus = bootevent.NewBus()
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	evCount := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "slipway_boot_events_total",
		Help: "Network boot events by kind (DHCP, TFTP, HTTP, phone-home).",
	}, []string{"kind"})
	if err := reg.Register(evCount); err != nil {
		return nil, fmt.Errorf("boot services: register metrics: %w", err)
	}
	// The bus comes last: whoever reads an event from it finds it already
	// logged and counted.
	sink := bootevent.Multi{logSink{log}, countSink{evCount}, bus}

	httpPort, err := cfg.ServedHTTPPort()
	if err != nil {
		return nil, err
	}
	base, err := cfg.BaseURL()
	if err != nil {
		return nil, err
	}
	tftpRoot := cfg.TFTPRoot
	if tftpRoot == "" {
		tftpRoot = tftp.DefaultRoot
	}
	nodes := cfg.Inventory.Enabled()

	s := &Services{inv: cfg.Inventory, bus: bus, log: log, ready: make(chan struct{}), stopped: make(chan struct{})}
	s.http, err = httpboot.New(httpboot.Config{
		Addr:           netip.AddrPortFrom(nw.Address, httpPort),
		Listener:       cfg.Listeners.HTTP,
		BaseURL:        base,
		Networks:       cfg.Inventory.Networks,
		AssetDir:       cfg.AssetDir,
		FirmwareDir:    tftpRoot,
		Nodes:          nodes,
		Renderer:       cfg.Renderer,
		NextAction:     cfg.NextAction,
		ScriptTemplate: cfg.ScriptTemplate,
		// Configs carry join tokens and, for control planes, CA keys: serve
		// them only to the node's inventory address in every DHCP mode. In
		// proxy and off modes the site DHCP server must give each node that
		// address (a reservation); a node that gets another one is refused
		// with "not the node's address" in the log and the events.
		RequireNodeIP: true,
		Registry:      reg,
		Events:        sink,
		Log:           log.With("service", "http"),
	})
	if err != nil {
		return nil, err
	}
	byIP := make(map[netip.Addr]inventory.Node, len(nodes))
	for _, n := range nodes {
		if n.IP.IsValid() {
			byIP[n.IP] = n
		}
	}
	tftpPort := cfg.TFTPPort
	if tftpPort == 0 {
		tftpPort = tftp.DefaultPort
	}
	s.tftp, err = tftp.New(tftp.Config{
		Root:     tftpRoot,
		Addr:     netip.AddrPortFrom(nw.Address, tftpPort),
		Conn:     cfg.Listeners.TFTP,
		NodeByIP: func(ip netip.Addr) (inventory.Node, bool) { n, ok := byIP[ip]; return n, ok },
		Events:   sink,
		Log:      log.With("service", "tftp"),
	})
	if err != nil {
		return nil, err
	}
	if nw.DHCPMode != inventory.DHCPOff {
		s.dhcp, err = dhcp.New(dhcp.Config{
			Interface:   nw.Interface,
			ListenAddr:  cfg.DHCPListenAddr,
			Port:        cfg.DHCPPort,
			ClientPort:  cfg.DHCPClientPort,
			Conn:        cfg.Listeners.DHCP,
			ProxyConn:   cfg.Listeners.DHCPProxy,
			ServerIP:    nw.Address,
			Mode:        nw.DHCPMode,
			Nodes:       nodes,
			Subnet:      nw.Subnet,
			Routed:      cfg.Inventory.Networks,
			Router:      nw.Gateway,
			DNS:         nw.DNSServers,
			DomainName:  nw.DomainName,
			LeaseTime:   nw.LeaseTime,
			ScriptURL:   s.http.ScriptURL,
			FirmwareURL: s.http.FirmwareURL,
			Events:      sink,
			Log:         log.With("service", "dhcp"),
		})
		if err != nil {
			return nil, err
		}
	}
	if nw.RouterAdvertisements && nw.Interface != "" {
		s.ra, err = ra.New(ra.Config{Interface: nw.Interface, Log: log.With("service", "ra")})
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Bus returns the event bus every service publishes to.
func (s *Services) Bus() *bootevent.Bus { return s.bus }

// HTTP returns the boot HTTP server (its URLs and handler).
func (s *Services) HTTP() *httpboot.Server { return s.http }

// DHCP returns the DHCP server, or nil when network.dhcp.mode is off.
func (s *Services) DHCP() *dhcp.Server { return s.dhcp }

// TFTP returns the TFTP server.
func (s *Services) TFTP() *tftp.Server { return s.tftp }

// Ready returns a channel that is closed once every service listens. It
// never closes if Run fails first; wait on Run's result as well.
func (s *Services) Ready() <-chan struct{} {
	s.readyOnce.Do(func() {
		chans := []<-chan struct{}{s.http.Ready(), s.tftp.Ready()}
		if s.dhcp != nil {
			chans = append(chans, s.dhcp.Ready())
		}
		if s.ra != nil {
			chans = append(chans, s.ra.Ready())
		}
		// One watcher for every caller; it ends with Run, so a service
		// that never became ready leaves nothing behind.
		go func() {
			for _, c := range chans {
				select {
				case <-c:
				case <-s.stopped:
					return
				}
			}
			close(s.ready)
		}()
	})
	return s.ready
}

// Run runs every service until ctx is done or one fails; a failure (such as
// a port already taken) stops the others and is returned.
func (s *Services) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.http.Run(gctx) })
	g.Go(func() error { return s.tftp.Run(gctx) })
	if s.dhcp != nil {
		g.Go(func() error { return s.dhcp.Run(gctx) })
	}
	if s.ra != nil {
		g.Go(func() error { return s.ra.Run(gctx) })
	}
	go s.logReady(gctx, s.inv)
	defer s.stopOnce.Do(func() { close(s.stopped) })
	return g.Wait()
}

// CheckInterface checks that iface exists, is up and carries addr, with an
// error that says what to fix.
func CheckInterface(iface string, addr netip.Addr) error {
	if iface == "" {
		return errors.New("boot services: network.provisioner.interface is empty: name the provisioning interface (such as eno2 or br0)")
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("boot services: interface %s: %w (network.provisioner.interface must name an interface of this machine)", iface, err)
	}
	if ifi.Flags&net.FlagUp == 0 {
		return fmt.Errorf("boot services: interface %s is down (ip link set %s up)", iface, iface)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return fmt.Errorf("boot services: addresses of %s: %w", iface, err)
	}
	for _, a := range addrs {
		if pn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(pn.IP); ok && ip.Unmap() == addr {
				return nil
			}
		}
	}
	return fmt.Errorf("boot services: interface %s does not carry network.provisioner.address %s (add it: ip addr add %s/24 dev %s, or fix the inventory)", iface, addr, addr, iface)
}

type logSink struct{ log *slog.Logger }

func (l logSink) Publish(e bootevent.Event) { l.log.Info("boot event", "event", e) }

type countSink struct{ c *prometheus.CounterVec }

func (c countSink) Publish(e bootevent.Event) { c.c.WithLabelValues(string(e.Kind)).Inc() }
