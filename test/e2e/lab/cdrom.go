//go:build e2e

package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// PowerOnFromCD starts QEMU booting from the CD image at iso, as a server
// boots from its BMC's virtual CD: the NIC gets no option ROM, so the only
// way onto the network is what the CD brings (a no-op when the VM runs).
// The console file is truncated, as by PowerOn.
func (v *VM) PowerOnFromCD(ctx context.Context, iso string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.proc != nil && v.proc.Running() {
		return nil
	}
	if err := os.WriteFile(v.console, nil, 0o600); err != nil {
		return fmt.Errorf("power on vm %s from cd: reset console: %w", v.cfg.Name, err)
	}
	args := v.args(BootDisk) // no NIC option ROM
	if i := slices.Index(args, "order=c"); i >= 0 {
		args[i] = "order=d"
	}
	args = append(args, "-drive", "media=cdrom,readonly=on,format=raw,file="+iso)
	cmd := v.lab.Command(v.cfg.QEMU, args...)
	p, err := startProcess("qemu-"+v.cfg.Name, cmd, filepath.Join(v.lab.cfg.Dir, "qemu-"+v.cfg.Name+".log"))
	if err != nil {
		return fmt.Errorf("power on vm %s from cd: %w", v.cfg.Name, err)
	}
	v.proc, v.powerOn = p, time.Now()
	v.lab.log.Info("vm powered on from cd", "vm", v.cfg.Name, "mac", v.cfg.MAC.String(), "iso", iso, "pid", p.PID())
	return nil
}
