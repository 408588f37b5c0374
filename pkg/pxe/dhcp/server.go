package dhcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sync/errgroup"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
)

// Default ports and file names.
const (
	// DefaultPort is the DHCP server port.
	DefaultPort = 67
	// DefaultClientPort is the DHCP client port.
	DefaultClientPort = 68
	// DefaultProxyPort is the PXE boot server port proxy mode also answers on.
	DefaultProxyPort = 4011
	// DefaultLeaseTime is the lease handed out when Config.LeaseTime is zero.
	DefaultLeaseTime = time.Hour
	// DefaultBIOSFile is the iPXE binary for legacy BIOS PXE (Debian package ipxe).
	DefaultBIOSFile = "undionly.kpxe"
	// DefaultUEFIx64File is the iPXE binary for x86-64 UEFI (Debian package ipxe).
	DefaultUEFIx64File = "snponly.efi"
	// DefaultUEFIArm64File is the iPXE binary for arm64 UEFI. Debian 12's ipxe
	// package does not ship one: build iPXE's bin-arm64-efi/snponly.efi and
	// put it in the TFTP root under this name.
	DefaultUEFIArm64File = "snponly-arm64.efi"
)

// Files names the iPXE binaries handed to PXE firmware, by architecture.
type Files struct {
	// BIOS is for legacy BIOS (default DefaultBIOSFile).
	BIOS string
	// UEFIx64 is for x86-64 UEFI (default DefaultUEFIx64File).
	UEFIx64 string
	// UEFIArm64 is for arm64 UEFI (default DefaultUEFIArm64File).
	UEFIArm64 string
}

// Config configures a Server.
type Config struct {
	// Interface is the provisioning interface. The sockets are bound to it
	// (SO_BINDTODEVICE) so replies broadcast on it and nowhere else. Empty
	// means no binding (tests on loopback).
	Interface string
	// ListenAddr is the address the sockets bind (default 0.0.0.0, which is
	// needed to receive broadcasts).
	ListenAddr netip.Addr
	// Port is the server port (default 67). Replies to a relay go to
	// giaddr:Port, as relays listen on the server port.
	Port uint16
	// ClientPort is the port replies to clients go to (default 68).
	ClientPort uint16
	// ProxyPort is the PXE boot server port answered in proxy mode (default 4011).
	ProxyPort uint16
	// Conn, if set, is a socket bound by the caller, used instead of
	// opening one on Port (bind first: tests and the demo); its port
	// replaces Port. Run closes it.
	Conn net.PacketConn
	// ProxyConn, if set, is used instead of opening the ProxyPort socket in
	// proxy mode. With Conn set and ProxyConn nil, proxy mode serves only
	// Conn. Run closes it.
	ProxyConn net.PacketConn
	// ServerIP is the provisioner's address on the provisioning network: the
	// server identifier and the TFTP next-server. Required.
	ServerIP netip.Addr
	// Routed are the routed provisioning networks (inventory networks:). A
	// node whose Network names one is answered only when its request comes
	// through one of that network's Relays (giaddr), with that network's
	// subnet, gateway, DNS and ProvisionerAddress (the server identifier and
	// next-server). Every other node is on the provisioner's own network
	// (Subnet, Router, DNS, DomainName, ServerIP below), answered directly
	// or through a relay whose address lies in Subnet. A relayed request
	// from any other relay gets no answer.
	Routed []inventory.ProvisioningNetwork
	// Mode is inventory.DHCPAuthoritative (default) or inventory.DHCPProxy.
	Mode inventory.DHCPMode
	// Nodes are the nodes to answer. Disabled nodes are ignored; every other
	// MAC gets no answer.
	Nodes []inventory.Node
	// Subnet is the provisioning subnet; its mask is handed out. Required in
	// authoritative mode.
	Subnet netip.Prefix
	// Router is the default gateway handed out (optional).
	Router netip.Addr
	// DNS are the resolvers handed out (optional).
	DNS []netip.Addr
	// DomainName is the search domain handed out (optional).
	DomainName string
	// LeaseTime is the lease handed out (default DefaultLeaseTime).
	LeaseTime time.Duration
	// Files are the iPXE binaries for PXE firmware, served by TFTP.
	Files Files
	// ScriptURL returns the HTTP URL of a node's iPXE script, handed to iPXE
	// clients. Required.
	ScriptURL func(n inventory.Node) string
	// FirmwareURL returns the HTTP URL of the iPXE binary named file as node
	// n reaches it, handed to UEFI HTTP boot clients. Nil means HTTP boot
	// clients get no answer.
	FirmwareURL func(n inventory.Node, file string) string
	// Events receives one event per request and reply (nil: none).
	Events bootevent.Sink
	// Log receives diagnostics (nil: discard).
	Log *slog.Logger
}

