package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/provision/assemble"
	"github.com/slipway-dev/slipway/pkg/simrack"
)

// rackChildEnv makes the test binary run a simulated rack (BenchmarkDemo1000's
// other process) instead of the tests; its value is a rackSpec in JSON.
const rackChildEnv = "SLIPWAY_BENCH_RACK"

func TestMain(m *testing.M) {
	if spec := os.Getenv(rackChildEnv); spec != "" {
		if err := runRackChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, "simulated rack:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// rackSpec is what the rack process needs; the relay socket comes as fd 3.
type rackSpec struct {
	World        simrack.WorldConfig
	DHCP, TFTP   string
	PasswordFile string
}

// rackHello is the rack process's first line on stdout: each node's BMC
// (the password reference is the boot side's, set there).
type rackHello struct{ BMCs map[string]rackBMC }

type rackBMC struct {
	URL, Scheme, Host, Username string
	Protocol                    inventory.Protocol
	Port                        uint16
}

// rackBye is its last line, once stdin is closed: what each machine did.
type rackBye struct{ Stats []simrack.MachineStats }

// runRackChild runs the rack until stdin closes.
func runRackChild(spec string) error {
	var rs rackSpec
	if err := json.Unmarshal([]byte(spec), &rs); err != nil {
		return err
	}
	pc, err := net.FilePacketConn(os.NewFile(3, "relay"))
	if err != nil {
		return fmt.Errorf("relay socket: %w", err)
	}
	rack, err := simrack.StartRack(simrack.RackSide{World: rs.World, Relay: pc.(*net.UDPConn), PasswordFile: rs.PasswordFile,
		DHCPServer: netip.MustParseAddrPort(rs.DHCP), TFTPServer: netip.MustParseAddrPort(rs.TFTP)})
	if err != nil {
		return err
	}
	hello := rackHello{BMCs: map[string]rackBMC{}}
	for _, s := range rack.Stats() {
		b, _ := rack.BMC(s.Node)
		hello.BMCs[s.Node] = rackBMC{URL: b.URL, Scheme: b.Scheme, Host: b.Host, Username: b.Username, Protocol: b.Protocol, Port: b.Port}
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(hello); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	if err := rack.Run(ctx); err != nil {
		return err
	}
	return enc.Encode(rackBye{Stats: rack.Stats()})
}

// benchFigures are what one BenchmarkDemo1000 run measured.
type benchFigures struct {
	nodes, ready          int
	wall, slowest         time.Duration
	provCPU, rackCPU      time.Duration
	provRSS, rackRSS      int64
	slowestTook, loadSeen float64
}

// BenchmarkDemo1000 runs the demo's provisioning of 1000 simulated nodes
// (one control plane, early netboot, firmware 1.5 s and OS 2.5 s, each
// node up to 1.5x) with the simulated rack in a process of its own, so
// the provisioner's CPU and peak RSS are measured apart from the rack's
// (getrusage of each process). The peer is the slowest simulated
// machine's own boot: the ratio wall/slowest-boot says how far the
// provisioner stretches a boot that takes that long. Its floor is above 1:
// a worker's config waits for the control plane, so the part of its boot
// after the config fetch comes after the control plane's whole boot.
func BenchmarkDemo1000(b *testing.B) {
	const nodes = 1000
	var fg benchFigures
	for b.Loop() {
		fg = benchDemo(b, nodes)
		if fg.ready != nodes {
			b.Fatalf("demo --nodes %d: %d ready", nodes, fg.ready)
		}
	}
	ratio := fg.wall.Seconds() / fg.slowest.Seconds()
	provMS := float64(fg.provCPU.Microseconds()) / 1000 / nodes
	rackMS := float64(fg.rackCPU.Microseconds()) / 1000 / nodes
	b.ReportMetric(fg.wall.Seconds(), "wall-s")
	b.ReportMetric(fg.slowest.Seconds(), "slowest-boot-s")
	b.ReportMetric(ratio, "wall/slowest-boot")
	b.ReportMetric(provMS, "provisioner-cpu-ms/node")
	b.ReportMetric(rackMS, "rack-cpu-ms/node")
	b.ReportMetric(float64(fg.provRSS>>20), "provisioner-peak-rss-MiB")
	b.ReportMetric(float64(fg.rackRSS>>20), "rack-peak-rss-MiB")
	b.Logf("demo --nodes %d (load average %.1f on this machine): wall %s, slowest simulated boot %s, ratio %.2f (target 1.5); "+
		"slowest node power-on to join %.1fs; provisioner CPU %.2f ms/node (target 2), simulated rack %.2f ms/node; "+
		"provisioner peak RSS %d MiB (target 150), rack %d MiB",
		nodes, fg.loadSeen, fg.wall.Round(time.Millisecond), fg.slowest.Round(time.Millisecond), ratio, fg.slowestTook,
		provMS, rackMS, fg.provRSS>>20, fg.rackRSS>>20)
}

// benchDemo runs one demo with the rack in a child process.
func benchDemo(b *testing.B, nodes int) benchFigures {
	b.Helper()
	dir := b.TempDir()
	d := &demoFlags{nodes: nodes, controlPlanes: 1, firmware: 1500 * time.Millisecond, osBoot: 2500 * time.Millisecond, seed: 1}
	wcfg := simrack.WorldConfig{Dir: dir, Nodes: nodes, ControlPlanes: 1, Firmware: d.firmware, OS: d.osBoot, Jitter: 0.5, Seed: d.seed}
	w, relay, err := simrack.NewBootSide(wcfg)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	rack := startRackChild(b, w, relay, wcfg)
	fg := benchFigures{nodes: nodes, loadSeen: loadAverage()}
	f := &provisionFlags{output: "plain", attempts: 3, earlyNetboot: true}
	opts := demoOptions(w, f, d, filepath.Join(dir, "state"), newDemoLoad(nodes, fg.loadSeen))
	opts.Beside = append(opts.Beside, rack.watch)
	g := &globals{stdout: io.Discard, stderr: io.Discard, logLevel: "error"}
	cpu0, _ := processUsage()
	start := time.Now()
	err = runProvisioner(b.Context(), g, "plain", opts, runSpec{
		interrupted: func() string { return "interrupted" },
		after:       func(res *assemble.Result) { fg.ready = res.Report.Ready },
	})
	fg.wall = time.Since(start)
	cpu, rss := processUsage()
	fg.provCPU, fg.provRSS = cpu-cpu0, rss
	if err != nil {
		b.Fatalf("demo --nodes %d: %v", nodes, err)
	}
	stats := rack.stop(b)
	fg.rackCPU, fg.rackRSS = rack.cpu, rack.rss
	for _, s := range stats {
		fg.slowest = max(fg.slowest, s.Boot)
		fg.slowestTook = max(fg.slowestTook, s.Took.Seconds())
	}
	return fg
}

// rackChild is the simulated rack's process.
type rackChild struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	exited chan struct{}
	cpu    time.Duration
	rss    int64
}

// startRackChild starts the rack process with the relay socket, and sets
// w's BMC settings from its first line.
func startRackChild(b *testing.B, w *simrack.World, relay *net.UDPConn, wcfg simrack.WorldConfig) *rackChild {
	b.Helper()
	relayFile, err := relay.File()
	relay.Close()
	if err != nil {
		b.Fatal(err)
	}
	defer relayFile.Close()
	wcfg.Dir = ""
	spec, _ := json.Marshal(rackSpec{World: wcfg, DHCP: w.Listeners.DHCP.LocalAddr().String(), TFTP: w.Listeners.TFTP.LocalAddr().String(),
		PasswordFile: filepath.Join(filepath.Dir(w.TFTPRoot), "bmc-password")})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), rackChildEnv+"="+string(spec))
	cmd.ExtraFiles = []*os.File{relayFile}
	cmd.Stderr = os.Stderr
	r := &rackChild{cmd: cmd, exited: make(chan struct{})}
	if r.stdin, err = cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	r.out = bufio.NewReaderSize(stdout, 1<<20)
	if err := cmd.Start(); err != nil {
		b.Fatalf("start the simulated rack: %v", err)
	}
	b.Cleanup(func() { r.stdin.Close(); cmd.Process.Kill(); <-r.exited })
	go func() { cmd.Wait(); close(r.exited) }()
	var hello rackHello
	line, err := r.out.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &hello)
	}
	if err != nil {
		b.Fatalf("simulated rack: no BMC list: %v", err)
	}
	pw := inventory.SecretRef{Source: "file", Name: filepath.Join(filepath.Dir(w.TFTPRoot), "bmc-password")}
	w.UseBMCs(func(node string) (inventory.BMC, bool) {
		rb, ok := hello.BMCs[node]
		return inventory.BMC{URL: rb.URL, Protocol: rb.Protocol, Scheme: rb.Scheme, Host: rb.Host, Port: rb.Port, Username: rb.Username, Password: pw}, ok
	})
	return r
}

// watch runs beside the provisioner: the rack dying ends the run.
func (r *rackChild) watch(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-r.exited:
		return errors.New("the simulated rack's process exited")
	}
}

// stop closes the rack's stdin, reads its stats and its resource use.
func (r *rackChild) stop(b *testing.B) []simrack.MachineStats {
	b.Helper()
	r.stdin.Close()
	var bye rackBye
	line, err := r.out.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &bye)
	}
	if err != nil {
		b.Fatalf("simulated rack: no stats at the end: %v", err)
	}
	<-r.exited
	st := r.cmd.ProcessState
	r.cpu = st.UserTime() + st.SystemTime()
	if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
		r.rss = ru.Maxrss * 1024
	}
	return bye.Stats
}
