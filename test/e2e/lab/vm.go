//go:build e2e

package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Firmware selects how a VM network-boots.
type Firmware string

// Firmware kinds.
const (
	// FirmwareBIOS is SeaBIOS with QEMU's iPXE option ROM (pxe-virtio.rom):
	// the ROM is iPXE, so its first DHCP request already identifies as iPXE.
	FirmwareBIOS Firmware = "bios"
	// FirmwareUEFI is OVMF with QEMU's iPXE EFI driver (efi-virtio.rom).
	FirmwareUEFI Firmware = "uefi"
	// FirmwareUEFIPXE is OVMF with the option ROM removed (romfile=), so
	// EDK2's own PXE client asks DHCP as PXEClient:Arch:00007 and fetches
	// the iPXE binary over TFTP, like most real UEFI servers.
	FirmwareUEFIPXE Firmware = "uefi-pxe"
)

// BootDevice is the device a VM boots from at its next power-on.
type BootDevice string

// Boot devices.
const (
	// BootNetwork PXE-boots (the default).
	BootNetwork BootDevice = "pxe"
	// BootDisk boots from the (absent) disk: the VM gets no PXE ROM, so it
	// never asks DHCP and stops at "No bootable device".
	BootDisk BootDevice = "disk"
)

// Default firmware paths from Debian's ovmf package.
const (
	DefaultOVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	DefaultOVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// VMConfig describes a virtual machine. A zero field means the default.
type VMConfig struct {
	// Name labels the VM in logs and names its console file (required).
	Name string
	// MAC is the NIC's hardware address (required).
	MAC net.HardwareAddr
	// Firmware is bios (default), uefi or uefi-pxe.
	Firmware Firmware
	// MemoryMiB is the VM's memory (default 512).
	MemoryMiB int
	// CPUs is the number of virtual CPUs (default 1); TCG runs each on a
	// host thread of its own.
	CPUs int
	// NIC is the QEMU network device model (default virtio-net-pci; e1000
	// costs about 4 s of link-up in Linux).
	NIC string
	// OVMFCode and OVMFVars are the UEFI firmware images (defaults
	// DefaultOVMFCode and DefaultOVMFVars); the variables are copied per VM.
	OVMFCode, OVMFVars string
	// QEMU is the emulator (default qemu-system-x86_64).
	QEMU string
}

// VM is a QEMU virtual machine on a tap of the lab's bridge, run under TCG.
// Its serial console (firmware, iPXE and Linux output) goes to a file.
type VM struct {
	lab     *Lab
	cfg     VMConfig
	tap     string
	console string
	vars    string

	mu      sync.Mutex
	boot    BootDevice
	proc    *Process
	powerOn time.Time
}

// NewVM creates a tap for a VM; the VM is off until PowerOn.
func (l *Lab) NewVM(ctx context.Context, cfg VMConfig) (*VM, error) {
	if cfg.Name == "" || len(cfg.MAC) != 6 {
		return nil, fmt.Errorf("new vm %q: Name and a 6-byte MAC are required", cfg.Name)
	}
	if cfg.Firmware == "" {
		cfg.Firmware = FirmwareBIOS
	}
	switch cfg.Firmware {
	case FirmwareBIOS, FirmwareUEFI, FirmwareUEFIPXE:
	default:
		return nil, fmt.Errorf("new vm %s: unknown firmware %q (want bios, uefi or uefi-pxe)", cfg.Name, cfg.Firmware)
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 512
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	if cfg.NIC == "" {
		cfg.NIC = "virtio-net-pci"
	}
	if cfg.OVMFCode == "" {
		cfg.OVMFCode = DefaultOVMFCode
	}
	if cfg.OVMFVars == "" {
		cfg.OVMFVars = DefaultOVMFVars
	}
	if cfg.QEMU == "" {
		cfg.QEMU = "qemu-system-x86_64"
	}
	vm := &VM{lab: l, cfg: cfg, boot: BootNetwork, console: filepath.Join(l.cfg.Dir, "console-"+cfg.Name+".log")}
	if cfg.Firmware != FirmwareBIOS {
		vm.vars = filepath.Join(l.cfg.Dir, "ovmf-vars-"+cfg.Name+".fd")
		if err := copyFile(cfg.OVMFVars, vm.vars); err != nil {
			return nil, fmt.Errorf("new vm %s: copy uefi variables: %w", cfg.Name, err)
		}
	}
	tap, err := l.addTap(ctx)
	if err != nil {
		return nil, fmt.Errorf("new vm %s: %w", cfg.Name, err)
	}
	vm.tap = tap
	l.mu.Lock()
	l.vms = append(l.vms, vm)
	l.mu.Unlock()
	return vm, nil
}

// Name returns the VM's name.
func (v *VM) Name() string { return v.cfg.Name }

// MAC returns the VM's NIC address.
func (v *VM) MAC() net.HardwareAddr { return v.cfg.MAC }

// Firmware returns how the VM boots.
func (v *VM) Firmware() Firmware { return v.cfg.Firmware }

// SetBootDevice sets the device the next PowerOn boots from (a BMC's
// one-time or persistent boot override lands here).
func (v *VM) SetBootDevice(d BootDevice) {
	v.mu.Lock()
	v.boot = d
	v.mu.Unlock()
}

// BootDevice returns the device the next PowerOn boots from.
func (v *VM) BootDevice() BootDevice {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.boot
}

// args returns QEMU's command line for a power-on from dev.
func (v *VM) args(dev BootDevice) []string {
	nic := fmt.Sprintf("%s,netdev=n0,mac=%s", v.cfg.NIC, v.cfg.MAC)
	boot := "order=n"
	switch {
	case dev == BootDisk:
		nic += ",romfile="
		boot = "order=c"
	case v.cfg.Firmware == FirmwareUEFIPXE:
		nic += ",romfile=,bootindex=1"
	default:
		nic += ",bootindex=1"
	}
	machine := "pc,accel=tcg"
	if v.cfg.Firmware != FirmwareBIOS {
		machine = "q35,accel=tcg"
	}
	a := []string{
		"-machine", machine, "-m", fmt.Sprint(v.cfg.MemoryMiB), "-smp", fmt.Sprint(v.cfg.CPUs),
		// -nographic points SeaBIOS's and iPXE's output at the serial port;
		// with -display none only the kernel's output would reach the file.
		"-nographic", "-monitor", "none", "-serial", "file:" + v.console,
		"-netdev", "tap,id=n0,ifname=" + v.tap + ",script=no,downscript=no",
		"-device", nic, "-boot", boot,
		// A failed boot (kernel panic=1, firmware reboot) ends QEMU instead of looping.
		"-no-reboot",
	}
	if v.cfg.Firmware != FirmwareBIOS {
		a = append(a,
			"-drive", "if=pflash,format=raw,readonly=on,file="+v.cfg.OVMFCode,
			"-drive", "if=pflash,format=raw,file="+v.vars)
	}
	return a
}

// PowerOn starts QEMU (a no-op when the VM runs). The console file is
// truncated, so it holds this boot only.
func (v *VM) PowerOn(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.proc != nil && v.proc.Running() {
		return nil
	}
	if err := os.WriteFile(v.console, nil, 0o600); err != nil {
		return fmt.Errorf("power on vm %s: reset console: %w", v.cfg.Name, err)
	}
	cmd := v.lab.Command(v.cfg.QEMU, v.args(v.boot)...)
	p, err := startProcess("qemu-"+v.cfg.Name, cmd, filepath.Join(v.lab.cfg.Dir, "qemu-"+v.cfg.Name+".log"))
	if err != nil {
		return fmt.Errorf("power on vm %s: %w", v.cfg.Name, err)
	}
	v.proc, v.powerOn = p, time.Now()
	v.lab.log.Info("vm powered on", "vm", v.cfg.Name, "mac", v.cfg.MAC.String(), "firmware", v.cfg.Firmware, "boot", v.boot, "pid", p.PID())
	return nil
}

// PowerOff kills QEMU by PID and waits for it to exit (a no-op when off).
func (v *VM) PowerOff() {
	v.mu.Lock()
	p := v.proc
	v.mu.Unlock()
	if p == nil || !p.Running() {
		return
	}
	p.Stop()
	v.lab.log.Info("vm powered off", "vm", v.cfg.Name, "pid", p.PID())
}

// Reset powers the VM off and on again.
func (v *VM) Reset(ctx context.Context) error {
	v.PowerOff()
	return v.PowerOn(ctx)
}

// PoweredOn reports whether QEMU runs.
func (v *VM) PoweredOn() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.proc != nil && v.proc.Running()
}

// PoweredOnAt returns when the last PowerOn started QEMU.
func (v *VM) PoweredOnAt() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.powerOn
}