// Server is a DHCPv4 server for the nodes of an inventory.
type Server struct {
	cfg    Config
	log    *slog.Logger
	events bootevent.Sink
	nodes  map[string]inventory.Node // by MAC string
	local  network
	routed map[string]*network     // by name
	relays map[netip.Addr]*network // by relay address (giaddr)

	unknown unknownLimiter

	mu    sync.Mutex
	ready chan struct{}
	addrs []net.Addr
}

// New checks cfg and returns a server; Run starts it.
func New(cfg Config) (*Server, error) {
	// A socket handed over decides the port: replies to relays go to it.
	if cfg.Conn != nil {
		if ua, ok := cfg.Conn.LocalAddr().(*net.UDPAddr); ok {
			cfg.Port = uint16(ua.Port)
		}
	}
	if cfg.ProxyConn != nil {
		if ua, ok := cfg.ProxyConn.LocalAddr().(*net.UDPAddr); ok {
			cfg.ProxyPort = uint16(ua.Port)
		}
	}
	if cfg.Mode == "" {
		cfg.Mode = inventory.DHCPAuthoritative
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.ClientPort == 0 {
		cfg.ClientPort = DefaultClientPort
	}
	if cfg.ProxyPort == 0 {
		cfg.ProxyPort = DefaultProxyPort
	}
	if !cfg.ListenAddr.IsValid() {
		cfg.ListenAddr = netip.IPv4Unspecified()
	}
	if cfg.LeaseTime == 0 {
		cfg.LeaseTime = DefaultLeaseTime
	}
	if cfg.Files.BIOS == "" {
		cfg.Files.BIOS = DefaultBIOSFile
	}
	if cfg.Files.UEFIx64 == "" {
		cfg.Files.UEFIx64 = DefaultUEFIx64File
	}
	if cfg.Files.UEFIArm64 == "" {
		cfg.Files.UEFIArm64 = DefaultUEFIArm64File
	}
	var errs []error
	switch cfg.Mode {
	case inventory.DHCPAuthoritative, inventory.DHCPProxy:
	default:
		errs = append(errs, fmt.Errorf("dhcp mode %q: want %s or %s", cfg.Mode, inventory.DHCPAuthoritative, inventory.DHCPProxy))
	}
	if !cfg.ServerIP.Is4() {
		errs = append(errs, fmt.Errorf("dhcp server ip %v: want an IPv4 address", cfg.ServerIP))
	}
	if !cfg.ListenAddr.Is4() {
		errs = append(errs, fmt.Errorf("dhcp listen address %v: want an IPv4 address", cfg.ListenAddr))
	}
	if cfg.Mode == inventory.DHCPAuthoritative && (!cfg.Subnet.IsValid() || !cfg.Subnet.Addr().Is4()) {
		errs = append(errs, fmt.Errorf("dhcp subnet %v: authoritative mode needs the IPv4 provisioning subnet", cfg.Subnet))
	}
	if cfg.ScriptURL == nil {
		errs = append(errs, errors.New("dhcp: ScriptURL is required"))
	}
	s := &Server{
		cfg:    cfg,
		log:    cfg.Log,
		events: cfg.Events,
		nodes:  make(map[string]inventory.Node, len(cfg.Nodes)),
		ready:  make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.events == nil {
		s.events = bootevent.Discard{}
	}
	s.local = network{serverIP: cfg.ServerIP, subnet: cfg.Subnet, router: cfg.Router, dns: cfg.DNS, domain: cfg.DomainName}
	if cfg.Subnet.IsValid() && cfg.Subnet.Addr().Is4() {
		s.local.mask = net.CIDRMask(cfg.Subnet.Bits(), 32)
	}
	errs = append(errs, s.addRouted(cfg.Routed)...)
	for _, n := range cfg.Nodes {
		if n.Disabled {
			continue
		}
		if len(n.MAC) != 6 {
			errs = append(errs, fmt.Errorf("dhcp node %s: mac %q is not a 6-byte Ethernet address", n.Name, n.MAC))
			continue
		}
		if cfg.Mode == inventory.DHCPAuthoritative {
			if !n.IP.Is4() {
				errs = append(errs, fmt.Errorf("dhcp node %s: ip %v: authoritative mode needs an IPv4 address", n.Name, n.IP))
				continue
			}
			if nw := s.networkOf(n); nw.subnet.IsValid() && !nw.subnet.Contains(n.IP) {
				errs = append(errs, fmt.Errorf("dhcp node %s: ip %v is outside subnet %v", n.Name, n.IP, nw.subnet))
				continue
			}
		}
		key := n.MAC.String()
		if other, dup := s.nodes[key]; dup {
			errs = append(errs, fmt.Errorf("dhcp node %s: mac %s is also node %s", n.Name, key, other.Name))
			continue
		}
		s.nodes[key] = n
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// network is what the server hands the nodes of one provisioning network.
type network struct {
	name     string // empty for the provisioner's own network
	serverIP netip.Addr
	subnet   netip.Prefix
	mask     net.IPMask
	router   netip.Addr
	dns      []netip.Addr
	domain   string
}

// addRouted indexes the routed networks by name and by relay address.
func (s *Server) addRouted(nets []inventory.ProvisioningNetwork) []error {
	var errs []error
	s.routed = make(map[string]*network, len(nets))
	s.relays = make(map[netip.Addr]*network)
	for _, p := range nets {
		nw := &network{name: p.Name, serverIP: p.ProvisionerAddress, subnet: p.Subnet, router: p.Gateway, dns: p.DNSServers, domain: p.DomainName}
		if !nw.serverIP.IsValid() {
			nw.serverIP = s.cfg.ServerIP
		}
		switch {
		case p.Name == "":
			errs = append(errs, errors.New("dhcp routed network: no name"))
			continue
		case s.routed[p.Name] != nil:
			errs = append(errs, fmt.Errorf("dhcp routed network %s: defined twice", p.Name))
			continue
		case !nw.serverIP.Is4():
			errs = append(errs, fmt.Errorf("dhcp routed network %s: provisioner address %v: want an IPv4 address", p.Name, nw.serverIP))
		case s.cfg.Mode == inventory.DHCPAuthoritative && (!p.Subnet.IsValid() || !p.Subnet.Addr().Is4()):
			errs = append(errs, fmt.Errorf("dhcp routed network %s: subnet %v: authoritative mode needs its IPv4 subnet", p.Name, p.Subnet))
		case len(p.Relays) == 0:
			errs = append(errs, fmt.Errorf("dhcp routed network %s: no relays: its requests could never be answered", p.Name))
		}
		if p.Subnet.IsValid() && p.Subnet.Addr().Is4() {
			nw.mask = net.CIDRMask(p.Subnet.Bits(), 32)
		}
		for _, r := range p.Relays {
			if other := s.relays[r]; other != nil {
				errs = append(errs, fmt.Errorf("dhcp routed network %s: relay %s is also a relay of network %s", p.Name, r, other.name))
				continue
			}
			s.relays[r] = nw
		}
		s.routed[p.Name] = nw
	}
	return errs
}

// networkOf returns node n's network: its routed network, or the
// provisioner's own.
func (s *Server) networkOf(n inventory.Node) *network {
	if nw := s.routed[n.Network]; nw != nil {
		return nw
	}
	return &s.local
}

// viaRelay decides whether a request of node n that arrived through relay
// gi (or directly, gi invalid) may be answered, and with which network.
// The refusal says why, for the log and the events.
func (s *Server) viaRelay(n inventory.Node, gi netip.Addr, proxyPort bool) (*network, string) {
	nw := s.networkOf(n)
	if !gi.IsValid() {
		if nw != &s.local && !proxyPort {
			return nil, fmt.Sprintf("node %s is on routed network %s: its requests must come through one of its relays, this one came directly", n.Name, nw.name)
		}
		return nw, ""
	}
	via := s.relays[gi]
	if via == nil {
		if s.local.subnet.IsValid() && s.local.subnet.Contains(gi) {
			via = &s.local // a relay on the provisioner's own subnet
		} else {
			return nil, fmt.Sprintf("relay %s is not listed in any network's relays", gi)
		}
	}
	if via != nw {
		return nil, fmt.Sprintf("node %s is on network %s, but its request came through relay %s of network %s", n.Name, networkName(nw), gi, networkName(via))
	}
	return nw, ""
}

func networkName(nw *network) string {
	if nw.name == "" {
		return "(the provisioner's own)"
	}
	return nw.name
}

// Ready is closed once the server's sockets are bound.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs returns the bound socket addresses once Ready is closed.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Addr(nil), s.addrs...)
}

// Run serves until ctx is done, then closes its sockets and returns nil. It
// returns an error when a socket cannot be opened (port taken, interface
// missing, no privilege).
func (s *Server) Run(ctx context.Context) error {
	var conns []net.PacketConn
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	if s.cfg.Conn != nil {
		conns = append(conns, s.cfg.Conn)
	} else {
		c, err := listen(ctx, s.cfg.Interface, s.cfg.ListenAddr, s.cfg.Port)
		if err != nil {
			if s.cfg.ProxyConn != nil {
				s.cfg.ProxyConn.Close()
			}
			return err
		}
		conns = append(conns, c)
	}
	switch {
	case s.cfg.Mode != inventory.DHCPProxy:
	case s.cfg.ProxyConn != nil:
		conns = append(conns, s.cfg.ProxyConn)
	case s.cfg.Conn == nil:
		c, err := listen(ctx, s.cfg.Interface, s.cfg.ListenAddr, s.cfg.ProxyPort)
		if err != nil {
			closeAll()
			return err
		}
		conns = append(conns, c)
	}
	s.mu.Lock()
	for _, c := range conns {
		s.addrs = append(s.addrs, c.LocalAddr())
	}
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("dhcp serving", "mode", s.cfg.Mode, "interface", s.cfg.Interface, "addrs", s.addrs, "nodes", len(s.nodes))

	g, gctx := errgroup.WithContext(ctx)
	for i, c := range conns {
		proxyPort := i == 1
		g.Go(func() error { return s.serve(c, proxyPort) })
	}
	g.Go(func() error {
		<-gctx.Done()
		closeAll()
		return nil
	})
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// serve reads and answers packets on c until c is closed.
func (s *Server) serve(c net.PacketConn, proxyPort bool) error {
	buf := make([]byte, 4096)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("dhcp read on %s: %w", c.LocalAddr(), err)
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		peer := ua.AddrPort()
		reply, to, ok := s.handle(buf[:n], netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port()), proxyPort)
		if !ok {
			continue
		}
		if _, err := c.WriteTo(reply, net.UDPAddrFromAddrPort(to)); err != nil {
			// A failed send is the client's loss, not the server's: log it and go on.
			s.log.Warn("dhcp send failed", "to", to.String(), "err", err)
		}
	}
}

// receiveBuffer is the DHCP socket's receive buffer: about 4000 requests.
const receiveBuffer = 4 << 20

// listen opens a UDP socket on addr:port that may broadcast, bound to iface
// when one is named.
func listen(ctx context.Context, iface string, addr netip.Addr, port uint16) (net.PacketConn, error) {
	if iface != "" {
		if _, err := net.InterfaceByName(iface); err != nil {
			return nil, fmt.Errorf("dhcp listen on interface %s: %w (check network.provisioner.interface in the inventory)", iface, err)
		}
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1); serr != nil {
				return
			}
			// A rack powered on at once sends its DISCOVERs in one burst:
			// a receive buffer of a few hundred packets drops most of a
			// thousand. Above net.core.rmem_max only root may ask (FORCE);
			// otherwise the kernel's cap applies and clients retransmit.
			if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, receiveBuffer) != nil {
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, receiveBuffer)
			}
			if iface != "" {
				serr = syscall.BindToDevice(int(fd), iface)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	ap := netip.AddrPortFrom(addr, port)
	c, err := lc.ListenPacket(ctx, "udp4", ap.String())
	if err != nil {
		hint := ""
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			hint = " (another DHCP server, such as dnsmasq, already uses the port: stop it, or set network.dhcp.mode: proxy or off)"
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
			hint = " (ports below 1024 need root or CAP_NET_BIND_SERVICE; kernels before 5.7 also need CAP_NET_RAW to bind to an interface)"
		}
		where := ap.String()
		if iface != "" {
			where += " on " + iface
		}
		return nil, fmt.Errorf("dhcp listen %s: %w%s", where, err, hint)
	}
	return c, nil
}

