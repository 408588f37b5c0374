package dhcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/slipway-dev/slipway/internal/servetest"
	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

const (
	benchHosts    = 1000
	benchInFlight = 32 // transactions the relay keeps outstanding
	benchRounds   = 5  // rounds per server, interleaved, per b.N
)

// benchNodes are 1000 known clients, 02:00:00:00:HH:LL → 127.1.HH.LL.
func benchNodes() []inventory.Node {
	nodes := make([]inventory.Node, benchHosts)
	for i := range nodes {
		hi, lo := byte((i+1)>>8), byte(i+1)
		nodes[i] = inventory.Node{
			Name: fmt.Sprintf("n%04d", i),
			MAC:  inventory.HardwareAddr{0x02, 0, 0, 0, hi, lo},
			IP:   netip.AddrFrom4([4]byte{127, 1, hi, lo}),
		}
	}
	return nodes
}

// BenchmarkDHCPvsDnsmasq runs 1000 known clients through DISCOVER/OFFER and
// REQUEST/ACK via a relay on 127.0.0.2 against this server and against
// dnsmasq configured for the same hosts (static leases, no ping, no lease
// file), both on loopback, and reports transactions (DORA) per second and
// the ratio (target: slipway/dnsmasq >= 1).
func BenchmarkDHCPvsDnsmasq(b *testing.B) {
	bin := testenv.RequireCommands(b, "dnsmasq")["dnsmasq"]
	nodes := benchNodes()

	ours := startBenchServer(b)
	peer := startDnsmasq(b, bin, nodes)
	ours.waitReady(b, nodes[0])
	peer.waitReady(b, nodes[0])
	// Warm both up (and prove both answer) with one full transaction.
	ours.run(b, nodes[:1])
	peer.run(b, nodes[:1])

	var dOurs, dPeer time.Duration
	b.ResetTimer()
	for range b.N {
		for range benchRounds {
			dOurs += ours.run(b, nodes)
			dPeer += peer.run(b, nodes)
		}
	}
	b.StopTimer()
	n := float64(b.N * benchRounds * benchHosts)
	tOurs, tPeer := n/dOurs.Seconds(), n/dPeer.Seconds()
	b.ReportMetric(tOurs, "slipway-tx/s")
	b.ReportMetric(tPeer, "dnsmasq-tx/s")
	b.ReportMetric(tOurs/tPeer, "ratio")
	b.Logf("\n%-8s %10s %10s\n%-8s %10.0f %10s\n%-8s %10.0f %10s\n%-8s %10.2f (target >= 1.00; tx = DISCOVER/OFFER + REQUEST/ACK)",
		"server", "tx/s", "time",
		"slipway", tOurs, dOurs.Round(time.Millisecond),
		"dnsmasq", tPeer, dPeer.Round(time.Millisecond),
		"ratio", tOurs/tPeer)
}

// benchServerEnv is set in the helper process that serves the benchmark.
const benchServerEnv = "SLIPWAY_BENCH_DHCP_SERVER"

// runBenchServer is the body of the child process BenchmarkDHCPvsDnsmasq
// starts (through TestMain), so that our server runs in a process of its
// own, as dnsmasq does, and neither shares CPU time with the client.
func runBenchServer(string) error {
	// The parent bound the socket and handed it over as fd 3.
	conn, err := net.FilePacketConn(os.NewFile(3, "dhcp"))
	if err != nil {
		return fmt.Errorf("socket handed over: %w", err)
	}
	s, err := New(Config{
		Conn:      conn,
		ServerIP:  netip.MustParseAddr("127.0.0.1"),
		Subnet:    netip.MustParsePrefix("127.0.0.0/8"),
		Nodes:     benchNodes(),
		ScriptURL: func(n inventory.Node) string { return "http://127.0.0.1:8080/boot/" + n.Name + ".ipxe" },
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	return s.Run(ctx)
}

// startBenchServer runs this package's server in a child process, on a
// socket of 127.0.0.1 bound here and handed over, and returns the relay on
// 127.0.0.2 on the same port (where relayed replies go), bound here too:
// no port is probed and released.
func startBenchServer(b *testing.B) *benchRelay {
	b.Helper()
	conns := servetest.SameUDPPort(b, "127.0.0.1", "127.0.0.2")
	f, err := conns[0].File()
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	// The child's copy keeps the socket; this process must not read it.
	conns[0].Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchServerEnv+"=1")
	cmd.ExtraFiles = []*os.File{f}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatalf("start slipway dhcp: %v", err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	// The warm-up transaction in the benchmark retries until it answers.
	return newBenchRelay(conns[1], servetest.Port(conns[1].LocalAddr()))
}

// startDnsmasq runs dnsmasq in the foreground as a child process with DHCP
// on a high server port (--dhcp-alternate-port) and the same hosts, and
// returns the relay in front of it. dnsmasq binds its own socket, on the
// wildcard address with SO_REUSEADDR (with --bind-interfaces), so it
// cannot be handed one; instead the relay's socket on 127.0.0.2 is bound
// first, with SO_REUSEADDR too, on a port the kernel picks, and dnsmasq is
// told that port: it is held the whole time, never probed and released.
func startDnsmasq(b *testing.B, bin string, nodes []inventory.Node) *benchRelay {
	b.Helper()
	relay := reuseAddrRelay(b)
	port := servetest.Port(relay.LocalAddr())
	dir := b.TempDir()
	var hosts strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&hosts, "%s,%s\n", n.MAC, n.IP)
	}
	hostsFile := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hostsFile, []byte(hosts.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin,
		"--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--user=root", "--group=root",
		"--pid-file="+filepath.Join(dir, "pid"),
		"--interface=lo", "--bind-interfaces",
		fmt.Sprintf("--dhcp-alternate-port=%d,%d", port, port+1),
		"--dhcp-range=127.0.0.0,static,255.0.0.0,1h",
		"--dhcp-hostsfile="+hostsFile,
		"--dhcp-authoritative", "--no-ping", "--leasefile-ro",
		"--dhcp-boot=undionly.kpxe,,127.0.0.1",
	)
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatalf("start dnsmasq: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	// A dnsmasq that cannot start exits at once; waitReady sees no answer.
	select {
	case <-exited:
		b.Fatalf("dnsmasq exited: %s", stderr.String())
	case <-time.After(200 * time.Millisecond):
	}
	return newBenchRelay(relay, port)
}

// reuseAddrRelay binds the relay's socket on 127.0.0.2, port 0, with
// SO_REUSEADDR, so that dnsmasq's wildcard socket with SO_REUSEADDR can
// share the port; replies to 127.0.0.2 reach this socket, the more specific
// one.
func reuseAddrRelay(b *testing.B) *net.UDPConn {
	b.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		})
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.2:0")
	if err != nil {
		b.Fatalf("relay listen: %v", err)
	}
	b.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

