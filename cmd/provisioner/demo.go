package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/provision/wire"
	"github.com/slipway-dev/slipway/pkg/pxe"
	"github.com/slipway-dev/slipway/pkg/pxe/httpboot"
	"github.com/slipway-dev/slipway/pkg/simrack"
)

// demoFlags are demo's own flags.
type demoFlags struct {
	nodes         int
	controlPlanes int
	firmware      time.Duration
	osBoot        time.Duration
	fails         []string
	seed          uint64
	// figures receives the run's figures (benchmarks).
	figures *demoFigures
}

func newDemoCmd(g *globals) *cobra.Command {
	var f upFlags
	var d demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run up against a simulated rack on loopback (no hardware, no root)",
		Long: "demo starts an in-process simulated rack — one Redfish BMC simulator per node on 127.0.0.1, each\n" +
			"attached to a simulated machine whose firmware really speaks DHCP (through a relay on 127.0.0.2),\n" +
			"TFTP and HTTP to the provisioner's own boot services on high loopback ports, and whose OS fetches\n" +
			"its node config and phones home its join — and runs the same code path as `up` against it, with the\n" +
			"same live view and summary. It needs no root and touches nothing outside a temporary directory.\n" +
			"The simulation has no Kubernetes API: a node counts as Ready once it phoned home its join, and the\n" +
			"node config is the boot server's placeholder, not a kubeadm join.\n\n" +
			"Inject failures with --fail NODE=no-pxe|hang-os|dead-bmc (repeatable). Unless given, --parallel\n" +
			"is the number of nodes, --early-netboot is on, and the phase timeouts scale with the simulated\n" +
			"boot times (at least 3s).",
		Example: "  provisioner demo\n  provisioner demo --nodes 1000 -o plain | tail\n  provisioner demo --fail node-0003=no-pxe --fail node-0005=hang-os",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			if d.nodes < 1 || d.nodes > 60000 {
				return usageError("--nodes %d: want 1 to 60000", d.nodes)
			}
			if d.controlPlanes < 1 || d.controlPlanes > d.nodes {
				return usageError("--control-planes %d: want 1 to --nodes", d.controlPlanes)
			}
			if !cmd.Flags().Changed("parallel") {
				f.parallel = d.nodes
			}
			if !cmd.Flags().Changed("early-netboot") {
				f.earlyBoot = true
			}
			// Timeouts scale with the simulated boot unless given.
			scale := func(name string, v *time.Duration, d time.Duration) {
				if !cmd.Flags().Changed(name) {
					*v = max(d, 3*time.Second)
				}
			}
			slowest := time.Duration(1.5 * float64(d.firmware+d.osBoot))
			scale("dhcp-timeout", &f.timeouts.DHCP, 3*d.firmware+2*time.Second)
			scale("netboot-timeout", &f.timeouts.Netboot, 2*slowest+2*time.Second)
			scale("join-timeout", &f.timeouts.Join, 3*slowest+2*time.Second)
			scale("ready-timeout", &f.timeouts.Ready, 3*slowest+2*time.Second)
			if !cmd.Flags().Changed("state-dir") {
				g.stateDir = ""
			}
			return runDemo(cmd.Context(), g, &f, &d)
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.IntVar(&d.nodes, "nodes", 16, "number of simulated nodes")
	fl.IntVar(&d.controlPlanes, "control-planes", 1, "how many of them are control-plane nodes")
	fl.DurationVar(&d.firmware, "boot-firmware", 300*time.Millisecond, "simulated firmware time from power on to the first DHCP request (each node draws up to 1.5x)")
	fl.DurationVar(&d.osBoot, "boot-os", 700*time.Millisecond, "simulated OS time from kernel to the join phone-home (each node draws up to 1.5x)")
	fl.StringArrayVar(&d.fails, "fail", nil, "inject a failure: NODE=no-pxe, NODE=hang-os or NODE=dead-bmc (repeatable)")
	fl.Uint64Var(&d.seed, "seed", 0, "seed for the simulated boot times (0: random)")
	return cmd
}