// handle answers one packet from peer. It returns the encoded reply and where
// to send it, or ok=false when there is nothing to send. It never panics on
// malformed input.
func (s *Server) handle(pkt []byte, peer netip.AddrPort, proxyPort bool) (reply []byte, to netip.AddrPort, ok bool) {
	req, err := dhcpv4.FromBytes(pkt)
	if err != nil {
		s.log.Debug("dhcp malformed packet", "from", peer.String(), "err", err)
		return nil, netip.AddrPort{}, false
	}
	if req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) != 6 {
		return nil, netip.AddrPort{}, false
	}
	mt := req.MessageType()
	mac := req.ClientHWAddr
	node, known := s.nodes[mac.String()]
	if !known {
		if s.unknown.allow(mac.String(), time.Now()) {
			s.log.Debug("dhcp ignoring unknown mac", "mac", mac.String(), "msg", mt.String())
		}
		s.events.Publish(bootevent.Event{Kind: bootevent.DHCPIgnored, MAC: cloneMAC(mac), Detail: mt.String()})
		return nil, netip.AddrPort{}, false
	}
	gi, _ := netip.AddrFromSlice(req.GatewayIPAddr.To4())
	if gi.IsUnspecified() {
		gi = netip.Addr{}
	}
	nw, refused := s.viaRelay(node, gi, proxyPort)
	if nw == nil {
		if s.unknown.allow("refused "+mac.String()+" "+gi.String(), time.Now()) {
			s.log.Warn("dhcp request refused", "node", node.Name, "mac", mac.String(), "relay", gi.String(), "reason", refused)
		}
		s.events.Publish(bootevent.Event{Kind: bootevent.DHCPIgnored, Node: node.Name, MAC: cloneMAC(mac), Detail: refused})
		return nil, netip.AddrPort{}, false
	}
	client := classify(req)
	resp, kinds := s.reply(req, mt, node, nw, client, proxyPort)
	if resp == nil {
		return nil, netip.AddrPort{}, false
	}
	to = s.destination(req, resp, peer, proxyPort)
	ip, _ := netip.AddrFromSlice(resp.YourIPAddr.To4())
	if !ip.IsValid() || ip.IsUnspecified() {
		ip = node.IP
	}
	for _, k := range kinds {
		s.events.Publish(bootevent.Event{Kind: k, Node: node.Name, MAC: cloneMAC(mac), IP: ip, Path: resp.BootFileName, Detail: string(client)})
	}
	return resp.ToBytes(), to, true
}

