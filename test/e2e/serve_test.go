//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
	"github.com/slipway-dev/slipway/test/e2e/lab"
)

// TestServeCommand runs the real `provisioner serve -f inventory.yaml
// --assets DIR --events` binary in the lab, boots a BIOS VM from it, reads
// the phone-home from its JSON event stream, and stops it with SIGINT as
// Ctrl-C would: it must exit 0.
func TestServeCommand(t *testing.T) {
	testenv.RequireCommands(t, "go")
	l := requireLab(t)
	img := requireImage(t)
	bin := buildProvisioner(t)

	inv := writeInventory(t, l, labInventory{Interface: l.Bridge(), RouterAdvertisements: true})
	cmd := l.Command(bin, "serve", "-f", inv, "--assets", img.Dir, "--tftp-root", ipxeDir, "--events",
		"--state-dir", filepath.Join(l.Dir(), "state"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		// Only if the test failed before it stopped serve itself: kill by PID.
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("provisioner serve stderr:\n%s", tail(stderr.String(), 4000))
		}
	})

	vm := newVM(t, l, "bios-1", lab.FirmwareBIOS, "52:54:00:77:00:10")
	ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
	defer cancel()
	// serve has no readiness signal but its log; the VM's first DHCP request
	// comes ~2 s after power-on, and the firmware retries, so just start.
	if err := vm.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitConsole(ctx, "INIT: PHONE-HOME-OK"); err != nil {
		t.Fatal(err)
	}
	// What an operator watches: /healthz answers and /metrics counts the boot.
	for path, want := range map[string]string{
		"/healthz": "ok",
		"/metrics": `slipway_boot_events_total{kind="phone_home"}`,
	} {
		body, err := httpGet(ctx, "http://10.77.0.1:8080"+path)
		if err != nil {
			t.Errorf("GET %s from provisioner serve: %v", path, err)
		} else if !strings.Contains(body, want) {
			t.Errorf("GET %s from provisioner serve: body does not contain %q:\n%s", path, want, tail(body, 2000))
		}
	}
	// The event stream is stdout; the exit below makes reading it race-free.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("provisioner serve after SIGINT: %v, want exit 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("provisioner serve did not exit within 15 s of SIGINT")
	}
	var kinds []bootevent.Kind
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var e struct {
			Kind   bootevent.Kind `json:"kind"`
			Node   string         `json:"node"`
			Detail string         `json:"detail"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Errorf("provisioner serve --events printed a line that is not a JSON event: %q: %v", sc.Text(), err)
			continue
		}
		if e.Node == "bios-1" {
			kinds = append(kinds, e.Kind)
		}
	}
	if !subsequence(kinds, ipxeBoot) {
		t.Errorf("provisioner serve --events for bios-1 = %v\nwant, in this order: %v", kinds, ipxeBoot)
	}
}

// buildProvisioner builds cmd/provisioner into a temporary directory.
func buildProvisioner(t *testing.T) string {
	t.Helper()
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "provisioner")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/provisioner")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(root)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/provisioner: %v\n%s", err, out)
	}
	return bin
}

func httpGet(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("status %s", resp.Status)
	}
	return string(b), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
