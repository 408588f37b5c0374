//go:build e2e

package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// EnvNetns is the environment variable that [Main] sets in the re-executed
// test binary: the name of the namespace it runs in.
const EnvNetns = "SLIPWAY_E2E_NETNS"

// netnsPrefix starts the name of every namespace the lab creates, so a
// leftover one is easy to recognise (ip netns list).
const netnsPrefix = "slipway-e2e-"

// M is the part of *testing.M that [Main] needs.
type M interface{ Run() int }

// Main runs the tests of m inside a network namespace of their own and
// returns the exit code for os.Exit:
//
//	func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }
//
// As root with ip(8) available, it creates slipway-e2e-<random>, runs this
// same test binary again inside it (ip netns exec) with [EnvNetns] set,
// forwards SIGINT and SIGTERM to it, then kills whatever the child left
// running in the namespace and deletes it. In the child, and where the lab
// cannot run (not root, no ip), it just runs m; the tests then skip or fail
// through internal/testenv.
func Main(m M) int {
	if os.Getenv(EnvNetns) != "" || os.Geteuid() != 0 {
		return m.Run()
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return m.Run()
	}
	name, err := CreateNetns(context.Background())
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab: %v\n", err)
		return 1
	}
	defer func() {
		if err := DeleteNetns(context.Background(), name); err != nil {
			fmt.Fprintf(os.Stderr, "lab: %v\n", err)
		}
	}()
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab: find the test binary: %v\n", err)
		return 1
	}
	args := append([]string{"netns", "exec", name, self}, os.Args[1:]...)
	cmd := exec.Command("ip", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), EnvNetns+"="+name)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "lab: start the tests in netns %s: %v\n", name, err)
		return 1
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sig:
			_ = cmd.Process.Signal(s)
		case err := <-done:
			if err == nil {
				return 0
			}
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() > 0 {
				return ee.ExitCode()
			}
			fmt.Fprintf(os.Stderr, "lab: tests in netns %s: %v\n", name, err)
			return 1
		}
	}
}

// CreateNetns creates a network namespace named slipway-e2e-<random> with
// its loopback up and returns the name.
func CreateNetns(ctx context.Context) (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("create netns: random name: %w", err)
	}
	name := netnsPrefix + hex.EncodeToString(b)
	if err := ip(ctx, "netns", "add", name); err != nil {
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	if err := ip(ctx, "-n", name, "link", "set", "lo", "up"); err != nil {
		_ = ip(ctx, "netns", "del", name)
		return "", fmt.Errorf("create netns %s: loopback up: %w", name, err)
	}
	return name, nil
}

// DeleteNetns kills every process still running in the namespace (a QEMU
// or dnsmasq a crashed test left behind), waits briefly for them to exit,
// and deletes the namespace, which removes its bridge and taps.
func DeleteNetns(ctx context.Context, name string) error {
	for _, pid := range netnsPIDs(ctx, name) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for i := 0; i < 50 && len(netnsPIDs(ctx, name)) > 0; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if err := ip(ctx, "netns", "del", name); err != nil {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}

// netnsPIDs lists the processes in namespace name (ip netns pids).
func netnsPIDs(ctx context.Context, name string) []int {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", name).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// inNetns reports whether this process runs in namespace name.
func inNetns(name string) bool {
	var self, ns syscall.Stat_t
	if syscall.Stat("/proc/self/ns/net", &self) != nil || syscall.Stat("/run/netns/"+name, &ns) != nil {
		return false
	}
	return self.Dev == ns.Dev && self.Ino == ns.Ino
}

// ip runs ip(8) with args and returns its output in the error when it fails.
func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
