package simrack

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/slipway-dev/slipway/internal/listen"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/pxe"
)

// WorldConfig configures a World. A zero field means the documented default.
type WorldConfig struct {
	// Dir is a directory the world writes its files in (the stand-in iPXE
	// binaries, kernel and initrd, the BMC password file); the caller
	// creates it (mode 0700: it holds a password file) and removes it.
	// Required.
	Dir string
	// Nodes is the number of machines (default 16); ControlPlanes how many
	// of them are control-plane nodes (default 1).
	Nodes, ControlPlanes int
	// Firmware, OS and Jitter are the machines' boot times (see Config).
	Firmware, OS time.Duration
	Jitter       float64
	// Faults injects failures by node name.
	Faults map[string]Fault
	// Seed makes the boot times reproducible (0: random).
	Seed uint64
	// Log receives the rack's debug lines (nil: discard).
	Log *slog.Logger `json:"-"`
}

// Names the world gives its nodes: cp-1 ... for control-plane nodes, then
// node-0002 ... numbered by position.
const (
	cpName     = "cp-%d"
	workerName = "node-%04d"
)

// World is a simulated rack on loopback with everything the provisioner's
// boot services need to serve it: the inventory (nodes on 127.10.x.y, BMC
// URLs of their simulated BMCs, the provisioner on 127.0.0.1), the sockets
// the boot services take over (DHCP on one port of 127.0.0.1 whose twin
// on 127.0.0.2 is the rack's relay, TFTP, HTTP), and the files they serve.
// `provisioner demo`, the tests of the provisioning assembly and this
// package's tests all build their rack this way.
type World struct {
	// Inventory is the simulated rack's inventory.
	Inventory *inventory.Inventory
	// Rack is the running rack; run it (Rack.Run) beside the boot services.
	Rack *Rack
	// Listeners are the boot services' sockets, bound and kept: hand them
	// to the boot services (pxe.Config.Listeners), which close them.
	Listeners pxe.Listeners
	// TFTPRoot and AssetDir hold the stand-in iPXE binaries and the kernel
	// and initrd the nodes boot.
	TFTPRoot, AssetDir string
}

// Stand-in file sizes, about those of the real files.
var worldFiles = map[string]int{
	"ipxe/undionly.kpxe": 70 << 10,
	"ipxe/snponly.efi":   200 << 10,
	"assets/vmlinuz":     64 << 10,
	"assets/initrd.img":  256 << 10,
}

// NewWorld binds the boot services' sockets, writes the files, starts one
// simulated BMC per node and returns the world. Close it when done (the
// sockets handed to boot services are theirs to close; closing them again
// is harmless).
func NewWorld(cfg WorldConfig) (*World, error) {
	w, relay, err := NewBootSide(cfg)
	if err != nil {
		return nil, err
	}
	w.Rack, err = StartRack(RackSide{
		World: cfg, Relay: relay, DHCPServer: udpAddr(w.Listeners.DHCP), TFTPServer: udpAddr(w.Listeners.TFTP),
		PasswordFile: filepath.Join(cfg.Dir, passwordFile),
	})
	if err != nil {
		w.closeSockets(relay)
		return nil, err
	}
	w.UseBMCs(w.Rack.BMC)
	return w, nil
}

// NewBootSide builds the world without its rack: the inventory (no BMC
// settings yet, see UseBMCs), the boot services' sockets and the files. It
// returns the socket the rack's DHCP relay needs, on the DHCP server's
// port of 127.0.0.2. NewWorld runs the rack in this process; a benchmark
// runs it in a process of its own (StartRack there, handing the relay
// socket over), to measure the provisioner apart from its simulated rack.
func NewBootSide(cfg WorldConfig) (*World, *net.UDPConn, error) {
	if cfg.Dir == "" {
		return nil, nil, errors.New("simulated world: no directory for its files")
	}
	cfg = cfg.withDefaults()
	if cfg.ControlPlanes > cfg.Nodes {
		return nil, nil, fmt.Errorf("simulated world: %d control-plane nodes but only %d nodes", cfg.ControlPlanes, cfg.Nodes)
	}
	w := &World{TFTPRoot: filepath.Join(cfg.Dir, "ipxe"), AssetDir: filepath.Join(cfg.Dir, "assets")}
	if err := writeFiles(cfg.Dir); err != nil {
		return nil, nil, err
	}
	lo := netip.MustParseAddr("127.0.0.1")
	dhcp, err := listen.SameUDPPort(lo, netip.MustParseAddr("127.0.0.2"))
	if err != nil {
		return nil, nil, fmt.Errorf("simulated world: %w", err)
	}
	// As the provisioner does on a real network: room for a rack's burst
	// of requests (the kernel caps it at net.core.rmem_max unprivileged).
	for _, c := range dhcp {
		c.SetReadBuffer(4 << 20)
	}
	w.Listeners.DHCP = dhcp[0]
	relay := dhcp[1]
	tftp, err := listen.UDP(netip.AddrPortFrom(lo, 0))
	if err != nil {
		w.closeSockets(relay)
		return nil, nil, fmt.Errorf("simulated world: %w", err)
	}
	w.Listeners.TFTP = tftp
	if w.Listeners.HTTP, err = listen.TCP(netip.AddrPortFrom(lo, 0)); err != nil {
		w.closeSockets(relay)
		return nil, nil, fmt.Errorf("simulated world: %w", err)
	}
	w.Inventory = worldInventory(cfg, listen.Port(w.Listeners.HTTP.Addr()))
	for name := range cfg.Faults {
		if _, ok := w.Inventory.Node(name); !ok {
			w.closeSockets(relay)
			return nil, nil, fmt.Errorf("simulated world: fault for %s: no such node (nodes are %s ... %s)", name, w.Inventory.Nodes[0].Name, w.Inventory.Nodes[len(w.Inventory.Nodes)-1].Name)
		}
	}
	return w, relay, nil
}

