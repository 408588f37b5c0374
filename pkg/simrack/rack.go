package simrack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/pin/tftp/v3"

	"github.com/slipway-dev/slipway/pkg/bmc/redfishsim"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

// Fault is a failure injected into one machine.
type Fault string

// Faults.
const (
	// FaultNone: the machine works.
	FaultNone Fault = ""
	// FaultNoPXE: the machine never sends a DHCP request.
	FaultNoPXE Fault = "no-pxe"
	// FaultHangOS: the OS fetches its config but never reports a join.
	FaultHangOS Fault = "hang-os"
	// FaultDeadBMC: the BMC answers every request with 503.
	FaultDeadBMC Fault = "dead-bmc"
)

// ParseFault parses a fault name.
func ParseFault(s string) (Fault, error) {
	switch f := Fault(s); f {
	case FaultNone, FaultNoPXE, FaultHangOS, FaultDeadBMC:
		return f, nil
	}
	return "", fmt.Errorf("fault %q: want no-pxe, hang-os or dead-bmc", s)
}

// Config configures a Rack.
type Config struct {
	// Nodes are the machines to simulate. Each needs a MAC and an IP in
	// 127.0.0.0/8 other than the provisioner's (the machine's HTTP requests
	// come from it). Their BMC fields are ignored: BMC returns each node's
	// simulated BMC settings.
	Nodes []inventory.Node
	// DHCPServer is the provisioner's DHCP server (such as 127.0.0.1:10067).
	DHCPServer netip.AddrPort
	// Relay is the relay agent's socket, bound by the caller on the DHCP
	// server's port (where the server sends relayed replies) on another
	// loopback address, such as 127.0.0.2 (see listen.SameUDPPort). The
	// rack closes it. Nil: New binds RelayAddr:DHCPServer.Port itself.
	Relay *net.UDPConn
	// RelayAddr is the relay agent's loopback address when Relay is nil
	// (default 127.0.0.2).
	RelayAddr netip.Addr
	// TFTPServer is the provisioner's TFTP server.
	TFTPServer netip.AddrPort
	// Firmware is how long POST takes before the first DHCP request, and
	// OS how long the OS takes from kernel to the join phone-home; each
	// machine draws its own times in [d, d*(1+Jitter)] (defaults 200ms, 300ms, 0.5).
	Firmware, OS time.Duration
	Jitter       float64
	// Faults injects failures by node name.
	Faults map[string]Fault
	// Username and Password are the simulated BMCs' credentials (default
	// admin / the node name's simulated password); PasswordRef is what the
	// returned BMC settings refer to.
	Username    string
	Password    string
	PasswordRef inventory.SecretRef
	// Seed makes the boot times reproducible (0: random).
	Seed uint64
	// Log receives one debug line per boot step (nil: discard).
	Log *slog.Logger
}

// Rack is a running simulated rack.
type Rack struct {
	cfg      Config
	log      *slog.Logger
	sim      *redfishsim.Sim
	machines map[string]*machine
	order    []*machine
	relay    *net.UDPConn

	mu      sync.Mutex
	waiters map[uint32]chan *dhcpv4.DHCPv4

	started chan struct{} // closed when Run starts: machines may boot
	stopped chan struct{} // closed when Run's context ends: boots stop

	boots atomic.Int64
}

type machine struct {
	node     inventory.Node
	bmc      *redfishsim.BMC
	fault    Fault
	firmware time.Duration
	os       time.Duration
	http     *http.Client

	mu      sync.Mutex
	gen     int
	on      bool
	joined  bool
	cfgSeen bool
	stage   string
	booted  time.Time
	took    time.Duration // last boot: power on to join
}

