package bmc_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/bmc/redfishsim"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

// deadAddr returns a loopback address nothing listens on: a TCP socket
// bound to a port but never listening, held until the test ends. A
// connection to it is refused, and no other socket can take the port
// meanwhile (a port probed free and released could be taken by any of the
// tests running beside this one, and answer).
func deadAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*syscall.SockaddrInet4).Port))
}

// blackhole returns a loopback address that accepts TCP connections and
// never answers, like a BMC behind a firewall that drops replies.
func blackhole(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}

// TestFaults runs each fault on one BMC next to a healthy one: the faulty
// node gets a one-line error naming node, bmc address, operation and cause,
// the healthy node completes, and no session is left open.
func TestFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		step   bmc.Step
		cfg    func(*bmc.Config)
		sim    *redfishsim.BMCConfig // nil: the faulty node is a raw address
		addr   func(t *testing.T) netip.AddrPort
		before func(t *testing.T, sb *redfishsim.BMC, n inventory.Node)
		// afterLogin are faults set once the Client has logged in, so the
		// operation rather than the connect meets them.
		afterLogin *redfishsim.Faults
		want       []string // substrings of the error text, besides node and address
	}{
		{name: "dead bmc", step: bmc.StatusStep(), addr: deadAddr,
			want: []string{"power status", "connect", "connection refused"}},
		{name: "blackholed bmc", step: bmc.StatusStep(), addr: blackhole,
			cfg:  func(c *bmc.Config) { c.ConnectTimeout = 3 * time.Second },
			want: []string{"power status", "connect: no answer within 3s"}},
		{name: "slow bmc", step: bmc.StatusStep(),
			sim: &redfishsim.BMCConfig{}, afterLogin: &redfishsim.Faults{Latency: time.Minute},
			cfg:  func(c *bmc.Config) { c.OpTimeout = 3 * time.Second },
			want: []string{"power status", "read power state: no answer within 3s"}},
		{name: "hanging bmc", step: bmc.PowerStep(bmc.ActionOn),
			sim: &redfishsim.BMCConfig{}, afterLogin: &redfishsim.Faults{Hang: true},
			cfg:  func(c *bmc.Config) { c.OpTimeout = 3 * time.Second },
			want: []string{"power on", "no answer within 3s"}},
		{name: "http 500", step: bmc.StatusStep(),
			sim:  &redfishsim.BMCConfig{Faults: redfishsim.Faults{ErrorStatus: 500}},
			want: []string{"power status", "connect: read system: bmc error (HTTP 500: The request failed due to an internal service error.)"}},
		{name: "http 500 after login", step: bmc.BootStep(bmc.BootPXE, bmc.BootOptions{}),
			sim: &redfishsim.BMCConfig{}, afterLogin: &redfishsim.Faults{ErrorStatus: 500},
			want: []string{"set boot device pxe", "set boot override: bmc error (HTTP 500: The request failed due to an internal service error.)"}},
		{name: "wrong password", step: bmc.StatusStep(),
			sim:  &redfishsim.BMCConfig{Faults: redfishsim.Faults{RejectCredentials: true}},
			want: []string{"power status", "connect: log in: credentials refused (HTTP 401: Invalid username or password.)"}},
		{name: "session limit", step: bmc.StatusStep(),
			sim: &redfishsim.BMCConfig{Faults: redfishsim.Faults{MaxSessions: 1}},
			before: func(t *testing.T, _ *redfishsim.BMC, n inventory.Node) {
				// Someone else holds the only session.
				c, err := bmc.Dial(context.Background(), n.Name, n.BMC, fastConfig())
				if err != nil {
					t.Fatalf("Dial for the session holder: %v", err)
				}
				t.Cleanup(func() { c.Close(context.Background()) })
			},
			want: []string{"power status", "connect: log in: session limit reached (HTTP 503: The maximum number of user sessions is reached. (Close one or more sessions and retry the operation))"}},
		{name: "bmc acknowledges but does not change state", step: bmc.PowerStep(bmc.ActionOn),
			sim:  &redfishsim.BMCConfig{Faults: redfishsim.Faults{IgnorePower: true}},
			want: []string{"power on", "bmc acknowledged the request but power is still off, not on, after 2s"}},
		{name: "malformed json", step: bmc.StatusStep(),
			sim:  &redfishsim.BMCConfig{Faults: redfishsim.Faults{MalformedJSON: true}},
			want: []string{"power status", "connect: read system: malformed JSON from bmc: unexpected EOF"}},
		{name: "missing password variable", step: bmc.StatusStep(), addr: deadAddr,
			want: []string{"power status", "read password: resolve secret env:SLIPWAY_TEST_UNSET_PASSWORD: environment variable SLIPWAY_TEST_UNSET_PASSWORD is not set"}},
		{name: "unreadable password file", step: bmc.StatusStep(), addr: deadAddr,
			want: []string{"power status", "read password: resolve secret file:/nonexistent/bmc-password", "no such file or directory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim := newSim(t)
			good, goodNode := startBMC(t, sim, "good", redfishsim.BMCConfig{})
			var bad inventory.Node
			var sb *redfishsim.BMC
			if tc.sim != nil {
				sb, bad = startBMC(t, sim, "bad", *tc.sim)
			} else {
				ap := tc.addr(t)
				bad = inventory.Node{Name: "bad", BMC: redfishNodeBMC(t, "redfish+http://"+ap.String(), ap, false, sim)}
				bad.BMC.Password = passwordFile(t, testPassword)
			}
			switch tc.name {
			case "missing password variable":
				bad.BMC.Password = inventory.SecretRef{Source: "env", Name: "SLIPWAY_TEST_UNSET_PASSWORD"}
			case "unreadable password file":
				bad.BMC.Password = inventory.SecretRef{Source: "file", Name: "/nonexistent/bmc-password"}
			}
			if tc.before != nil {
				tc.before(t, sb, bad)
			}
			cfg := fastConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			var logBuf bytes.Buffer
			cfg.Log = slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))

			steps := []bmc.Step{tc.step}
			if tc.afterLogin != nil {
				inject := bmc.Step{Name: "inject", Do: func(_ context.Context, c *bmc.Client, _ *bmc.Result) error {
					if c.Node() == "bad" {
						sb.SetFaults(*tc.afterLogin)
					}
					return nil
				}}
				steps = []bmc.Step{inject, tc.step}
			}
			res := bmc.Run(context.Background(), []inventory.Node{bad, goodNode}, bmc.RunConfig{Client: cfg}, steps...)

			if res[1].Err != nil {
				t.Errorf("Run: healthy node failed next to %s: %v", tc.name, res[1].Err)
			}
			if good.Sessions() != 0 {
				t.Errorf("healthy bmc has %d sessions open after Run, want 0", good.Sessions())
			}
			err := res[0].Err
			if err == nil {
				t.Fatalf("Run with %s: no error, want one", tc.name)
			}
			var oe *bmc.OpError
			if !errors.As(err, &oe) {
				t.Errorf("Run with %s: error %T is not an *bmc.OpError", tc.name, err)
			}
			msg := err.Error()
			want := append([]string{"bad (bmc " + bad.BMC.Addr() + ")"}, tc.want...)
			for _, w := range want {
				if !strings.Contains(msg, w) {
					t.Errorf("Run with %s: error %q does not contain %q", tc.name, msg, w)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("Run with %s: error is not one line: %q", tc.name, msg)
			}
			if strings.Contains(msg, testPassword) || strings.Contains(logBuf.String(), testPassword) {
				t.Errorf("Run with %s: the password leaked into the error or the log", tc.name)
			}
			// A hanging or too slow BMC cannot answer the logout either (Close
			// reports it); the session holder of "session limit" closes at
			// cleanup.
			if sb != nil && tc.name != "session limit" && tc.name != "hanging bmc" && tc.name != "slow bmc" {
				if n := sb.Sessions(); n != 0 {
					t.Errorf("faulty bmc has %d sessions open after Run, want 0", n)
				}
			}
		})
	}
}
