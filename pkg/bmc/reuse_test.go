package bmc_test

import (
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/bmc/redfishsim"
)

// TestRedfishReusesConnections checks that one client's calls share their
// connection instead of opening one per request (gofish marks requests
// Connection: close when it does not own the HTTP client): against a real
// BMC each new connection is a TLS handshake on a slow BMC CPU.
func TestRedfishReusesConnections(t *testing.T) {
	t.Parallel()
	sim := newSim(t)
	b, n := startBMC(t, sim, "node-1", redfishsim.BMCConfig{})
	// A proxy in front of the BMC counts the connections the client opens.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			up, err := net.Dial("tcp", b.Addr().String())
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	ap := netip.MustParseAddrPort(ln.Addr().String())
	n.BMC.Host, n.BMC.Port, n.BMC.URL = ap.Addr().String(), ap.Port(), "redfish+http://"+ap.String()
	c, err := bmc.New(n.Name, n.BMC, fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	defer c.Close(ctx)
	for _, a := range []bmc.PowerAction{bmc.ActionOn, bmc.ActionOff, bmc.ActionOn} {
		if err := c.SetPower(ctx, a); err != nil {
			t.Fatalf("SetPower(%s): %v", a, err)
		}
	}
	reqs := b.Stats().Requests
	if got := conns.Load(); got > 2 {
		t.Errorf("%d requests took %d connections, want them to share one (two at most)", reqs, got)
	}
}