func runDemo(ctx context.Context, g *globals, f *upFlags, d *demoFlags) error {
	tmp, err := os.MkdirTemp("", "slipway-demo-")
	if err != nil {
		return fmt.Errorf("demo: create temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	if g.stateDir == "" {
		g.stateDir = filepath.Join(tmp, "state")
	}
	faults := map[string]simrack.Fault{}
	for _, s := range d.fails {
		node, name, ok := strings.Cut(s, "=")
		fault, err := simrack.ParseFault(name)
		if !ok || err != nil {
			return usageError("--fail %q: want NODE=no-pxe, NODE=hang-os or NODE=dead-bmc", s)
		}
		faults[node] = fault
	}
	// Files the boot services serve: stand-ins for the iPXE binaries, the
	// kernel and the initrd.
	tftpRoot, assets := filepath.Join(tmp, "ipxe"), filepath.Join(tmp, "assets")
	for path, size := range map[string]int{
		filepath.Join(tftpRoot, "undionly.kpxe"): 70 << 10, filepath.Join(tftpRoot, "snponly.efi"): 200 << 10,
		filepath.Join(assets, "vmlinuz"): 64 << 10, filepath.Join(assets, "initrd.img"): 256 << 10,
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if err := os.WriteFile(path, bytes.Repeat([]byte{0x5a}, size), 0o644); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	pwFile := filepath.Join(tmp, "bmc-password")
	if err := os.WriteFile(pwFile, []byte("simulated\n"), 0o600); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	dhcpPort, err := freeDHCPPort()
	if err != nil {
		return err
	}
	tftpPort, err := freePort("udp4")
	if err != nil {
		return err
	}
	httpPort, err := freePort("tcp4")
	if err != nil {
		return err
	}
	lo := netip.MustParseAddr("127.0.0.1")
	inv := demoInventory(d, httpPort)
	for name := range faults {
		if _, ok := inv.Node(name); !ok {
			return usageError("--fail %s: no such node (nodes are %s ... %s)", name, inv.Nodes[0].Name, inv.Nodes[len(inv.Nodes)-1].Name)
		}
	}
	rack, err := simrack.New(simrack.Config{
		Nodes: inv.Nodes, DHCPServer: netip.AddrPortFrom(lo, dhcpPort), TFTPServer: netip.AddrPortFrom(lo, tftpPort),
		Firmware: d.firmware, OS: d.osBoot, Jitter: 0.5, Faults: faults, Seed: d.seed,
		Password: "simulated", PasswordRef: inventory.SecretRef{Source: "file", Name: pwFile},
	})
	if err != nil {
		return err
	}
	defer rack.Close()
	for i := range inv.Nodes {
		inv.Nodes[i].BMC, _ = rack.BMC(inv.Nodes[i].Name)
	}
	// The placeholder node config (no Kubernetes API in the simulation),
	// journaled before it is served, as up does with the kubeadm one.
	render := wire.NewJournaledRenderer(httpboot.PhoneHomeRenderer{BaseURL: fmt.Sprintf("http://127.0.0.1:%d", httpPort)})
	svc, err := pxe.New(pxe.Config{
		Inventory: inv, TFTPRoot: tftpRoot, AssetDir: assets, Renderer: render,
		HTTPPort: httpPort, DHCPPort: dhcpPort, TFTPPort: tftpPort,
		DHCPListenAddr: lo, SkipInterfaceCheck: true, Log: serviceLogger(g),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "demo: %d simulated nodes (%d control plane), Redfish BMCs on 127.0.0.1, DHCP 127.0.0.1:%d via relay 127.0.0.2, TFTP :%d, HTTP :%d\n",
		d.nodes, d.controlPlanes, dhcpPort, tftpPort, httpPort)
	start := time.Now()
	cpu0, _ := processUsage()
	return runUp(ctx, g, f, upDeps{
		inv: inv, svc: svc, readiness: rack, command: "provisioner demo", render: render,
		bmcConfig: bmc.Config{ConnectTimeout: 5 * time.Second, OpTimeout: 10 * time.Second, VerifyTimeout: 10 * time.Second,
			Backoff: []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond}},
		extra: rack.Run, readyPoll: 100 * time.Millisecond,
		after: func(rep *provision.Report) {
			fg := demoFiguresOf(rep, rack, time.Since(start), cpu0)
			fg.write(g.stderr)
			if d.figures != nil {
				*d.figures = fg
			}
		},
	})
}

// demoInventory is the simulated rack's inventory: nodes on loopback
// addresses 127.10.x.y (so the boot services tell them apart), UEFI with
// every fourth node BIOS.
func demoInventory(d *demoFlags, httpPort uint16) *inventory.Inventory {
	inv := &inventory.Inventory{
		Cluster: inventory.Cluster{Name: "demo", KubernetesVersion: "v1.37.2", ControlPlaneEndpoint: "127.10.0.1:6443"},
		Network: inventory.Network{
			Interface: "lo", Address: netip.MustParseAddr("127.0.0.1"), HTTPPort: httpPort,
			Subnet: netip.MustParsePrefix("127.0.0.0/8"), DHCPMode: inventory.DHCPAuthoritative, LeaseTime: time.Hour,
		},
		Sources: []string{"(demo)"},
	}
	for i := range d.nodes {
		n := inventory.Node{
			Name: fmt.Sprintf("node-%04d", i+1), Role: inventory.RoleWorker, Profile: "demo",
			Rack: fmt.Sprintf("sim%d", i/40+1), Slot: i%40 + 1,
			MAC:  inventory.HardwareAddr(net.HardwareAddr{0x02, 0x5a, 0, byte(i >> 16), byte(i >> 8), byte(i)}),
			IP:   netip.AddrFrom4([4]byte{127, 10, byte(i / 254), byte(i%254 + 1)}),
			Boot: inventory.Boot{Firmware: inventory.FirmwareUEFI, Kernel: "vmlinuz", Initrd: "initrd.img"},
		}
		if i < d.controlPlanes {
			n.Role = inventory.RoleControlPlane
			n.Name = fmt.Sprintf("cp-%d", i+1)
		}
		if i%4 == 3 {
			n.Boot.Firmware = inventory.FirmwareBIOS
		}
		inv.Nodes = append(inv.Nodes, n)
	}
	return inv
}

// demoFigures are what a demo run cost and how it kept up with the
// simulated boots.
type demoFigures struct {
	Nodes int
	Ready int
	Wall  time.Duration
	// Slowest is the slowest simulated machine's own boot (firmware + OS);
	// SlowestTook the slowest power-on-to-join actually seen.
	Slowest, SlowestTook time.Duration
	// CPU is the whole process's user+system CPU: provisioner, boot
	// services and the simulated BMCs and machines together.
	CPU time.Duration
	// MaxRSS is the process's peak resident set, in bytes.
	MaxRSS int64
}

// demoFiguresOf measures the run; cpu0 is the process CPU at its start.
func demoFiguresOf(rep *provision.Report, rack *simrack.Rack, wall, cpu0 time.Duration) demoFigures {
	fg := demoFigures{Nodes: len(rep.Nodes), Ready: rep.Ready, Wall: wall}
	for _, s := range rack.Stats() {
		fg.Slowest = max(fg.Slowest, s.Boot)
		fg.SlowestTook = max(fg.SlowestTook, s.Took)
	}
	cpu, rss := processUsage()
	fg.CPU, fg.MaxRSS = cpu-cpu0, rss
	return fg
}

// processUsage returns the process's CPU time so far and its peak RSS in bytes.
func processUsage() (time.Duration, int64) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Maxrss * 1024
}

func (fg demoFigures) write(w io.Writer) {
	fmt.Fprintf(w, "demo: wall %s; slowest simulated boot %s (firmware+OS), slowest node power-on to join %s\n",
		fg.Wall.Round(time.Millisecond), fg.Slowest.Round(time.Millisecond), fg.SlowestTook.Round(time.Millisecond))
	fmt.Fprintf(w, "demo: process CPU %s = %s per node (provisioner, boot services, %d simulated BMCs and machines together); peak RSS %d MiB\n",
		fg.CPU.Round(time.Millisecond), (fg.CPU / time.Duration(max(fg.Nodes, 1))).Round(time.Microsecond), fg.Nodes, fg.MaxRSS>>20)
}

func freePort(network string) (uint16, error) {
	switch network {
	case "tcp4":
		l, err := net.Listen(network, "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("demo: find a free port: %w", err)
		}
		defer l.Close()
		return uint16(l.Addr().(*net.TCPAddr).Port), nil
	}
	c, err := net.ListenPacket(network, "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("demo: find a free port: %w", err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port), nil
}

// freeDHCPPort finds a UDP port free on both 127.0.0.1 (the server) and
// 127.0.0.2 (the relay, which listens on the server port).
func freeDHCPPort() (uint16, error) {
	for range 20 {
		p, err := freePort("udp4")
		if err != nil {
			return 0, err
		}
		c, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.2:%d", p))
		if err == nil {
			c.Close()
			return p, nil
		}
	}
	return 0, fmt.Errorf("demo: no udp port free on both 127.0.0.1 and 127.0.0.2")
}
