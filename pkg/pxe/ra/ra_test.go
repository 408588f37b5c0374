package ra

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/ndp"

	"github.com/slipway-dev/slipway/internal/testenv"

	"github.com/slipway-dev/slipway/internal/servetest"
)

func TestMessage(t *testing.T) {
	ifi := &net.Interface{Name: "br0", HardwareAddr: net.HardwareAddr{0x02, 0, 0, 0, 0, 1}}
	cidr := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	addrs := []net.Addr{
		cidr("10.77.0.1/24"),
		cidr("fe80::1/64"),
		cidr("fd77::1/64"),
		cidr("fd77::2/64"), // same prefix: advertised once
		cidr("2001:db8::1/48"),
	}
	m := Message(ifi, addrs)
	if m.RouterLifetime != 0 || m.ManagedConfiguration || m.OtherConfiguration {
		t.Errorf("Message: lifetime %v, M %v, O %v; want 0, false, false (not a router, no DHCPv6)", m.RouterLifetime, m.ManagedConfiguration, m.OtherConfiguration)
	}
	var got []string
	for _, o := range m.Options {
		switch o := o.(type) {
		case *ndp.PrefixInformation:
			got = append(got, "prefix "+netip.PrefixFrom(o.Prefix, int(o.PrefixLength)).String())
		case *ndp.LinkLayerAddress:
			got = append(got, "source "+o.Addr.String())
		}
	}
	want := []string{"prefix fd77::/64", "source 02:00:00:00:00:01"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Message options (-want +got):\n%s", diff)
	}
}

const netnsEnv = "SLIPWAY_RA_TEST_NETNS"

// TestAnswersRouterSolicitation runs an Advertiser on one end of a veth pair
// in a network namespace the test creates, solicits from the other end, and
// checks the advertisement. The namespace part runs in a child process
// started with `ip netns exec`, so every thread is in the namespace.
func TestAnswersRouterSolicitation(t *testing.T) {
	if os.Getenv(netnsEnv) != "" {
		inNetns(t)
		return
	}
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip")
	ns := "slipway-ra-" + strconv.Itoa(os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "netns", "exec", ns, "sh", "-c",
		"echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad; echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad").CombinedOutput(); err != nil {
		t.Fatalf("disable DAD in %s: %v\n%s", ns, err, out)
	}
	run("-n", ns, "link", "add", "ra0", "type", "veth", "peer", "name", "ra1")
	run("-n", ns, "addr", "add", "fd99::1/64", "dev", "ra0", "nodad")
	run("-n", ns, "link", "set", "ra0", "up")
	run("-n", ns, "link", "set", "ra1", "up")
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestAnswersRouterSolicitation$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("in %s: %v\n%s", ns, err, out)
	}
}

// inNetns is the namespace side: advertise on ra0, solicit on ra1.
func inNetns(t *testing.T) {
	ra0, err := net.InterfaceByName("ra0")
	if err != nil {
		t.Fatal(err)
	}
	ra1, err := net.InterfaceByName("ra1")
	if err != nil {
		t.Fatal(err)
	}
	// Link-local addresses appear once the links are up.
	var c *ndp.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, _, err = ndp.Listen(ra1, ndp.LinkLocal); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listen on ra1: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer c.Close()
	if err := c.JoinGroup(netip.MustParseAddr("ff02::1")); err != nil {
		t.Fatal(err)
	}
	for {
		if addrs, _ := ra0.Addrs(); len(addrs) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ra0 has no link-local address")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A long interval: only a solicitation can trigger the second advertisement.
	a, err := New(Config{Interface: "ra0", Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	servetest.Start(t, a)

	readRA := func(what string) *ndp.RouterAdvertisement {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			m, _, _, err := c.ReadFrom()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if ra, ok := m.(*ndp.RouterAdvertisement); ok {
				return ra
			}
		}
	}
	readRA("unsolicited advertisement at start")
	rs := &ndp.RouterSolicitation{Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ra1.HardwareAddr}}}
	if err := c.WriteTo(rs, nil, netip.MustParseAddr("ff02::2")); err != nil {
		t.Fatal(err)
	}
	ra := readRA("advertisement after a solicitation")
	var prefixes []string
	for _, o := range ra.Options {
		if p, ok := o.(*ndp.PrefixInformation); ok {
			prefixes = append(prefixes, netip.PrefixFrom(p.Prefix, int(p.PrefixLength)).String())
		}
	}
	if diff := cmp.Diff([]string{"fd99::/64"}, prefixes); diff != "" || ra.RouterLifetime != 0 {
		t.Errorf("advertisement: lifetime %v, prefixes (-want +got):\n%s", ra.RouterLifetime, diff)
	}
}
