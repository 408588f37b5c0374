package httpboot

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
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

	"github.com/slipway-dev/slipway/internal/listen"
	"github.com/slipway-dev/slipway/internal/servetest"
	"github.com/slipway-dev/slipway/internal/testenv"
)

const (
	benchClients  = 50
	benchFileSize = 64 << 20
	benchRounds   = 2 // rounds per server, interleaved, per b.N
)

// BenchmarkAssetsVsNginx downloads a 64 MiB asset 50 times concurrently
// from this server and from nginx (sendfile on, access log off), both on
// 127.0.0.1, with the same Go client, and reports both throughputs and the
// ratio (target: slipway/nginx >= 0.9).
func BenchmarkAssetsVsNginx(b *testing.B) {
	bin := testenv.RequireCommands(b, "nginx")["nginx"]
	dir := b.TempDir()
	assets := filepath.Join(dir, "assets")
	os.MkdirAll(assets, 0o755)
	f, err := os.Create(filepath.Join(assets, "image.bin"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, benchFileSize); err != nil {
		b.Fatal(err)
	}
	f.Close()

	ours := startBenchServer(b, assets) + "/assets/image.bin"
	peer := startNginx(b, bin, dir, assets) + "/image.bin"

	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: benchClients,
		DisableCompression:  true,
	}}
	round(b, client, ours) // warm up, and prove both serve the file
	round(b, client, peer)
	var dOurs, dPeer time.Duration
	b.ResetTimer()
	for range b.N {
		for range benchRounds {
			dOurs += round(b, client, ours)
			dPeer += round(b, client, peer)
		}
	}
	b.StopTimer()
	total := float64(b.N*benchRounds*benchClients*benchFileSize) / (1 << 20)
	mOurs, mPeer := total/dOurs.Seconds(), total/dPeer.Seconds()
	b.ReportMetric(mOurs, "slipway-MiB/s")
	b.ReportMetric(mPeer, "nginx-MiB/s")
	b.ReportMetric(mOurs/mPeer, "ratio")
	b.Logf("\n%-8s %10s %10s\n%-8s %10.0f %10s\n%-8s %10.0f %10s\n%-8s %10.2f (target >= 0.90)",
		"server", "MiB/s", "time",
		"slipway", mOurs, dOurs.Round(time.Millisecond),
		"nginx", mPeer, dPeer.Round(time.Millisecond),
		"ratio", mOurs/mPeer)
}

// benchServerEnv names the asset directory and address a helper process
// serves.
const benchServerEnv = "SLIPWAY_BENCH_HTTP_SERVER"

// runBenchServer is the body of the child process BenchmarkAssetsVsNginx starts
// (through TestMain), so that our server runs in a process of its own, as
// nginx does, and neither shares CPU time with the client.
func runBenchServer(spec string) error {
	assets, addr, _ := strings.Cut(spec, "|")
	// The parent bound the listener and handed it over as fd 3.
	ln, err := net.FileListener(os.NewFile(3, "http"))
	if err != nil {
		return fmt.Errorf("listener handed over: %w", err)
	}
	s, err := New(Config{BaseURL: "http://" + addr, AssetDir: assets, Addr: netip.MustParseAddrPort(addr), Listener: ln})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	return s.Run(ctx)
}

// startBenchServer runs this package's server in a child process and
// returns its base URL once it answers.
func startBenchServer(b *testing.B, assets string) string {
	b.Helper()
	ln := servetest.Listen(b, "127.0.0.1:0")
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	addr := ln.Addr().String()
	// The child's copy keeps the socket; this process must not poll it.
	ln.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchServerEnv+"="+assets+"|"+addr)
	cmd.ExtraFiles = []*os.File{f}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatalf("start slipway http: %v", err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	base := "http://" + addr
	waitHTTP(b, base+"/healthz", func() string { return out.String() })
	return base
}

// waitHTTP polls url until it answers.
func waitHTTP(b *testing.B, url string, diag func() string) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s does not answer: %v\n%s", url, err, diag())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startNginx runs nginx in the foreground as a child process with a config
// in dir, serving root on a free loopback port; it returns the base URL.
func startNginx(b *testing.B, bin, dir, root string) string {
	b.Helper()
	// nginx binds its own socket and cannot be handed one: it gets a
	// loopback address of its own instead of a port probed free and
	// released; if it cannot bind anyway it exits, and the wait for it
	// fails with its log.
	addr := netip.AddrPortFrom(listen.PeerLoopback(), 8080).String()
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes auto;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen %[2]s;
    root %[3]s;
  }
}
`, dir, addr, root)
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-p", dir, "-c", confFile, "-e", filepath.Join(dir, "error.log"))
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatalf("start nginx: %v", err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill() // the master; its workers exit when it is gone
		cmd.Wait()
	})
	base := "http://" + addr
	waitHTTP(b, base+"/", func() string {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return stderr.String() + string(log)
	})
	return base
}

// round runs benchClients concurrent downloads of url and returns the wall
// time; each must deliver the whole file.
func round(b *testing.B, c *http.Client, url string) time.Duration {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, benchClients)
	start := time.Now()
	for range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(url)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			n, err := io.Copy(io.Discard, resp.Body)
			if err != nil || resp.StatusCode != 200 || n != benchFileSize {
				errs <- fmt.Errorf("status %d, %d bytes, %v", resp.StatusCode, n, err)
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatalf("GET %s: %v", url, err)
	}
	return d
}
