package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/servetest"
	"github.com/slipway-dev/slipway/pkg/provision/assemble"
)

// serveTestInventory writes a one-node inventory served on lo.
func serveTestInventory(t *testing.T, iface string, httpPort int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "inv.yaml")
	y := fmt.Sprintf(`apiVersion: slipway.dev/v1alpha1
kind: Inventory
cluster:
  name: t
  kubernetesVersion: v1.37.2
network:
  provisioner:
    interface: %s
    address: 127.0.0.1
    httpPort: %d
  subnet: 127.0.0.0/8
  routerAdvertisements: false
profiles:
  p:
    boot:
      firmware: bios
      kernel: vmlinuz
      initrd: initrd.gz
    bmc:
      username: admin
      password: env:SERVE_TEST_PW
nodes:
  - name: n1
    profile: p
    role: control-plane
    mac: 52:54:00:99:00:11
    ip: 127.0.0.11
    bmc:
      url: ipmi://127.0.0.1:9623
`, iface, httpPort)
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServeRefusesMissingInterface(t *testing.T) {
	inv := serveTestInventory(t, "slipway-nope0", 8080)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"serve", "-f", inv, "--tftp-root", t.TempDir()}, &out, &errb)
	if code != exitFailure || !strings.Contains(errb.String(), "interface slipway-nope0") {
		t.Errorf("serve with a missing interface: exit %d, stderr %q; want 1 and a message naming the interface", code, errb.String())
	}
}

func TestServeRunsAndStops(t *testing.T) {
	// Bind first: the boot services take these sockets over.
	ln := servetest.Listen(t, "127.0.0.1:0")
	dhcp, tftp := servetest.ListenUDP(t, "127.0.0.1:0"), servetest.ListenUDP(t, "127.0.0.1:0")
	httpPort := int(servetest.Port(ln.Addr()))
	inv := serveTestInventory(t, "lo", httpPort)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, bootHook: func(b *assemble.Boot) {
		b.Listeners.HTTP, b.Listeners.DHCP, b.Listeners.TFTP = ln, dhcp, tftp
	}}
	done := make(chan int, 1)
	go func() {
		done <- runWith(ctx, g, []string{"serve", "-f", inv, "--tftp-root", t.TempDir(), "--assets", t.TempDir()})
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", httpPort)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d before answering: %s", code, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("serve after Ctrl-C: exit %d, stderr %s; want 0", code, errb.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop within 15 s of cancel")
	}
}
