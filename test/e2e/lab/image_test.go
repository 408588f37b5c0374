//go:build e2e

package lab

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/internal/testenv"
)

// fakeKernelDir lays out an unpacked kernel package with the given modules.
func fakeKernelDir(t *testing.T, abi string, modules map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	write := func(p, content string) {
		t.Helper()
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("boot/vmlinuz-"+abi, "bzImage "+abi)
	for name, sub := range modules {
		write(filepath.Join("lib/modules", abi, "kernel", sub, name+".ko"), "module "+name)
	}
	return dir
}

// TestBuildNodeImage checks the initramfs with the real cpio(1): the file
// list, modes, /dev/console, and that /init and the modules are intact.
func TestBuildNodeImage(t *testing.T) {
	testenv.RequireCommands(t, "cpio")
	kdir := fakeKernelDir(t, "6.1.0-99-amd64", map[string]string{
		"virtio_ring": "drivers/virtio", "virtio": "drivers/virtio", "virtio_pci": "drivers/virtio",
		"failover": "net/core", "net_failover": "drivers/net", "virtio_net": "drivers/net",
		"unrelated": "drivers/gpu",
	})
	busybox := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(busybox, []byte("busybox binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	img, err := BuildNodeImage(kdir, busybox, out)
	if err != nil {
		t.Fatalf("BuildNodeImage: %v", err)
	}
	if diff := cmp.Diff(NodeImage{Dir: out, Kernel: filepath.Join(out, "vmlinuz"), Initrd: filepath.Join(out, "initrd.gz"), ABI: "6.1.0-99-amd64"}, img); diff != "" {
		t.Errorf("BuildNodeImage() (-want +got):\n%s", diff)
	}
	if b, _ := os.ReadFile(img.Kernel); string(b) != "bzImage 6.1.0-99-amd64" {
		t.Errorf("kernel copy = %q, want the kernel package's vmlinuz", b)
	}
	f, err := os.Open(img.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("initrd is not gzip: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	cpio := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("cpio", args...)
		cmd.Stdin = bytes.NewReader(raw)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio %s: %v: %s", strings.Join(args, " "), err, stderr.String())
		}
		return string(b)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(cpio("-itv", "--quiet")), "\n") {
		f := strings.Fields(line)
		got = append(got, f[0]+" "+f[len(f)-1])
	}
	want := []string{
		"drwxr-xr-x bin", "drwxr-xr-x dev", "drwxr-xr-x etc", "drwxr-xr-x proc", "drwxr-xr-x sys",
		"drwxr-xr-x tmp", "drwxr-xr-x lib", "drwxr-xr-x lib/modules", "drwxr-xr-x usr",
		"drwxr-xr-x usr/share", "drwxr-xr-x usr/share/udhcpc",
		"crw------- dev/console",
		"-rwxr-xr-x bin/busybox", "-rwxr-xr-x init", "-rwxr-xr-x usr/share/udhcpc/default.script",
		// In load order; modules this kernel lacks are left out, others ignored.
		"-rw-r--r-- lib/modules/virtio_ring.ko", "-rw-r--r-- lib/modules/virtio.ko",
		"-rw-r--r-- lib/modules/virtio_pci.ko", "-rw-r--r-- lib/modules/failover.ko",
		"-rw-r--r-- lib/modules/net_failover.ko", "-rw-r--r-- lib/modules/virtio_net.ko",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("initramfs listing (-want +got):\n%s", diff)
	}
	if got := cpio("-i", "--quiet", "--to-stdout", "init"); got != InitScript {
		t.Errorf("/init in the image differs from InitScript:\n%s", cmp.Diff(InitScript, got))
	}
	if got := cpio("-i", "--quiet", "--to-stdout", "lib/modules/virtio_net.ko"); got != "module virtio_net" {
		t.Errorf("virtio_net.ko in the image = %q, want the kernel package's file", got)
	}
}

func TestBuildNodeImageErrors(t *testing.T) {
	busybox := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(busybox, []byte("bb"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		kdir    string
		busybox string
		want    string
	}{
		{"no kernel", t.TempDir(), busybox, "run test/e2e/fetch-kernel.sh"},
		{"no virtio_net", fakeKernelDir(t, "6.1.0-1-amd64", map[string]string{"virtio": "drivers/virtio"}), busybox, "virtio_net.ko not in the kernel package"},
		{"no busybox", fakeKernelDir(t, "6.1.0-1-amd64", map[string]string{"virtio_net": "drivers/net"}), filepath.Join(t.TempDir(), "none"), "install busybox-static"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BuildNodeImage(tc.kdir, tc.busybox, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("BuildNodeImage(%s) = %v, want an error containing %q", tc.name, err, tc.want)
			}
		})
	}
}

func TestCleanConsole(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SeaBIOS\r\n", "SeaBIOS\n"},
		{"\x1b[2J\x1b[1;1HiPXE 1.0\r\n", "iPXE 1.0\n"},
		{"a\x1bcb\x00\x07c", "abc"},
		{"tab\there", "tab\there"},
		{"cut \x1b[", "cut "},
	} {
		if got := cleanConsole([]byte(tc.in)); got != tc.want {
			t.Errorf("cleanConsole(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