// New starts one simulated BMC per node and the DHCP relay. Call Run to
// let machines boot, and Close (or cancel Run) to stop.
func New(cfg Config) (*Rack, error) {
	if !cfg.RelayAddr.IsValid() {
		cfg.RelayAddr = netip.MustParseAddr("127.0.0.2")
	}
	if cfg.Firmware <= 0 {
		cfg.Firmware = 200 * time.Millisecond
	}
	if cfg.OS <= 0 {
		cfg.OS = 300 * time.Millisecond
	}
	if cfg.Jitter == 0 {
		cfg.Jitter = 0.5
	}
	if cfg.Username == "" {
		cfg.Username = "admin"
	}
	if cfg.Password == "" {
		cfg.Password = "simulated"
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !cfg.DHCPServer.IsValid() || !cfg.TFTPServer.IsValid() {
		return nil, errors.New("start simulated rack: DHCPServer and TFTPServer are required")
	}
	sim, err := redfishsim.New(redfishsim.Config{Log: log})
	if err != nil {
		return nil, err
	}
	r := &Rack{cfg: cfg, log: log, sim: sim, machines: map[string]*machine{}, waiters: map[uint32]chan *dhcpv4.DHCPv4{}, started: make(chan struct{}), stopped: make(chan struct{})}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	jit := func(d time.Duration) time.Duration {
		return d + time.Duration(rng.Float64()*cfg.Jitter*float64(d))
	}
	for _, n := range cfg.Nodes {
		if !n.IP.Is4() || !n.IP.IsLoopback() {
			r.Close()
			return nil, fmt.Errorf("start simulated rack: node %s: ip %v is not an IPv4 loopback address", n.Name, n.IP)
		}
		m := &machine{node: n, fault: cfg.Faults[n.Name], firmware: jit(cfg.Firmware), os: jit(cfg.OS)}
		m.http = &http.Client{Transport: &http.Transport{
			DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: n.IP.AsSlice()}, Timeout: 5 * time.Second}).DialContext,
			DisableKeepAlives: true,
		}}
		bc := redfishsim.BMCConfig{Name: n.Name, Username: cfg.Username, Password: cfg.Password,
			SerialNumber: "SIM-" + n.Name, OnPower: r.onPower}
		if m.fault == FaultDeadBMC {
			bc.Faults = redfishsim.Faults{ErrorStatus: http.StatusServiceUnavailable}
		}
		b, err := sim.Start(bc)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("start simulated bmc of %s: %w", n.Name, err)
		}
		m.bmc = b
		r.machines[n.Name] = m
		r.order = append(r.order, m)
	}
	if cfg.Relay != nil {
		r.relay = cfg.Relay
		r.cfg.RelayAddr = cfg.Relay.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		return r, nil
	}
	relay, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.RelayAddr, cfg.DHCPServer.Port())))
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("start simulated rack: dhcp relay on %s:%d: %w", cfg.RelayAddr, cfg.DHCPServer.Port(), err)
	}
	r.relay = relay
	return r, nil
}

// BMC returns the inventory BMC settings of node's simulated BMC.
func (r *Rack) BMC(node string) (inventory.BMC, bool) {
	m, ok := r.machines[node]
	if !ok {
		return inventory.BMC{}, false
	}
	ap := m.bmc.Addr()
	return inventory.BMC{
		URL: m.bmc.URL(), Protocol: inventory.ProtocolRedfish, Scheme: "http",
		Host: ap.Addr().String(), Port: ap.Port(), Username: r.cfg.Username, Password: r.cfg.PasswordRef,
	}, true
}

// Ready is closed once Run has started (the rack's sockets are bound by
// New): machines boot from then on.
func (r *Rack) Ready() <-chan struct{} { return r.started }

// Run serves the relay until ctx is done, then stops every BMC. Machines
// boot only while Run runs. Run once.
func (r *Rack) Run(ctx context.Context) error {
	close(r.started)
	go func() {
		<-ctx.Done()
		close(r.stopped)
		r.Close()
	}()
	buf := make([]byte, 1500)
	for {
		n, _, err := r.relay.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("simulated rack: dhcp relay read: %w", err)
		}
		msg, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			continue
		}
		r.mu.Lock()
		ch := r.waiters[binary.BigEndian.Uint32(msg.TransactionID[:])]
		r.mu.Unlock()
		if ch != nil {
			select {
			case ch <- msg:
			default:
			}
		}
	}
}

