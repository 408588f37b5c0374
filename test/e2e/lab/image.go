//go:build e2e

package lab

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// EnvKernelDir names a directory holding an unpacked Debian kernel package
// (boot/vmlinuz-* and lib/modules/*), overriding [KernelDir]'s default.
const EnvKernelDir = "SLIPWAY_E2E_KERNEL_DIR"

// DefaultBusybox is where Debian's busybox-static installs busybox.
const DefaultBusybox = "/bin/busybox"

// nodeModules are the kernel modules the node image loads, in load order:
// Debian builds the NIC drivers as modules, and virtio_ring must come before
// virtio (a wrong order fails without a message).
var nodeModules = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
	"failover", "net_failover", "virtio_net", "e1000",
}

// KernelDir returns where test/e2e/fetch-kernel.sh unpacks the kernel:
// $SLIPWAY_E2E_KERNEL_DIR, or test/e2e/.cache/kernel in the module found
// by walking up from the working directory to go.mod.
func KernelDir() string {
	if d := os.Getenv(EnvKernelDir); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		return filepath.Join("test", "e2e", ".cache", "kernel")
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "test", "e2e", ".cache", "kernel")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return filepath.Join("test", "e2e", ".cache", "kernel")
		}
		dir = parent
	}
}

// NodeImage is the kernel and initrd a lab VM network-boots, side by side
// in one directory (an asset directory for the boot HTTP server).
type NodeImage struct {
	// Dir holds vmlinuz and initrd.gz.
	Dir string
	// Kernel is the path of the kernel (Dir/vmlinuz, a bzImage).
	Kernel string
	// Initrd is the path of the gzip-compressed newc initramfs.
	Initrd string
	// ABI is the kernel's ABI name, such as 6.1.0-56-amd64.
	ABI string
}

// FindKernel returns the vmlinuz and the modules directory of the kernel
// unpacked in kernelDir.
func FindKernel(kernelDir string) (vmlinuz, modules, abi string, err error) {
	m, _ := filepath.Glob(filepath.Join(kernelDir, "boot", "vmlinuz-*"))
	if len(m) == 0 {
		return "", "", "", fmt.Errorf("find kernel in %s: no boot/vmlinuz-* (run test/e2e/fetch-kernel.sh)", kernelDir)
	}
	vmlinuz = m[len(m)-1]
	abi = strings.TrimPrefix(filepath.Base(vmlinuz), "vmlinuz-")
	modules = filepath.Join(kernelDir, "lib", "modules", abi)
	if _, err := os.Stat(modules); err != nil {
		return "", "", "", fmt.Errorf("find kernel modules for %s: %w", abi, err)
	}
	return vmlinuz, modules, abi, nil
}

// BuildNodeImage copies the kernel found in kernelDir to outDir/vmlinuz,
// writes the node image's initramfs to outDir/initrd.gz and returns both. The image is busybox plus
// the NIC modules; its /init does DHCP, fetches the configuration URL given
// as slipway.config= (when present) and reports to slipway.phonehome= (see
// [InitScript]).
func BuildNodeImage(kernelDir, busybox, outDir string) (NodeImage, error) {
	vmlinuz, modules, abi, err := FindKernel(kernelDir)
	if err != nil {
		return NodeImage{}, fmt.Errorf("build node image: %w", err)
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return NodeImage{}, fmt.Errorf("build node image: read busybox (install busybox-static): %w", err)
	}
	found := map[string]string{}
	err = filepath.WalkDir(modules, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name, ok := strings.CutSuffix(d.Name(), ".ko"); ok && !d.IsDir() {
			found[name] = p
		}
		return nil
	})
	if err != nil {
		return NodeImage{}, fmt.Errorf("build node image: list modules of %s: %w", abi, err)
	}
	var w cpioWriter
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "tmp", "lib", "lib/modules", "usr", "usr/share", "usr/share/udhcpc"} {
		w.dir(d)
	}
	// The kernel opens /dev/console for init before anything is mounted.
	w.charDev("dev/console", 5, 1)
	w.file("bin/busybox", 0o755, bb)
	w.file("init", 0o755, []byte(InitScript))
	w.file("usr/share/udhcpc/default.script", 0o755, []byte(udhcpcScript))
	for _, m := range nodeModules {
		p, ok := found[m]
		if !ok {
			// Built into this kernel, or not needed by it: init skips it.
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return NodeImage{}, fmt.Errorf("build node image: %w", err)
		}
		w.file("lib/modules/"+m+".ko", 0o644, b)
	}
	if _, ok := found["virtio_net"]; !ok {
		return NodeImage{}, errors.New("build node image: virtio_net.ko not in the kernel package (is it built in?)")
	}
	raw := w.close()
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if _, err := zw.Write(raw); err != nil {
		return NodeImage{}, fmt.Errorf("build node image: compress: %w", err)
	}
	if err := zw.Close(); err != nil {
		return NodeImage{}, fmt.Errorf("build node image: compress: %w", err)
	}
	initrd := filepath.Join(outDir, "initrd.gz")
	if err := os.WriteFile(initrd, gz.Bytes(), 0o644); err != nil {
		return NodeImage{}, fmt.Errorf("build node image: %w", err)
	}
	kernel := filepath.Join(outDir, "vmlinuz")
	if err := copyFile(vmlinuz, kernel); err != nil {
		return NodeImage{}, fmt.Errorf("build node image: copy kernel: %w", err)
	}
	return NodeImage{Dir: outDir, Kernel: kernel, Initrd: initrd, ABI: abi}, nil
}

