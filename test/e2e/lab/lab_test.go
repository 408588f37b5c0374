//go:build e2e

package lab

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/testenv"
)

// TestLabLifecycle builds a lab outside any namespace of Main (so it makes
// its own), with a VM, a second host and a dnsmasq, powers the VM on and
// off, and checks that Stop leaves nothing behind: no namespace, no
// process.
func TestLabLifecycle(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "qemu-system-x86_64", "dnsmasq")
	testenv.RequireFiles(t, "/dev/net/tun")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	l, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	if l.InProcess() {
		t.Fatalf("InProcess() = true for a lab that made its own netns %s", l.Netns())
	}
	labNS := l.Netns()
	out, err := exec.Command("ip", "-n", labNS, "-o", "addr", "show", "dev", l.Bridge()).Output()
	if err != nil {
		t.Fatalf("ip addr show %s in %s: %v", l.Bridge(), labNS, err)
	}
	for _, want := range []string{"10.77.0.1/24", "fd77::1/64", "fe80:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("bridge %s addresses do not include %s:\n%s", l.Bridge(), want, out)
		}
	}
	host, err := l.AddHost(ctx, "peer", netip.MustParsePrefix("10.77.0.2/24"))
	if err != nil {
		t.Fatal(err)
	}
	// The host reaches the server's address over the bridge.
	if out, err := host.Command(DefaultBusybox, "ping", "-c", "1", "-W", "5", "10.77.0.1").CombinedOutput(); err != nil {
		t.Errorf("ping 10.77.0.1 from host %s: %v\n%s", host.Name(), err, out)
	}
	dns, err := l.StartDnsmasq(ctx, DnsmasqConfig{AddressesOnly: true, On: host})
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("52:54:00:77:0f:01")
	vm, err := l.NewVM(ctx, VMConfig{Name: "disk", MAC: mac})
	if err != nil {
		t.Fatal(err)
	}
	vm.SetBootDevice(BootDisk)
	if err := vm.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitConsole(ctx, "No bootable device"); err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, vm.Console())
	}
	if !vm.PoweredOn() {
		t.Errorf("PoweredOn() = false while QEMU runs")
	}
	qemuPID := vm.proc.PID()

	l.Stop()

	if vm.PoweredOn() {
		t.Errorf("PoweredOn() = true after Lab.Stop")
	}
	if dns.Running() {
		t.Errorf("dnsmasq (pid %d) still runs after Lab.Stop", dns.PID())
	}
	if err := syscall.Kill(qemuPID, 0); err == nil {
		t.Errorf("qemu (pid %d) still runs after Lab.Stop", qemuPID)
	}
	list, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{labNS, host.netns} {
		if strings.Contains(string(list), ns) {
			t.Errorf("netns %s still exists after Lab.Stop:\n%s", ns, list)
		}
	}
}
