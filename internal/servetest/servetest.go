package servetest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/listen"
)

// ReadyTimeout bounds how long Start and Wait wait for a service that
// neither gets ready nor fails.
const ReadyTimeout = time.Minute

// Service is a server with the project's lifecycle: Run blocks until ctx is
// done and returns nil on a clean stop; Ready is closed once it serves.
type Service interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
}

// Start runs svc until the test ends and returns once it is ready. A Run
// that fails before Ready fails the test; a Run that returns an error after
// cancellation is reported as a test error.
func Start(t testing.TB, svc Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	started := true // false when Run already returned before Ready
	t.Cleanup(func() {
		cancel()
		if !started {
			return
		}
		if err := <-done; err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	})
	if err, ended := wait(svc.Ready(), done); ended {
		started = false
		t.Fatalf("Run: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
}

// Wait returns once ready is closed. When done (the service's Run result)
// delivers first, or nothing happens within ReadyTimeout, it fails the
// test; a Run result read here is not delivered again.
func Wait(t testing.TB, ready <-chan struct{}, done <-chan error) {
	t.Helper()
	if err, ended := wait(ready, done); ended {
		t.Fatalf("service stopped before it was ready: Run = %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
}

// wait returns (Run's error, true) when Run ended first, (err, false) on
// timeout, (nil, false) when ready.
func wait(ready <-chan struct{}, done <-chan error) (error, bool) {
	timer := time.NewTimer(ReadyTimeout)
	defer timer.Stop()
	select {
	case <-ready:
		return nil, false
	case err := <-done:
		return err, true
	case <-timer.C:
		return errNotReady, false
	}
}

var errNotReady = fmt.Errorf("service neither ready nor stopped within %s", ReadyTimeout)

// Listen binds a TCP listener on addr (such as "127.0.0.1:0") for a
// service to take over, and closes it when the test ends.
func Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	l, err := listen.TCP(netip.MustParseAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// ListenUDP binds a UDP socket on addr (such as "127.0.0.1:0") for a
// service to take over, and closes it when the test ends.
func ListenUDP(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	c, err := listen.UDP(netip.MustParseAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// SameUDPPort binds one UDP socket on each address, all on one port (a
// DHCP server and its relay), and closes them when the test ends.
func SameUDPPort(t testing.TB, addrs ...string) []*net.UDPConn {
	t.Helper()
	as := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		as[i] = netip.MustParseAddr(a)
	}
	conns, err := listen.SameUDPPort(as...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

// Port returns the port of a socket from Listen, ListenUDP or SameUDPPort.
func Port(a net.Addr) uint16 { return listen.Port(a) }

// UntilExit returns a context derived from parent that also ends when
// exited closes, with "WHO Run returned ERR" as its cause (err is read
// only then): a wait on it fails at once, saying why, when the thing it
// waits on has stopped. It is cancelled when t ends.
func UntilExit(t testing.TB, parent context.Context, exited <-chan struct{}, who string, err func() error) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancelCause(parent)
	t.Cleanup(func() { cancel(nil) })
	go func() {
		select {
		case <-exited:
			cancel(fmt.Errorf("%s Run returned %v", who, err()))
		case <-ctx.Done():
		}
	}()
	return ctx
}