func cloneMAC(m net.HardwareAddr) net.HardwareAddr { return append(net.HardwareAddr(nil), m...) }

// reply builds the answer to req from node, and the events it stands for
// (request kind, then reply kind). A nil reply means no answer.
func (s *Server) reply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, node inventory.Node, nw *network, client Client, proxyPort bool) (*dhcpv4.DHCPv4, []bootevent.Kind) {
	serverIP := net.IP(nw.serverIP.AsSlice())
	proxy := s.cfg.Mode == inventory.DHCPProxy
	var in, out bootevent.Kind
	var respType dhcpv4.MessageType
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		if proxyPort {
			return nil, nil
		}
		in, out, respType = bootevent.DHCPDiscover, bootevent.DHCPOffer, dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		in, out, respType = bootevent.DHCPRequest, bootevent.DHCPAck, dhcpv4.MessageTypeAck
		if sid := req.ServerIdentifier(); sid != nil && !sid.IsUnspecified() && !sid.Equal(serverIP) {
			// The client took another server's offer (in proxy mode: the
			// site server's lease). Nothing to say.
			return nil, nil
		}
		if proxy && !proxyPort {
			// In proxy mode a REQUEST on port 67 is for the site server.
			return nil, nil
		}
	case dhcpv4.MessageTypeInform:
		in, out, respType = bootevent.DHCPRequest, bootevent.DHCPAck, dhcpv4.MessageTypeAck
	default:
		// RELEASE and DECLINE need no answer: leases are fixed.
		return nil, nil
	}
	if proxy && client == ClientNone {
		// Proxy mode only speaks to boot firmware.
		return nil, nil
	}

	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(respType),
		dhcpv4.WithServerIP(serverIP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP)),
	}
	if !proxy {
		if respType == dhcpv4.MessageTypeAck && mt == dhcpv4.MessageTypeRequest {
			want := req.RequestedIPAddress()
			if want == nil || want.IsUnspecified() {
				want = req.ClientIPAddr
			}
			if want != nil && !want.IsUnspecified() && !want.Equal(net.IP(node.IP.AsSlice())) {
				return s.nak(req, serverIP), []bootevent.Kind{bootevent.DHCPRequest, bootevent.DHCPNak}
			}
		}
		if mt != dhcpv4.MessageTypeInform {
			mods = append(mods,
				dhcpv4.WithYourIP(net.IP(node.IP.AsSlice())),
				dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(s.cfg.LeaseTime)),
				dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(s.cfg.LeaseTime/2)),
				dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(s.cfg.LeaseTime*7/8)),
			)
		}
		mods = append(mods,
			dhcpv4.WithOption(dhcpv4.OptSubnetMask(nw.mask)),
			dhcpv4.WithOption(dhcpv4.OptHostName(node.Name)),
		)
		if nw.router.Is4() {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(net.IP(nw.router.AsSlice()))))
		}
		if len(nw.dns) > 0 {
			ips := make([]net.IP, 0, len(nw.dns))
			for _, a := range nw.dns {
				if a.Is4() {
					ips = append(ips, net.IP(a.AsSlice()))
				}
			}
			if len(ips) > 0 {
				mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(ips...)))
			}
		}
		if nw.domain != "" {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDomainName(nw.domain)))
		}
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		s.log.Debug("dhcp build reply", "mac", req.ClientHWAddr.String(), "err", err)
		return nil, nil
	}
	if respType == dhcpv4.MessageTypeAck {
		// RFC 2131 table 3: an ACK carries the client's ciaddr back.
		resp.ClientIPAddr = req.ClientIPAddr
	}
	if !s.bootInfo(req, resp, node, nw, client) && proxy {
		return nil, nil
	}
	return resp, []bootevent.Kind{in, out}
}

