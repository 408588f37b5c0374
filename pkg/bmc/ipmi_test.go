package bmc_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

// ipmiSim is a running ipmi_sim whose chassis is two files in state.
type ipmiSim struct {
	node  inventory.Node
	state string
}

func (s ipmiSim) read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.state, name))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// startIPMISim runs OpenIPMI's ipmi_sim on 127.0.0.1 with the fixtures in
// testdata/ipmisim, and kills exactly that process when the test ends.
func startIPMISim(t *testing.T) ipmiSim {
	t.Helper()
	testenv.RequireCommands(t, "ipmi_sim", "ipmitool")
	dir := t.TempDir()
	state := filepath.Join(dir, "chassis")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "simstate"), 0o700); err != nil {
		t.Fatal(err)
	}
	port := freeUDPPort(t)
	fill := func(src, dst string, mode os.FileMode, repl ...string) {
		b, err := os.ReadFile(filepath.Join("testdata", "ipmisim", src))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.NewReplacer(repl...).Replace(string(b))
		if err := os.WriteFile(dst, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	chassis := filepath.Join(dir, "chassis.sh")
	fill("chassis.sh.tmpl", chassis, 0o700, "@STATE@", state)
	fill("lan.conf.tmpl", filepath.Join(dir, "lan.conf"), 0o600,
		"@PORT@", strconv.Itoa(port), "@CHASSIS@", chassis, "@PASSWORD@", testPassword)
	emu, err := filepath.Abs(filepath.Join("testdata", "ipmisim", "lab.emu"))
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "ipmi_sim.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ipmi_sim", "-c", filepath.Join(dir, "lan.conf"), "-f", emu, "-s", filepath.Join(dir, "simstate"), "-n")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ipmi_sim: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("ipmi_sim output:\n%s", b)
		}
	})
	n := inventory.Node{Name: "ipmi-01", BMC: inventory.BMC{
		URL: "ipmi://127.0.0.1:" + strconv.Itoa(port), Protocol: inventory.ProtocolIPMI,
		Host: "127.0.0.1", Port: uint16(port), Username: "admin", Password: passwordFile(t, testPassword),
	}}
	// ipmi_sim is usually ready in well under a second.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := bmc.Dial(context.Background(), n.Name, n.BMC, bmc.Config{ConnectTimeout: 2 * time.Second})
		if err == nil {
			c.Close(context.Background())
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ipmi_sim on 127.0.0.1:%d did not answer: %v", port, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return ipmiSim{node: n, state: state}
}

// TestIPMI drives a real IPMI BMC (ipmi_sim) through bmclib's ipmitool
// provider: status, one-time PXE, on, cycle, off, and a refused password.
func TestIPMI(t *testing.T) {
	sim := startIPMISim(t)
	ctx := context.Background()
	cfg := bmc.Config{Backoff: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}, VerifyTimeout: 10 * time.Second}
	c, err := bmc.Dial(ctx, sim.node.Name, sim.node.BMC, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close(ctx)
	if got := c.Info().Protocol; got != "ipmi" {
		t.Errorf("Info().Protocol = %q, want ipmi", got)
	}
	if st, err := c.PowerState(ctx); err != nil || st != bmc.PowerOff {
		t.Errorf("PowerState() = %q, %v, want off", st, err)
	}
	if err := c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{}); err != nil {
		t.Fatalf("SetBootDevice(pxe): %v", err)
	}
	if got := sim.read(t, "bootdev"); got != "pxe" {
		t.Errorf("chassis boot device after SetBootDevice(pxe) = %q, want pxe", got)
	}
	if err := c.SetPower(ctx, bmc.ActionOn); err != nil {
		t.Fatalf("SetPower(on): %v", err)
	}
	if err := c.SetPower(ctx, bmc.ActionCycle); err != nil {
		t.Fatalf("SetPower(cycle): %v", err)
	}
	if err := c.SetPower(ctx, bmc.ActionOff); err != nil {
		t.Fatalf("SetPower(off): %v", err)
	}
	if st, err := c.PowerState(ctx); err != nil || st != bmc.PowerOff {
		t.Errorf("PowerState() after off = %q, %v, want off", st, err)
	}
	want := []string{"set boot pxe", "set power 1", "set power 0", "set power 1", "set power 0"}
	if diff := cmp.Diff(want, strings.Split(sim.read(t, "log"), "\n")); diff != "" {
		t.Errorf("what the BMC told the chassis (-want +got):\n%s", diff)
	}

	bad := sim.node
	bad.BMC.Password = passwordFile(t, "wrong-password")
	res := bmc.Run(ctx, []inventory.Node{bad, sim.node}, bmc.RunConfig{Client: cfg}, bmc.StatusStep())
	if res[1].Err != nil || res[1].Power != bmc.PowerOff {
		t.Errorf("Run: good node = %q, %v, want off", res[1].Power, res[1].Err)
	}
	if res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "power status ipmi-01 (bmc "+bad.BMC.Addr()+"): connect: log in:") ||
		!strings.Contains(res[0].Err.Error(), "Unable to establish IPMI v2 / RMCP+ session") {
		t.Errorf("Run with a wrong password: error = %v, want a one-line log in failure", res[0].Err)
	}
	t.Logf("wrong password: %v", res[0].Err)
	if res[0].Err != nil && strings.Contains(res[0].Err.Error(), "wrong-password") {
		t.Errorf("the password leaked into the error: %v", res[0].Err)
	}
}
