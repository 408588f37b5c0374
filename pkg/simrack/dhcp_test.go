package simrack

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/slipway-dev/slipway/internal/servetest"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

// TestDHCPSessionTakesALateOffer: a PXE ROM keeps its transaction ID over
// its retransmissions, so an OFFER that answers the first DISCOVER after
// the client's first timeout is still taken. The server here answers only
// the first DISCOVER, late (as a loaded server answers a burst); the
// simulated firmware must boot from it, not give up as one that changed
// its transaction ID on every retransmission would.
func TestDHCPSessionTakesALateOffer(t *testing.T) {
	t.Parallel()
	conns := servetest.SameUDPPort(t, "127.0.0.1", "127.0.0.2")
	server, relay := conns[0], conns[1]
	node := inventory.Node{Name: "n1", MAC: inventory.HardwareAddr{0x02, 0x5a, 0, 0, 0, 1}, IP: netip.MustParseAddr("127.10.0.1")}
	r, err := New(Config{Nodes: []inventory.Node{node}, Relay: relay, DHCPServer: netip.MustParseAddrPort(server.LocalAddr().String()),
		TFTPServer: netip.MustParseAddrPort("127.0.0.1:69")})
	if err != nil {
		t.Fatal(err)
	}
	servetest.Start(t, r)

	const late = 300 * time.Millisecond // after the first wait (200 ms), within the second
	go func() {
		buf := make([]byte, 1500)
		var first *dhcpv4.DHCPv4
		for {
			n, from, err := server.ReadFromUDP(buf)
			if err != nil {
				return
			}
			m, err := dhcpv4.FromBytes(buf[:n])
			if err != nil {
				continue
			}
			var reply *dhcpv4.DHCPv4
			switch {
			case m.MessageType() == dhcpv4.MessageTypeDiscover && first == nil:
				first = m
				time.Sleep(late)
				reply, _ = dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer),
					dhcpv4.WithYourIP(net.IP(node.IP.AsSlice())), dhcpv4.WithServerIP(net.IPv4(127, 0, 0, 1)),
					dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(127, 0, 0, 1))))
			case m.MessageType() == dhcpv4.MessageTypeRequest && first != nil && m.TransactionID == first.TransactionID:
				reply, _ = dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
					dhcpv4.WithYourIP(net.IP(node.IP.AsSlice())), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(127, 0, 0, 1))))
			default:
				continue // retransmissions are lost on the way
			}
			server.WriteToUDP(reply.ToBytes(), from)
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ack, err := r.dhcpSession(ctx, r.machines["n1"], true, false, []time.Duration{200 * time.Millisecond, 2 * time.Second})
	if err != nil {
		t.Fatalf("dhcpSession with an OFFER %s late: %v, want the late OFFER taken", late, err)
	}
	if !ack.YourIPAddr.Equal(net.IP(node.IP.AsSlice())) {
		t.Errorf("ACK gives %s, want %s", ack.YourIPAddr, node.IP)
	}
}