// Exited returns a channel closed when QEMU exits (nil before PowerOn).
func (v *VM) Exited() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.proc == nil {
		return nil
	}
	return v.proc.Done()
}

// ConsolePath returns the serial console file of the current boot.
func (v *VM) ConsolePath() string { return v.console }

// Console returns the serial console of the current boot, at most the last
// 16 KiB, with carriage returns and escape sequences of the firmware's
// screen handling reduced to plain lines.
func (v *VM) Console() string {
	b, err := os.ReadFile(v.console)
	if err != nil {
		return fmt.Sprintf("(console %s: %v)", v.console, err)
	}
	const max = 16 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return cleanConsole(b)
}

// WaitConsole waits until the console shows s, QEMU exits, or ctx ends.
func (v *VM) WaitConsole(ctx context.Context, s string) error {
	exited := v.Exited()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if b, err := os.ReadFile(v.console); err == nil && bytes.Contains(b, []byte(s)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vm %s: wait for %q on the console: %w", v.cfg.Name, s, ctx.Err())
		case <-exited:
			if b, err := os.ReadFile(v.console); err == nil && bytes.Contains(b, []byte(s)) {
				return nil
			}
			return fmt.Errorf("vm %s: qemu exited before %q appeared on the console", v.cfg.Name, s)
		case <-t.C:
		}
	}
}

// cleanConsole strips ANSI escape sequences and carriage returns.
func cleanConsole(b []byte) string {
	var sb strings.Builder
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == 0x1b:
			// Skip ESC [ ... final byte (0x40-0x7e), or a two-byte escape.
			if i+1 < len(b) && b[i+1] == '[' {
				i += 2
				for i < len(b) && (b[i] < 0x40 || b[i] > 0x7e) {
					i++
				}
			} else {
				i++
			}
		case c == '\r':
		case c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f):
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