// bootInfo adds what the client boots next. It reports false when the
// client gets no boot information (not a boot client, or no binary for it).
func (s *Server) bootInfo(req, resp *dhcpv4.DHCPv4, node inventory.Node, nw *network, client Client) bool {
	setFile := func(name string) {
		if len(name) <= 127 {
			resp.BootFileName = name
		}
		resp.UpdateOption(dhcpv4.OptBootFileName(name))
	}
	switch client {
	case ClientIPXE:
		setFile(s.cfg.ScriptURL(node))
		if s.cfg.Mode == inventory.DHCPProxy {
			// iPXE takes an offer without an address as ProxyDHCP only
			// when it says PXEClient; and it must wait for that offer, so
			// no 175.176 here.
			resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
		} else {
			resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(optIPXE), ipxeNoPXEDHCP))
		}
	case ClientBIOS, ClientUEFIx64, ClientUEFIArm64:
		file := s.cfg.Files.BIOS
		switch client {
		case ClientUEFIx64:
			file = s.cfg.Files.UEFIx64
		case ClientUEFIArm64:
			file = s.cfg.Files.UEFIArm64
		}
		setFile(file)
		resp.UpdateOption(dhcpv4.OptTFTPServerName(nw.serverIP.String()))
		if s.cfg.Mode == inventory.DHCPProxy {
			resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
			// PXE discovery control (option 43.6) = 8: boot the file named
			// here, skip boot-server discovery.
			resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}))
		}
	case ClientHTTPx64, ClientHTTPArm64:
		if s.cfg.FirmwareURL == nil {
			return false
		}
		file := s.cfg.Files.UEFIx64
		if client == ClientHTTPArm64 {
			file = s.cfg.Files.UEFIArm64
		}
		setFile(s.cfg.FirmwareURL(node, file))
		resp.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
	default:
		return false
	}
	if uuid := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); uuid != nil {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, uuid))
	}
	return true
}

