package tftp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pin/tftp/v3"
	"golang.org/x/net/ipv4"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
)

// Defaults.
const (
	// DefaultRoot is where Debian and Ubuntu's ipxe package installs
	// undionly.kpxe, snponly.efi and ipxe.efi.
	DefaultRoot = "/usr/lib/ipxe"
	// DefaultPort is the TFTP port.
	DefaultPort = 69
	// DefaultTimeout is how long the server waits for an ACK before resending.
	DefaultTimeout = 2 * time.Second
	// DefaultRetries is how often a block is resent before the transfer fails.
	DefaultRetries = 5
	// shutdownGrace bounds how long Run waits for transfers in flight.
	shutdownGrace = 5 * time.Second
)

// Config configures a Server.
type Config struct {
	// Root is the directory served (default DefaultRoot). It must exist.
	Root string
	// Addr is the listen address (default 0.0.0.0:69).
	Addr netip.AddrPort
	// Conn, if set, is a socket bound by the caller, used instead of
	// opening one on Addr (bind first: tests and the demo). Run closes it.
	Conn net.PacketConn
	// MaxBlockSize caps the negotiated blksize (default: the interface MTU
	// less IP and UDP headers).
	MaxBlockSize int
	// Timeout is the retransmission timeout (default DefaultTimeout).
	Timeout time.Duration
	// Retries is the number of retransmissions (default DefaultRetries).
	Retries int
	// NodeByIP names the node a peer address belongs to, for events
	// (optional).
	NodeByIP func(ip netip.Addr) (inventory.Node, bool)
	// Events receives a TFTPServed or TFTPRefused event per request (nil: none).
	Events bootevent.Sink
	// Log receives diagnostics (nil: discard).
	Log *slog.Logger
}

// Server is a read-only TFTP server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	events bootevent.Sink

	mu    sync.Mutex
	ready chan struct{}
	addr  net.Addr
}

// New checks cfg and returns a server; Run starts it. A missing root is an
// error that names the Debian package to install.
func New(cfg Config) (*Server, error) {
	if cfg.Root == "" {
		cfg.Root = DefaultRoot
	}
	if !cfg.Addr.IsValid() {
		cfg.Addr = netip.AddrPortFrom(netip.IPv4Unspecified(), DefaultPort)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retries <= 0 {
		cfg.Retries = DefaultRetries
	}
	fi, err := os.Stat(cfg.Root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("tftp root %s does not exist: install the iPXE binaries (apt-get install ipxe puts them in %s) or pass another directory", cfg.Root, DefaultRoot)
		}
		return nil, fmt.Errorf("tftp root: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("tftp root %s is not a directory", cfg.Root)
	}
	s := &Server{cfg: cfg, log: cfg.Log, events: cfg.Events, ready: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.events == nil {
		s.events = bootevent.Discard{}
	}
	return s, nil
}

// Ready is closed once the socket is bound.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the bound address once Ready is closed.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run serves until ctx is done, lets transfers in flight finish for a few
// seconds, and returns nil. It returns an error when the socket or the root
// cannot be opened.
func (s *Server) Run(ctx context.Context) error {
	root, err := os.OpenRoot(s.cfg.Root)
	if err != nil {
		return fmt.Errorf("tftp open root: %w", err)
	}
	closeRoot := true // unless transfers outlive the shutdown grace (below)
	defer func() {
		if closeRoot {
			root.Close()
		}
	}()
	conn := s.cfg.Conn
	if conn == nil {
		var lc net.ListenConfig
		conn, err = lc.ListenPacket(ctx, "udp4", s.cfg.Addr.String())
		if err != nil {
			hint := ""
			switch {
			case errors.Is(err, syscall.EADDRINUSE):
				hint = " (another TFTP server, such as tftpd-hpa or dnsmasq, already uses the port: stop it)"
			case errors.Is(err, syscall.EACCES):
				hint = " (port 69 needs root or CAP_NET_BIND_SERVICE)"
			case errors.Is(err, syscall.EADDRNOTAVAIL):
				hint = " (the address is not on any interface: check network.provisioner.address in the inventory)"
			}
			return fmt.Errorf("tftp listen %s: %w%s", s.cfg.Addr, err, hint)
		}
	}
	srv := tftp.NewServer(
		func(name string, rf io.ReaderFrom) error { return s.read(root, name, rf) },
		func(name string, wt io.WriterTo) error { return s.write(name, wt) },
	)
	srv.SetTimeout(s.cfg.Timeout)
	srv.SetRetries(s.cfg.Retries)
	if s.cfg.MaxBlockSize > 0 {
		srv.SetBlockSize(s.cfg.MaxBlockSize)
	}
	// pin/tftp asks for packet info (the interface, hence the MTU that caps
	// blksize) only once Serve runs; a request already queued by then is
	// read without it and negotiated down to 512-byte blocks. Ask now,
	// before Ready, so the first request gets the same treatment as later ones.
	if uc, ok := conn.(*net.UDPConn); ok {
		if err := ipv4.NewPacketConn(uc).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
			s.log.Warn("tftp: no packet info on the socket; blksize will be capped at 512", "err", err)
		}
	}
	s.mu.Lock()
	s.addr = conn.LocalAddr()
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("tftp serving", "addr", conn.LocalAddr().String(), "root", s.cfg.Root)

	done := make(chan error, 1)
	go func() { done <- srv.Serve(conn) }()
	select {
	case err := <-done:
		conn.Close()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tftp serve %s: %w", s.cfg.Addr, err)
		}
		return nil
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		srv.Shutdown()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(shutdownGrace):
		s.log.Warn("tftp shutdown: transfers still in flight, leaving them to time out")
		// The transfers still read from root: close it once they are done.
		closeRoot = false
		go func() {
			<-stopped
			root.Close()
		}()
	}
	return nil
}

