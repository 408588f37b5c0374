package ra

import (
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/ndp"

	"github.com/slipway-dev/slipway/internal/servetest"
	"github.com/slipway-dev/slipway/internal/testenv"
)

const dadNetnsEnv = "SLIPWAY_RA_DAD_TEST_NETNS"

// TestRetriesWhileLinkLocalTentative starts an Advertiser the moment its
// link comes up, while the link-local address is still tentative
// (duplicate address detection, made to last about three seconds here),
// as serve does on a freshly cabled or just created interface. Listening
// then fails with "cannot assign requested address"; the advertiser must
// say it is waiting, retry, and advertise once the address is usable,
// instead of staying off for good.
func TestRetriesWhileLinkLocalTentative(t *testing.T) {
	if os.Getenv(dadNetnsEnv) != "" {
		dadInNetns(t)
		return
	}
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip")
	ns := "slipway-ra-dad-" + strconv.Itoa(os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run("-n", ns, "link", "add", "ra0", "type", "veth", "peer", "name", "ra1")
	// ra0 (the advertiser's) keeps DAD, with three probes; ra1 (the
	// soliciting client's) skips it so it can listen at once.
	if out, err := exec.Command("ip", "netns", "exec", ns, "sh", "-c",
		"echo 1 > /proc/sys/net/ipv6/conf/ra0/accept_dad && echo 3 > /proc/sys/net/ipv6/conf/ra0/dad_transmits && echo 0 > /proc/sys/net/ipv6/conf/ra1/accept_dad").CombinedOutput(); err != nil {
		t.Fatalf("set DAD in %s: %v\n%s", ns, err, out)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestRetriesWhileLinkLocalTentative$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), dadNetnsEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("in %s: %v\n%s", ns, err, out)
	}
	t.Logf("in %s:\n%s", ns, out)
}

// lines is a log sink the test can read.
type lines struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func dadInNetns(t *testing.T) {
	if out, err := exec.Command("sh", "-c", "ip link set ra1 up && ip link set ra0 up").CombinedOutput(); err != nil {
		t.Fatalf("links up: %v\n%s", err, out)
	}
	log := &lines{}
	a, err := New(Config{Interface: "ra0", Interval: time.Hour, Log: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// The precondition this test is about: no usable link-local address yet.
	state, _ := exec.Command("ip", "-6", "-o", "addr", "show", "dev", "ra0", "scope", "link").CombinedOutput()
	if strings.Contains(string(state), "fe80:") && !strings.Contains(string(state), "tentative") {
		t.Fatalf("ra0's link-local address is already usable, the test cannot show the retry: %s", state)
	}
	started := time.Now()
	servetest.Start(t, a)
	<-a.Ready()
	if st := a.Status(); st != StatusWaiting {
		t.Errorf("Status() right after start, with ra0's address %q = %s, want %s", strings.TrimSpace(string(state)), st, StatusWaiting)
	}

	ra1, err := net.InterfaceByName("ra1")
	if err != nil {
		t.Fatal(err)
	}
	var c *ndp.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, _, err = ndp.Listen(ra1, ndp.LinkLocal); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listen on ra1: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer c.Close()
	if err := c.JoinGroup(netip.MustParseAddr("ff02::1")); err != nil {
		t.Fatal(err)
	}
	// The advertisement sent when advertising starts arrives once DAD is
	// over; with a one-hour interval nothing else could send one.
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		m, _, _, err := c.ReadFrom()
		if err != nil {
			t.Fatalf("no router advertisement within 20 s of start (status %s); log:\n%s", a.Status(), log)
		}
		if _, ok := m.(*ndp.RouterAdvertisement); ok {
			break
		}
	}
	t.Logf("first advertisement %.1f s after start, once ra0's address was usable", time.Since(started).Seconds())
	if st := a.Status(); st != StatusOn {
		t.Errorf("Status() after advertising = %s, want %s", st, StatusOn)
	}
	out := log.String()
	if !strings.Contains(out, "router advertisements waiting") || !strings.Contains(out, "router advertisements on") {
		t.Errorf("log lacks the waiting and on lines:\n%s", out)
	}
	if strings.Contains(out, "router advertisements off") {
		t.Errorf("log says advertisements are off:\n%s", out)
	}
}
