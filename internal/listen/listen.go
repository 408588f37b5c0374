package listen

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
)

// TCP binds a TCP listener on addr (port 0: the kernel picks a free one).
func TCP(addr netip.AddrPort) (net.Listener, error) {
	l, err := net.ListenTCP(network(addr.Addr(), "tcp"), net.TCPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("listen tcp %s: %w", addr, err)
	}
	return l, nil
}

// UDP binds a UDP socket on addr (port 0: the kernel picks a free one).
func UDP(addr netip.AddrPort) (*net.UDPConn, error) {
	c, err := net.ListenUDP(network(addr.Addr(), "udp"), net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("listen udp %s: %w", addr, err)
	}
	return c, nil
}

// Port returns the port a socket from TCP or UDP is bound to.
func Port(a net.Addr) uint16 {
	switch a := a.(type) {
	case *net.TCPAddr:
		return uint16(a.Port)
	case *net.UDPAddr:
		return uint16(a.Port)
	}
	return 0
}

// sameTries bounds SameUDPPort's attempts; each one fails only when another
// process holds the kernel's pick on one of the other addresses.
const sameTries = 50

// SameUDPPort binds one UDP socket on each of addrs, all on one port the
// kernel picks for the first. A DHCP server and the relay agent in front of
// it need this: the server sends a relayed reply to giaddr on its own port.
// When the port is taken on a later address, every socket bound so far is
// closed (none was handed out) and the kernel is asked for another port.
func SameUDPPort(addrs ...netip.Addr) ([]*net.UDPConn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("listen udp on the same port: no addresses")
	}
	var lastErr error
	for range sameTries {
		first, err := UDP(netip.AddrPortFrom(addrs[0], 0))
		if err != nil {
			return nil, err
		}
		conns := []*net.UDPConn{first}
		port := Port(first.LocalAddr())
		for _, a := range addrs[1:] {
			c, err := UDP(netip.AddrPortFrom(a, port))
			if err != nil {
				lastErr = err
				break
			}
			conns = append(conns, c)
		}
		if len(conns) == len(addrs) {
			return conns, nil
		}
		for _, c := range conns {
			c.Close()
		}
		if !errors.Is(lastErr, syscall.EADDRINUSE) {
			return nil, lastErr
		}
	}
	return nil, fmt.Errorf("listen udp on one port on %v: no port free on all of them after %d tries: %w", addrs, sameTries, lastErr)
}

func network(a netip.Addr, proto string) string {
	if a.Is4() || a.Is4In6() {
		return proto + "4"
	}
	return proto + "6"
}

// PeerLoopback returns a loopback address of its own, 127.X.Y.Z at random
// in 127.200.0.0-127.254.255.254, for a peer process that binds its own
// socket and cannot be handed one (nginx, tftpd-hpa): the caller gives it
// this address and a fixed port. Nothing else binds such an address, nor
// uses it as a source address (every outgoing loopback connection takes
// an ephemeral port of 127.0.0.1), so, unlike a port probed free and
// released, it is not taken in between; a peer that fails to bind anyway
// exits, and the caller reports that with the peer's log.
func PeerLoopback() netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(200 + rand.IntN(55)), byte(rand.IntN(256)), byte(1 + rand.IntN(254))})
}