// errRefused is returned to clients for paths outside the root.
var errRefused = errors.New("access violation")

// CleanPath checks a requested file name and returns the name relative to
// the root. It refuses absolute paths and any ".." element, so even a name
// that would resolve inside the root is refused: clients only ever ask for
// plain file names.
func CleanPath(name string) (string, error) {
	switch {
	case name == "":
		return "", errors.New("empty file name")
	case strings.ContainsRune(name, 0):
		return "", errors.New("file name contains NUL")
	case strings.HasPrefix(name, "/"), strings.HasPrefix(name, `\`):
		return "", errors.New("absolute path")
	}
	for _, el := range strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '\\' }) {
		if el == ".." {
			return "", errors.New(`path contains a ".." element`)
		}
	}
	return name, nil
}

// peer returns the requester's address and, when NodeByIP knows it, its
// node name and MAC.
func (s *Server) peer(rf any) (netip.Addr, string, net.HardwareAddr) {
	ot, ok := rf.(interface{ RemoteAddr() net.UDPAddr })
	if !ok {
		return netip.Addr{}, "", nil
	}
	ua := ot.RemoteAddr()
	ip := ua.AddrPort().Addr().Unmap()
	if s.cfg.NodeByIP != nil {
		if n, ok := s.cfg.NodeByIP(ip); ok {
			return ip, n.Name, append(net.HardwareAddr(nil), n.MAC...)
		}
	}
	return ip, "", nil
}

func (s *Server) refuse(ip netip.Addr, node string, mac net.HardwareAddr, name, why string) {
	s.log.Info("tftp refused", "ip", ip.String(), "node", node, "path", name, "reason", why)
	s.events.Publish(bootevent.Event{Kind: bootevent.TFTPRefused, Node: node, MAC: mac, IP: ip, Path: name, Detail: why})
}

// read serves one read request from inside root.
func (s *Server) read(root *os.Root, name string, rf io.ReaderFrom) error {
	ip, node, mac := s.peer(rf)
	rel, err := CleanPath(name)
	if err != nil {
		s.refuse(ip, node, mac, name, err.Error())
		return errRefused
	}
	f, err := root.Open(rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.refuse(ip, node, mac, name, "not found")
			return errors.New("file not found")
		}
		// os.Root reports symlinks that leave the root, and other escapes, here.
		s.refuse(ip, node, mac, name, err.Error())
		return errRefused
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		s.refuse(ip, node, mac, name, "not a regular file")
		return errRefused
	}
	if ot, ok := rf.(interface{ SetSize(int64) }); ok {
		ot.SetSize(fi.Size())
	}
	start := time.Now()
	// The sender reads one block at a time; a buffer turns ~700 small file
	// reads per MiB into 64. It is held for the whole transfer, so it stays
	// small: a rack booting at once has a thousand transfers in flight.
	n, err := rf.ReadFrom(bufio.NewReaderSize(f, 16<<10))
	if err != nil {
		if n == 0 && strings.Contains(err.Error(), "block 0: code=8") {
			// UEFI firmware asks for tsize, then ends the transfer with
			// error 8 (RFC 2347) and asks again for the file: normal.
			s.log.Debug("tftp size probe", "ip", ip.String(), "node", node, "path", name)
			return nil
		}
		s.log.Info("tftp transfer failed", "ip", ip.String(), "node", node, "path", name, "bytes", n, "err", err)
		return nil
	}
	s.log.Debug("tftp served", "ip", ip.String(), "node", node, "path", name, "bytes", n, "duration", time.Since(start))
	s.events.Publish(bootevent.Event{Kind: bootevent.TFTPServed, Node: node, MAC: mac, IP: ip, Path: name, Bytes: n})
	return nil
}

// write refuses every write request.
func (s *Server) write(name string, wt io.WriterTo) error {
	ip, node, mac := s.peer(wt)
	s.refuse(ip, node, mac, name, "write refused")
	return errors.New("this server is read-only")
}