// RackSide is what the rack of a world needs from its boot side.
type RackSide struct {
	// World is the world's configuration (its Dir is not used).
	World WorldConfig
	// Relay is the relay socket NewBootSide returned; the rack closes it.
	Relay *net.UDPConn
	// DHCPServer and TFTPServer are the boot services' addresses.
	DHCPServer, TFTPServer netip.AddrPort
	// PasswordFile is the BMC password file the boot side wrote (the
	// world's BMC settings refer to it).
	PasswordFile string
}

// StartRack starts the simulated BMCs and machines of a world's nodes.
func StartRack(rs RackSide) (*Rack, error) {
	cfg := rs.World.withDefaults()
	return New(Config{
		Nodes: worldInventory(cfg, 0).Nodes, Relay: rs.Relay, DHCPServer: rs.DHCPServer, TFTPServer: rs.TFTPServer,
		Firmware: cfg.Firmware, OS: cfg.OS, Jitter: cfg.Jitter, Faults: cfg.Faults, Seed: cfg.Seed,
		Password: "simulated", PasswordRef: inventory.SecretRef{Source: "file", Name: rs.PasswordFile},
		Log: cfg.Log,
	})
}

// UseBMCs sets every node's BMC settings from bmcOf (such as Rack.BMC).
func (w *World) UseBMCs(bmcOf func(node string) (inventory.BMC, bool)) {
	for i := range w.Inventory.Nodes {
		w.Inventory.Nodes[i].BMC, _ = bmcOf(w.Inventory.Nodes[i].Name)
	}
}

func (c WorldConfig) withDefaults() WorldConfig {
	if c.Nodes <= 0 {
		c.Nodes = 16
	}
	if c.ControlPlanes <= 0 {
		c.ControlPlanes = 1
	}
	return c
}

// Close stops the rack and closes the sockets.
func (w *World) Close() error {
	w.closeSockets(nil)
	if w.Rack != nil {
		return w.Rack.Close()
	}
	return nil
}

func (w *World) closeSockets(relay *net.UDPConn) {
	if relay != nil {
		relay.Close()
	}
	for _, c := range []interface{ Close() error }{w.Listeners.DHCP, w.Listeners.TFTP, w.Listeners.HTTP} {
		if c != nil {
			c.Close()
		}
	}
}

func udpAddr(c net.PacketConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// passwordFile is the simulated BMCs' password file in the world's Dir.
const passwordFile = "bmc-password"

// writeFiles writes the stand-in binaries and the BMC password file into dir.
func writeFiles(dir string) error {
	for rel, size := range worldFiles {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("simulated world: %w", err)
		}
		if err := os.WriteFile(p, bytes.Repeat([]byte{0x5a}, size), 0o644); err != nil {
			return fmt.Errorf("simulated world: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, passwordFile), []byte("simulated\n"), 0o600); err != nil {
		return fmt.Errorf("simulated world: %w", err)
	}
	return nil
}

// worldInventory is the simulated rack's inventory: nodes on loopback
// addresses 127.10.x.y (so the boot services tell them apart), UEFI with
// every fourth node BIOS, 40 to a simulated rack.
func worldInventory(cfg WorldConfig, httpPort uint16) *inventory.Inventory {
	inv := &inventory.Inventory{
		Cluster: inventory.Cluster{Name: "demo", KubernetesVersion: "v1.37.2", ControlPlaneEndpoint: "127.10.0.1:6443"},
		Network: inventory.Network{
			Name: inventory.DefaultNetworkName, Interface: "lo", Address: netip.MustParseAddr("127.0.0.1"), HTTPPort: httpPort,
			Subnet: netip.MustParsePrefix("127.0.0.0/8"), DHCPMode: inventory.DHCPAuthoritative, LeaseTime: time.Hour,
		},
		Sources: []string{"(simulated rack)"},
	}
	for i := range cfg.Nodes {
		n := inventory.Node{
			Name: fmt.Sprintf(workerName, i+1), Role: inventory.RoleWorker, Profile: "simulated",
			Rack: fmt.Sprintf("sim%d", i/40+1), Slot: i%40 + 1, Network: inventory.DefaultNetworkName,
			MAC:  inventory.HardwareAddr(net.HardwareAddr{0x02, 0x5a, 0, byte(i >> 16), byte(i >> 8), byte(i)}),
			IP:   netip.AddrFrom4([4]byte{127, 10, byte(i / 254), byte(i%254 + 1)}),
			Boot: inventory.Boot{Firmware: inventory.FirmwareUEFI, Kernel: "vmlinuz", Initrd: "initrd.img"},
		}
		if i < cfg.ControlPlanes {
			n.Role = inventory.RoleControlPlane
			n.Name = fmt.Sprintf(cpName, i+1)
		}
		if i%4 == 3 {
			n.Boot.Firmware = inventory.FirmwareBIOS
		}
		inv.Nodes = append(inv.Nodes, n)
	}
	return inv
}
