package listen

import (
	"net/netip"
	"testing"
)

func TestSameUDPPort(t *testing.T) {
	t.Parallel()
	a, b := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	conns, err := SameUDPPort(a, b)
	if err != nil {
		t.Fatalf("SameUDPPort(%s, %s): %v", a, b, err)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if len(conns) != 2 {
		t.Fatalf("SameUDPPort: %d sockets, want 2", len(conns))
	}
	p0, p1 := Port(conns[0].LocalAddr()), Port(conns[1].LocalAddr())
	if p0 == 0 || p0 != p1 {
		t.Errorf("SameUDPPort: ports %d and %d, want one non-zero port", p0, p1)
	}
	// The sockets are bound and kept: binding the port again fails.
	if c, err := UDP(netip.AddrPortFrom(b, p1)); err == nil {
		c.Close()
		t.Errorf("UDP(%s:%d) after SameUDPPort = nil error, want the port taken", b, p1)
	}
}

func TestTCPKeepsThePort(t *testing.T) {
	t.Parallel()
	l, err := TCP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := Port(l.Addr())
	if p == 0 {
		t.Fatalf("TCP(127.0.0.1:0): port 0")
	}
	if l2, err := TCP(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)); err == nil {
		l2.Close()
		t.Errorf("TCP on the bound port %d = nil error, want it taken", p)
	}
}

func TestPeerLoopback(t *testing.T) {
	t.Parallel()
	for range 1000 {
		a := PeerLoopback()
		b := a.As4()
		if !a.IsLoopback() || b[1] < 200 || b[1] > 254 || b[3] == 0 || b[3] == 255 {
			t.Fatalf("PeerLoopback() = %s, want 127.200-254.Y.1-254", a)
		}
	}
	// It can be bound on a fixed port, as a peer will.
	a := PeerLoopback()
	c, err := UDP(netip.AddrPortFrom(a, 6969))
	if err != nil {
		t.Fatalf("UDP(%s:6969): %v", a, err)
	}
	c.Close()
}