func (s *Server) nak(req *dhcpv4.DHCPv4, serverIP net.IP) *dhcpv4.DHCPv4 {
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP)),
	)
	if err != nil {
		return nil
	}
	return resp
}

// destination picks where resp goes (RFC 2131 section 4.1): to the relay
// when there is one, to the client's address when it has one, else
// broadcast, because the client has no address yet and this server does not
// inject ARP entries.
func (s *Server) destination(req, resp *dhcpv4.DHCPv4, peer netip.AddrPort, proxyPort bool) netip.AddrPort {
	if gi, ok := netip.AddrFromSlice(req.GatewayIPAddr.To4()); ok && !gi.IsUnspecified() {
		return netip.AddrPortFrom(gi, s.cfg.Port)
	}
	if proxyPort {
		// Port 4011 clients already have an address and wait on their source port.
		return peer
	}
	if resp.MessageType() != dhcpv4.MessageTypeNak {
		if ci, ok := netip.AddrFromSlice(req.ClientIPAddr.To4()); ok && !ci.IsUnspecified() {
			return netip.AddrPortFrom(ci, s.cfg.ClientPort)
		}
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), s.cfg.ClientPort)
}

// unknownLimiter lets a log line about an unknown MAC through at most once a
// minute per MAC, with bounded memory.
type unknownLimiter struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

const (
	unknownLogEvery = time.Minute
	unknownMaxMACs  = 4096
)

func (l *unknownLimiter) allow(mac string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil || len(l.seen) >= unknownMaxMACs {
		l.seen = make(map[string]time.Time)
	}
	if last, ok := l.seen[mac]; ok && now.Sub(last) < unknownLogEvery {
		return false
	}
	l.seen[mac] = now
	return true
}

// Describe returns a one-line summary of a DHCP packet for logs and tests.
func Describe(pkt []byte) string {
	d, err := dhcpv4.FromBytes(pkt)
	if err != nil {
		return "malformed: " + err.Error()
	}
	return strings.TrimSpace(d.Summary())
}
