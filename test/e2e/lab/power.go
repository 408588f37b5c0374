//go:build e2e

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Power actions a BMC simulator passes to [VM.ApplyPower].
const (
	PowerOn    = "on"
	PowerOff   = "off"
	PowerReset = "reset" // also "cycle": off, then on
)

// ApplyPower performs a BMC's power action on the VM: "on", "off" (also
// "soft-off" and "shutdown": the node image has no ACPI daemon, so all
// cut power), "reset" or "cycle". The redfishsim OnPower hook and the
// chassis_control program of [PowerControl] call it.
func (v *VM) ApplyPower(ctx context.Context, action string) error {
	switch action {
	case PowerOn:
		return v.PowerOn(ctx)
	case PowerOff, "soft-off", "shutdown":
		v.PowerOff()
		return nil
	case PowerReset, "cycle":
		return v.Reset(ctx)
	}
	return fmt.Errorf("vm %s: unknown power action %q (want on, off, reset or cycle)", v.cfg.Name, action)
}

// PowerControl lets programs outside the test binary (ipmi_sim's
// chassis_control hook) read and set the lab VMs' power and boot device,
// over HTTP on 127.0.0.1 of the lab's namespace. Build it with
// [Lab.StartPowerControl] and write a hook per VM with ChassisScript.
type PowerControl struct {
	lab  *Lab
	srv  *http.Server
	addr string

	mu  sync.Mutex
	vms map[string]*VM
}

// StartPowerControl serves power control for the lab's VMs on a free port
// of 127.0.0.1 in the lab's namespace (the process must run inside it).
// Lab.Stop stops it.
func (l *Lab) StartPowerControl(ctx context.Context) (*PowerControl, error) {
	if !l.InProcess() {
		return nil, errors.New("start power control: the test binary is not in the lab's netns (call lab.Main from TestMain)")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start power control: %w", err)
	}
	pc := &PowerControl{lab: l, addr: ln.Addr().String(), vms: map[string]*VM{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /vm/{name}/power", func(w http.ResponseWriter, r *http.Request) {
		if vm := pc.vm(w, r); vm != nil {
			if vm.PoweredOn() {
				fmt.Fprint(w, "1")
			} else {
				fmt.Fprint(w, "0")
			}
		}
	})
	mux.HandleFunc("GET /vm/{name}/boot", func(w http.ResponseWriter, r *http.Request) {
		if vm := pc.vm(w, r); vm != nil {
			if vm.BootDevice() == BootNetwork {
				fmt.Fprint(w, "pxe")
			} else {
				fmt.Fprint(w, "default")
			}
		}
	})
	mux.HandleFunc("POST /vm/{name}/set", pc.set)
	pc.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = pc.srv.Serve(ln) }()
	l.mu.Lock()
	l.closers = append(l.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = pc.srv.Shutdown(ctx)
	})
	l.mu.Unlock()
	return pc, nil
}

func (pc *PowerControl) vm(w http.ResponseWriter, r *http.Request) *VM {
	pc.mu.Lock()
	vm := pc.vms[r.PathValue("name")]
	pc.mu.Unlock()
	if vm == nil {
		http.NotFound(w, r)
	}
	return vm
}

// set applies ipmi_sim's "set NAME VALUE" pairs, passed as a query.
func (pc *PowerControl) set(w http.ResponseWriter, r *http.Request) {
	vm := pc.vm(w, r)
	if vm == nil {
		return
	}
	q := r.URL.Query()
	var err error
	switch {
	case q.Get("boot") != "":
		// ipmi_sim keeps only the device, not "next boot only".
		if q.Get("boot") == "pxe" {
			vm.SetBootDevice(BootNetwork)
		} else {
			vm.SetBootDevice(BootDisk)
		}
	case q.Get("power") == "1":
		err = vm.ApplyPower(r.Context(), PowerOn)
	case q.Get("power") == "0", q.Get("shutdown") == "1":
		err = vm.ApplyPower(r.Context(), PowerOff)
	case q.Get("reset") == "1":
		err = vm.ApplyPower(r.Context(), PowerReset)
	default:
		// identify, and whatever else ipmi_sim may send: nothing to do.
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// ChassisScript writes dir/chassis-<vm>.sh, an ipmi_sim chassis_control
// program that powers vm and sets its boot device through this server
// (with busybox wget), and returns its path. Pass it as
// ipmisim.Config.ChassisControl.
func (pc *PowerControl) ChassisScript(vm *VM, dir string) (string, error) {
	pc.mu.Lock()
	pc.vms[vm.Name()] = vm
	pc.mu.Unlock()
	u := "http://" + pc.addr + "/vm/" + vm.Name()
	script := strings.ReplaceAll(`#!/bin/sh
# ipmi_sim chassis_control for lab VM @NAME@: get power|boot, set power|reset|shutdown|boot.
U="@URL@"
# No -T: busybox 1.35 (Debian 12, static) crashes with it.
W="@BUSYBOX@ wget -q"
op=$1; shift
case $op in
get)
	for n in "$@"; do
		case $n in
		power) echo "power:$($W -O - "$U/power" || echo 0)" ;;
		boot) echo "boot:$($W -O - "$U/boot" || echo default)" ;;
		esac
	done ;;
set)
	while [ $# -ge 2 ]; do
		$W -O /dev/null --post-data "" "$U/set?$1=$2"
		shift 2
	done ;;
esac
exit 0
`, "@URL@", u)
	script = strings.ReplaceAll(script, "@NAME@", vm.Name())
	script = strings.ReplaceAll(script, "@BUSYBOX@", DefaultBusybox)
	path := filepath.Join(dir, "chassis-"+vm.Name()+".sh")
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		return "", fmt.Errorf("write chassis script for vm %s: %w", vm.Name(), err)
	}
	return path, nil
}