// benchRelay is a relay agent on 127.0.0.2:port that drives many clients.
type benchRelay struct {
	conn *net.UDPConn
	srv  *net.UDPAddr
}

// newBenchRelay drives the server on 127.0.0.1:port through conn, the
// relay's socket on 127.0.0.2:port.
func newBenchRelay(conn *net.UDPConn, port uint16) *benchRelay {
	conn.SetReadBuffer(4 << 20)
	return &benchRelay{conn: conn, srv: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}}
}

// waitReady sends DISCOVERs for n until the server answers (it may still
// be starting), for up to 10 s.
func (r *benchRelay) waitReady(b *testing.B, n inventory.Node) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		disc, _ := dhcpv4.NewDiscovery(net.HardwareAddr(n.MAC), dhcpv4.WithGatewayIP(net.IPv4(127, 0, 0, 2)), withHops)
		r.conn.WriteToUDP(disc.ToBytes(), r.srv)
		r.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, _, err := r.conn.ReadFromUDP(buf); err == nil {
			return
		}
	}
	b.Fatalf("no DHCP server answers on %s", r.srv)
}

// run performs DISCOVER/OFFER then REQUEST/ACK for every node, with
// benchInFlight transactions outstanding, and returns the wall time.
func (r *benchRelay) run(b *testing.B, nodes []inventory.Node) time.Duration {
	b.Helper()
	type waiter chan *dhcpv4.DHCPv4
	var mu sync.Mutex
	pending := map[dhcpv4.TransactionID]waiter{}
	stop := make(chan struct{})
	readerDone := make(chan error, 1)
	go func() {
		buf := make([]byte, 1500)
		for {
			r.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, _, err := r.conn.ReadFromUDP(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					select {
					case <-stop:
						readerDone <- nil
						return
					default:
						continue
					}
				}
				readerDone <- err
				return
			}
			d, err := dhcpv4.FromBytes(buf[:n])
			if err != nil {
				continue
			}
			mu.Lock()
			w := pending[d.TransactionID]
			delete(pending, d.TransactionID)
			mu.Unlock()
			if w != nil {
				w <- d
			}
		}
	}()
	send := func(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		w := make(waiter, 1)
		for attempt := 0; attempt < 4; attempt++ {
			mu.Lock()
			pending[req.TransactionID] = w
			mu.Unlock()
			r.conn.WriteToUDP(req.ToBytes(), r.srv)
			select {
			case d := <-w:
				return d
			case <-time.After(time.Second):
			}
		}
		return nil
	}
	sem := make(chan struct{}, benchInFlight)
	errs := make(chan error, len(nodes))
	var wg sync.WaitGroup
	start := time.Now()
	for i, n := range nodes {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			mac := net.HardwareAddr(n.MAC)
			xid := dhcpv4.TransactionID{byte(i >> 8), byte(i), 0xbe, 0x01}
			mods := []dhcpv4.Modifier{
				dhcpv4.WithTransactionID(xid),
				dhcpv4.WithGatewayIP(net.IPv4(127, 0, 0, 2)),
				withHops,
				dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
				dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
			}
			disc, _ := dhcpv4.NewDiscovery(mac, mods...)
			offer := send(disc)
			if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
				errs <- fmt.Errorf("%s: no OFFER", n.Name)
				return
			}
			xid[3] = 0x02
			req, _ := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithTransactionID(xid), dhcpv4.WithGatewayIP(net.IPv4(127, 0, 0, 2)), withHops)
			ack := send(req)
			if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(net.IP(n.IP.AsSlice())) {
				errs <- fmt.Errorf("%s: no ACK of %s (got %v)", n.Name, n.IP, ack)
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	close(stop)
	if err := <-readerDone; err != nil {
		b.Fatalf("relay read: %v", err)
	}
	close(errs)
	for err := range errs {
		b.Fatalf("relay to %s: %v", r.srv, err)
	}
	return d
}

// withHops marks a request as relayed once.
func withHops(d *dhcpv4.DHCPv4) { d.HopCount = 1 }