// Close stops the relay and every simulated BMC.
func (r *Rack) Close() error {
	if r.relay != nil {
		r.relay.Close()
	}
	return r.sim.Close()
}

// MachineStats is what one simulated machine went through.
type MachineStats struct {
	Node string
	// Boot is the machine's simulated firmware plus OS time.
	Boot time.Duration
	// Took is its last boot from power on to its join report (0 if it
	// never joined).
	Took time.Duration
	// Joined: the provisioner answered the machine's report that kubeadm
	// init or join succeeded.
	Joined bool
	// Stage is the last boot step it reached.
	Stage string
	// BMC holds the simulated BMC's request counters.
	BMC redfishsim.Stats
}

// Stats returns every machine's figures in node order.
func (r *Rack) Stats() []MachineStats {
	out := make([]MachineStats, 0, len(r.order))
	for _, m := range r.order {
		m.mu.Lock()
		out = append(out, MachineStats{Node: m.node.Name, Boot: m.firmware + m.os, Took: m.took, Joined: m.joined, Stage: m.stage})
		m.mu.Unlock()
		out[len(out)-1].BMC = m.bmc.Stats()
	}
	return out
}

// Boots returns how many network boots machines started.
func (r *Rack) Boots() int64 { return r.boots.Load() }

func (r *Rack) onPower(_ context.Context, ev redfishsim.PowerEvent) error {
	m, ok := r.machines[ev.BMC]
	if !ok {
		return fmt.Errorf("no simulated machine %s", ev.BMC)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	m.on = ev.Action != "off"
	if !m.on {
		m.stage = "off"
		return nil
	}
	m.booted = time.Now()
	if ev.Boot.Target != "Pxe" {
		m.stage = "booting from disk"
		return nil // nothing installed on disk in the simulation
	}
	r.boots.Add(1)
	gen := m.gen
	legacy := ev.Boot.Mode == "Legacy"
	go r.boot(m, gen, legacy)
	return nil
}

func (m *machine) alive(gen int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.on && m.gen == gen
}

func (m *machine) setStage(s string) {
	m.mu.Lock()
	m.stage = s
	m.mu.Unlock()
}

// bootContext returns a context for one boot that ends when Run's does.
// Boots start from BMC power hooks, whose request contexts end at once.
func (r *Rack) bootContext() (context.Context, context.CancelFunc) {
	<-r.started
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-r.stopped:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

var (
	reKernel = regexp.MustCompile(`(?m)^kernel (\S+)`)
	reInitrd = regexp.MustCompile(`initrd (http\S+)`)
	reConfig = regexp.MustCompile(`slipway\.config=(\S+)`)
	rePhone  = regexp.MustCompile(`phonehome=(\S+)`)
)

// boot is one network boot of m, abandoned as soon as the machine is
// powered off or reset (gen changes).
func (r *Rack) boot(m *machine, gen int, legacy bool) {
	ctx, cancel := r.bootContext()
	defer cancel()
	log := r.log.With("node", m.node.Name)
	sleep := func(d time.Duration) bool {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return false
		}
		return m.alive(gen)
	}
	fail := func(step string, err error) {
		log.Debug("simulated boot stopped", "phase", step, "err", err)
		m.setStage("stopped at " + step)
	}
	if m.fault == FaultNoPXE {
		m.setStage("no network boot (fault)")
		return
	}
	m.setStage("post")
	if !sleep(m.firmware) {
		return
	}
	// Firmware PXE: DHCP for the iPXE binary.
	m.setStage("dhcp")
	ack, err := r.dhcp(ctx, m, legacy, false)
	if err != nil {
		fail("dhcp", err)
		return
	}
	if !m.alive(gen) {
		return
	}
	m.setStage("tftp")
	if err := r.tftpGet(ack.BootFileName); err != nil {
		fail("tftp "+ack.BootFileName, err)
		return
	}
	// iPXE asks again and gets its script URL.
	ack, err = r.dhcp(ctx, m, legacy, true)
	if err != nil {
		fail("ipxe dhcp", err)
		return
	}
	m.setStage("script")
	script, err := m.get(ctx, ack.BootFileName)
	if err != nil {
		fail("script", err)
		return
	}
	urls := map[string]string{}
	for name, re := range map[string]*regexp.Regexp{"kernel": reKernel, "initrd": reInitrd, "config": reConfig, "phonehome": rePhone} {
		mm := re.FindStringSubmatch(script)
		if mm == nil {
			fail("script", fmt.Errorf("script has no %s", name))
			return
		}
		urls[name] = mm[1]
	}
	for _, k := range []string{"kernel", "initrd"} {
		m.setStage(k)
		if _, err := m.get(ctx, urls[k]); err != nil {
			fail(k, err)
			return
		}
		if !m.alive(gen) {
			return
		}
	}
	// The OS boots and fetches its config (cloud-init's datasource).
	m.setStage("os boot")
	if !sleep(m.os / 3) {
		return
	}
	m.setStage("config")
	cfg, err := m.get(ctx, urls["config"])
	if err != nil {
		fail("config", err)
		return
	}
	m.mu.Lock()
	m.cfgSeen = true
	m.mu.Unlock()
	if m.fault == FaultHangOS {
		m.setStage("hung in the OS (fault)")
		return
	}
	nc, err := parseNodeConfig(cfg)
	if err != nil {
		fail("run node config", err)
		return
	}
	r.runNodeConfig(ctx, m, gen, nc, sleep)
}

// runNodeConfig sends the reports of the node config in order. The rest of
// the OS time (kubeadm's work) passes before the first report that is not
// "started"; a report on an until-loop is repeated until the provisioner
// answers (it may be restarting), the others are sent once.
func (r *Rack) runNodeConfig(ctx context.Context, m *machine, gen int, nc nodeConfig, sleep func(time.Duration) bool) {
	worked := false
	for _, cr := range nc.reports {
		if !cr.started && !worked {
			m.setStage("kubeadm")
			if !sleep(m.os - m.os/3) {
				return
			}
			worked = true
		}
		for {
			err := m.post(ctx, nc.phoneHome, cr.body)
			if err == nil {
				break
			}
			if !cr.retry || !sleep(100*time.Millisecond) {
				if !m.alive(gen) {
					return
				}
				break
			}
		}
		if cr.ok && cr.report.Joined() {
			m.mu.Lock()
			m.joined = true
			m.took = time.Since(m.booted)
			m.stage = "joined"
			m.mu.Unlock()
		}
	}
}

// get fetches url. The node config may be held by the provisioner until
// the node's turn (early netboot), so it gets 10 minutes, the rest 30s.
func (m *machine) get(ctx context.Context, url string) (string, error) {
	timeout := 30 * time.Second
	if strings.Contains(url, "/config/") {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

func (m *machine) post(ctx context.Context, url, body string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return nil
}

// Retransmission timeouts of the DHCP clients the machines stand for: PXE
// firmware waits 4, 8, 16 and 32 s for an answer (PXE 2.1, then PXE-E51
// and on to the next boot device), iPXE 1, 2, 4 and 8 s.
var (
	pxeDHCPTimeouts  = []time.Duration{4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second}
	ipxeDHCPTimeouts = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
)

// dhcp does DISCOVER/OFFER then REQUEST/ACK through the relay, retrying
// as the firmware (or iPXE) does, and returns the ACK.
func (r *Rack) dhcp(ctx context.Context, m *machine, legacy, ipxe bool) (*dhcpv4.DHCPv4, error) {
	timeouts := pxeDHCPTimeouts
	if ipxe {
		timeouts = ipxeDHCPTimeouts
	}
	return r.dhcpSession(ctx, m, legacy, ipxe, timeouts)
}

// dhcpSession is one DHCP session of a client that waits timeouts[i]
// after its i-th DISCOVER. As PXE ROMs and iPXE do, it picks its
// transaction ID once: every retransmission and the REQUEST carry it, so
// an OFFER or ACK that answers an earlier transmission late still counts;
// secs grows with the session. A NAK or a REQUEST left unanswered starts
// over with the next DISCOVER.
func (r *Rack) dhcpSession(ctx context.Context, m *machine, legacy, ipxe bool, timeouts []time.Duration) (*dhcpv4.DHCPv4, error) {
	mods := []dhcpv4.Modifier{dhcpv4.WithGatewayIP(net.IP(r.cfg.RelayAddr.AsSlice()))}
	if legacy {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
	} else {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)))
	}
	if ipxe {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))
	}
	mac := net.HardwareAddr(m.node.MAC)
	disc, err := dhcpv4.NewDiscovery(mac, mods...)
	if err != nil {
		return nil, err
	}
	replies, stop := r.await(disc.TransactionID)
	defer stop()
	start := time.Now()
	var lastErr error
	for _, wait := range timeouts {
		disc.NumSeconds = uint16(time.Since(start) / time.Second)
		offer, err := r.exchange(ctx, replies, disc, dhcpv4.MessageTypeOffer, wait)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			lastErr = err
			continue
		}
		req, err := dhcpv4.NewRequestFromOffer(offer, mods...)
		if err != nil {
			return nil, err
		}
		req.NumSeconds = uint16(time.Since(start) / time.Second)
		ack, err := r.exchange(ctx, replies, req, dhcpv4.MessageTypeAck, wait)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			lastErr = err
			continue
		}
		return ack, nil
	}
	return nil, fmt.Errorf("no dhcp answer for %s after %d tries: %w", mac, len(timeouts), lastErr)
}

