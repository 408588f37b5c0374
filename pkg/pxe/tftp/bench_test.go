package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
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

	"github.com/pin/tftp/v3"

	"github.com/slipway-dev/slipway/internal/listen"
	"github.com/slipway-dev/slipway/internal/servetest"
	"github.com/slipway-dev/slipway/internal/testenv"
)

const (
	benchClients  = 100
	benchFileSize = 1 << 20
	benchBlksize  = 1468 // what iPXE asks for on Ethernet
	benchRounds   = 2    // rounds per server, interleaved, per b.N
)

// BenchmarkTFTPvsTFTPDHPA downloads a 1 MiB file 100 times concurrently
// from this server and from tftpd-hpa, both on 127.0.0.1, with the same
// client (pin/tftp, blksize 1468, tsize), and reports both throughputs and
// their ratio (target: slipway/tftpd-hpa >= 1).
func BenchmarkTFTPvsTFTPDHPA(b *testing.B) {
	testenv.RequireRoot(b) // tftpd-hpa --secure chroots
	in := testenv.RequireCommands(b, "in.tftpd")["in.tftpd"]
	dir := b.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, benchFileSize)
	rand.Read(payload)
	if err := os.WriteFile(filepath.Join(dir, "bench.bin"), payload, 0o644); err != nil {
		b.Fatal(err)
	}

	ours := startBenchServer(b, dir)
	peer := startTFTPDHPA(b, in, dir)

	var dOurs, dPeer time.Duration
	b.ResetTimer()
	for range b.N {
		for range benchRounds {
			dOurs += downloadRound(b, ours, payload)
			dPeer += downloadRound(b, peer, payload)
		}
	}
	b.StopTimer()
	total := float64(b.N*benchRounds*benchClients*benchFileSize) / (1 << 20)
	mbOurs, mbPeer := total/dOurs.Seconds(), total/dPeer.Seconds()
	b.ReportMetric(mbOurs, "slipway-MiB/s")
	b.ReportMetric(mbPeer, "tftpd-hpa-MiB/s")
	b.ReportMetric(mbOurs/mbPeer, "ratio")
	b.Logf("\n%-10s %12s %10s\n%-10s %12.1f %10s\n%-10s %12.1f %10s\n%-10s %12.2f (target >= 1.00)",
		"server", "MiB/s", "time",
		"slipway", mbOurs, dOurs.Round(time.Millisecond),
		"tftpd-hpa", mbPeer, dPeer.Round(time.Millisecond),
		"ratio", mbOurs/mbPeer)
}

// benchServerEnv names the root and address a helper process serves.
const benchServerEnv = "SLIPWAY_BENCH_TFTP_SERVER"

// runBenchServer is the body of the child process BenchmarkTFTPvsTFTPDHPA starts
// (through TestMain), so that our server runs in a process of its own, as
// tftpd-hpa does, and neither shares CPU time with the client.
func runBenchServer(spec string) error {
	root, addr, _ := strings.Cut(spec, "|")
	// The parent bound the socket and handed it over as fd 3.
	conn, err := net.FilePacketConn(os.NewFile(3, "tftp"))
	if err != nil {
		return fmt.Errorf("socket handed over: %w", err)
	}
	s, err := New(Config{Root: root, Addr: netip.MustParseAddrPort(addr), Conn: conn})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	return s.Run(ctx)
}

// startBenchServer runs this package's server in a child process on a
// socket bound here and handed over, and waits until it answers.
func startBenchServer(b *testing.B, root string) string {
	b.Helper()
	c := servetest.ListenUDP(b, "127.0.0.1:0")
	f, err := c.File()
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	addr := c.LocalAddr().String()
	// The child's copy keeps the socket; this process must not poll it.
	c.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchServerEnv+"="+root+"|"+addr)
	cmd.ExtraFiles = []*os.File{f}
	return startAndProbe(b, cmd, addr, "slipway tftp")
}

// startAndProbe starts cmd and waits until a download of bench.bin from
// addr succeeds.
func startAndProbe(b *testing.B, cmd *exec.Cmd, addr, what string) string {
	b.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", what, err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		cl, _ := tftp.NewClient(addr)
		cl.SetTimeout(200 * time.Millisecond)
		cl.SetRetries(1)
		if wt, err := cl.Receive("bench.bin", "octet"); err == nil {
			if _, err := wt.WriteTo(io.Discard); err == nil {
				return addr
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s on %s does not answer: %s", what, addr, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startTFTPDHPA runs tftpd-hpa in the foreground as a child process (not
// the system service) and waits until it answers. tftpd-hpa binds its own
// socket and cannot be handed one, so it gets a loopback address of its
// own (listen.PeerLoopback) instead of a port probed free and released; if
// it cannot bind anyway it exits and startAndProbe fails with its output.
func startTFTPDHPA(b *testing.B, bin, root string) string {
	b.Helper()
	addr := netip.AddrPortFrom(listen.PeerLoopback(), 6969).String()
	cmd := exec.Command(bin, "--foreground", "--secure", "--user", "tftp", "--address", addr, "--blocksize", "65464", root)
	return startAndProbe(b, cmd, addr, "tftpd-hpa")
}

// downloadRound runs benchClients concurrent downloads and returns the wall
// time; every download is checked byte for byte.
func downloadRound(b *testing.B, addr string, want []byte) time.Duration {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, benchClients)
	start := time.Now()
	for i := range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := tftp.NewClient(addr)
			if err != nil {
				errs <- err
				return
			}
			cl.SetBlockSize(benchBlksize)
			cl.RequestTSize(true)
			cl.SetTimeout(2 * time.Second)
			cl.SetRetries(5)
			wt, err := cl.Receive("bench.bin", "octet")
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			var buf bytes.Buffer
			buf.Grow(len(want))
			if _, err := wt.WriteTo(&buf); err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			if !bytes.Equal(buf.Bytes(), want) {
				errs <- fmt.Errorf("client %d: got %d bytes that differ from the file", i, buf.Len())
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatalf("download from %s: %v", addr, err)
	}
	return d
}
