//go:build e2e

package e2e

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/test/e2e/lab"
)

// iPXE binaries from Debian's ipxe package, served over TFTP.
const ipxeDir = "/usr/lib/ipxe"

// requireLab skips (or fails under SLIPWAY_E2E=1) when the lab cannot run
// here, and returns a started lab that is stopped in t.Cleanup.
func requireLab(t testing.TB) *lab.Lab {
	t.Helper()
	return requireLabWith(t, lab.Config{})
}

// requireLabWith is requireLab with another network (Prefix, Prefix6).
func requireLabWith(t testing.TB, cfg lab.Config) *lab.Lab {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "qemu-system-x86_64", "dnsmasq")
	testenv.RequireFiles(t, "/dev/net/tun", lab.DefaultBusybox, lab.DefaultOVMFCode, lab.DefaultOVMFVars,
		"/usr/lib/ipxe/qemu/pxe-virtio.rom", "/usr/lib/ipxe/qemu/efi-virtio.rom",
		filepath.Join(ipxeDir, "undionly.kpxe"), filepath.Join(ipxeDir, "snponly.efi"))
	if _, _, _, err := lab.FindKernel(lab.KernelDir()); err != nil {
		testenv.RequireBuilt(t, "run make kernel", filepath.Join(lab.KernelDir(), "boot")) // skips or fails with the path
		t.Fatal(err)
	}
	cfg.Dir, cfg.Log = t.TempDir(), testLogger(t)
	l, err := lab.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	if !l.InProcess() {
		t.Fatalf("lab netns %s: the test binary is not inside it (TestMain must call lab.Main)", l.Netns())
	}
	return l
}

// requireImage builds the node image (Debian's kernel and a busybox
// initramfs, about 30 ms) into a directory of the test's own.
func requireImage(t testing.TB) lab.NodeImage {
	t.Helper()
	img, err := lab.BuildNodeImage(lab.KernelDir(), lab.DefaultBusybox, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// newVM adds a VM to l and attaches its serial console to the test output
// when the test fails.
func newVM(t testing.TB, l *lab.Lab, name string, fw lab.Firmware, mac string) *lab.VM {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := l.NewVM(t.Context(), lab.VMConfig{Name: name, MAC: hw, Firmware: fw})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serial console of %s (%s, %s, %s):\n%s", name, fw, mac, vm.ConsolePath(), vm.Console())
		}
	})
	return vm
}

// tftpRoot returns a directory with the iPXE binaries for the TFTP peer.
func tftpRoot(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"undionly.kpxe", "snponly.efi", "ipxe.efi"} {
		b, err := os.ReadFile(filepath.Join(ipxeDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// testLogger logs to stderr with -v, and discards otherwise.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