// InitScript is the node image's /init. It prints INIT: lines on the
// serial console that tests and people can follow:
//
//	INIT: started
//	INIT: dhcp ok ip=10.77.0.10/24       (or INIT: dhcp failed)
//	INIT: CONFIG-OK bytes=123            (when slipway.config= is set)
//	INIT: CONFIG-RAN                     (when the configuration is a #! script)
//	INIT: PHONE-HOME-OK next=poweroff
//
// The phone-home is an HTTP POST to the slipway.phonehome= URL (a GET to
// <phonehome=>/phone-home?mac=... with the older phonehome=BASE form), with
// the MAC, IP and uptime as query parameters. The answer is the next action:
// "hold" keeps the node running, anything else powers it off so QEMU exits.
const InitScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
echo "INIT: started"
for m in ` + "virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net e1000" + `; do
  [ -f /lib/modules/$m.ko ] && { insmod /lib/modules/$m.ko || echo "INIT: insmod $m failed"; }
done
PH= BASE= CFG= NAME=
for a in $(cat /proc/cmdline); do
  case "$a" in
    slipway.phonehome=*) PH="${a#slipway.phonehome=}" ;;
    phonehome=*) BASE="${a#phonehome=}" ;;
    slipway.config=*) CFG="${a#slipway.config=}" ;;
    slipway.node=*) NAME="${a#slipway.node=}" ;;
  esac
done
IF=
for i in $(seq 1 100); do
  IF=$(ls /sys/class/net | grep -v '^lo$' | head -n1)
  [ -n "$IF" ] && break
  sleep 0.1
done
ip link set lo up
ip link set "$IF" up
MAC=$(cat /sys/class/net/$IF/address)
if udhcpc -i "$IF" -s /usr/share/udhcpc/default.script -q -n -t 10 -T 1 >/tmp/udhcpc.log 2>&1; then
  echo "INIT: dhcp ok ip=$(ip -4 -o addr show dev $IF | awk '{print $4}')"
else
  echo "INIT: dhcp failed"; cat /tmp/udhcpc.log
fi
if [ -n "$CFG" ]; then
  if wget -q -O /tmp/config "$CFG"; then
    echo "INIT: CONFIG-OK bytes=$(wc -c </tmp/config)"
    # A real node would run kubeadm join from here; run what it was given.
    case "$(head -c 2 /tmp/config)" in '#!') sh /tmp/config && echo "INIT: CONFIG-RAN" || echo "INIT: CONFIG-RUN-FAILED" ;; esac
  else
    echo "INIT: CONFIG-FAILED"
  fi
fi
UP=$(cut -d' ' -f1 /proc/uptime)
IP=$(ip -4 -o addr show dev $IF | awk '{print $4}' | cut -d/ -f1)
if [ -n "$PH" ]; then
  case "$PH" in *\?*) SEP='&' ;; *) SEP='?' ;; esac
  ACTION=$(wget -q -O - --post-data "node=$NAME mac=$MAC ip=$IP uptime=$UP" "$PH${SEP}mac=$MAC&ip=$IP&uptime=$UP&status=booted") && echo "INIT: PHONE-HOME-OK next=$ACTION" || echo "INIT: PHONE-HOME-FAILED"
elif [ -n "$BASE" ]; then
  ACTION=$(wget -q -O - "$BASE/phone-home?mac=$MAC&ip=$IP&uptime=$UP") && echo "INIT: PHONE-HOME-OK next=$ACTION" || echo "INIT: PHONE-HOME-FAILED"
else
  echo "INIT: no slipway.phonehome= on the kernel command line"
fi
case "$ACTION" in hold*) while :; do sleep 3600; done ;; esac
sync
poweroff -f
`

// udhcpcScript configures the interface from udhcpc's environment (busybox
// 1.35 exports $mask as a prefix length).
const udhcpcScript = `#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface" ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route add default via $(echo $router | cut -d' ' -f1) dev "$interface"
    ;;
esac
exit 0
`

// cpioWriter writes a newc ("070701") cpio archive, the initramfs format.
type cpioWriter struct {
	buf bytes.Buffer
	ino uint32
}

func (w *cpioWriter) header(name string, mode uint32, size int, rmajor, rminor uint32) {
	w.ino++
	nlink := uint32(1)
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	fmt.Fprintf(&w.buf, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		w.ino, mode, 0, 0, nlink, 0, size, 0, 0, rmajor, rminor, len(name)+1, 0)
	w.buf.WriteString(name)
	w.buf.WriteByte(0)
	w.pad()
}

func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

func (w *cpioWriter) dir(name string) { w.header(name, 0o040755, 0, 0, 0) }

func (w *cpioWriter) charDev(name string, major, minor uint32) {
	w.header(name, 0o020600, 0, major, minor)
}

func (w *cpioWriter) file(name string, perm uint32, data []byte) {
	w.header(name, 0o100000|perm, len(data), 0, 0)
	w.buf.Write(data)
	w.pad()
}

// close appends the trailer and returns the archive.
func (w *cpioWriter) close() []byte {
	w.header("TRAILER!!!", 0, 0, 0, 0)
	return w.buf.Bytes()
}