// await registers a DHCP session's transaction ID with the relay and
// returns the channel its replies arrive on, until stop is called.
func (r *Rack) await(xid dhcpv4.TransactionID) (<-chan *dhcpv4.DHCPv4, func()) {
	ch := make(chan *dhcpv4.DHCPv4, 8)
	key := binary.BigEndian.Uint32(xid[:])
	r.mu.Lock()
	r.waiters[key] = ch
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		delete(r.waiters, key)
		r.mu.Unlock()
	}
}

// exchange sends msg and waits up to wait for a reply of type want on
// replies (other replies of the session, such as a late OFFER while an ACK
// is awaited, are ignored).
func (r *Rack) exchange(ctx context.Context, replies <-chan *dhcpv4.DHCPv4, msg *dhcpv4.DHCPv4, want dhcpv4.MessageType, wait time.Duration) (*dhcpv4.DHCPv4, error) {
	if _, err := r.relay.WriteToUDP(msg.ToBytes(), net.UDPAddrFromAddrPort(r.cfg.DHCPServer)); err != nil {
		return nil, err
	}
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	for {
		select {
		case resp := <-replies:
			if resp.MessageType() == want {
				return resp, nil
			}
			if want == dhcpv4.MessageTypeAck && resp.MessageType() == dhcpv4.MessageTypeNak {
				return nil, errors.New("dhcp nak")
			}
		case <-timeout.C:
			return nil, fmt.Errorf("no dhcp %s within %s", want, wait)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (r *Rack) tftpGet(file string) error {
	c, err := tftp.NewClient(r.cfg.TFTPServer.String())
	if err != nil {
		return err
	}
	c.SetTimeout(2 * time.Second)
	c.SetRetries(3)
	c.SetBlockSize(1432) // what PXE ROMs negotiate on a 1500-byte MTU
	c.RequestTSize(true)
	wt, err := c.Receive(file, "octet")
	if err != nil {
		return err
	}
	_, err = wt.WriteTo(io.Discard)
	return err
}
