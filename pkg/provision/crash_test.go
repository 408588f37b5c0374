package provision_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/provision/provisionfake"
)

// The crash test runs `up` (the orchestrator) in a child process — this
// test binary re-executed with crashChildEnv set — against a fake rack that
// lives in the parent and so survives every kill. The child registers its
// event endpoint with the parent; the parent's machines deliver their boot
// events there.
const (
	crashChildEnv = "SLIPWAY_PROVISION_CRASH_CHILD"
	crashNodes    = 24
)

func crashTimeouts() provision.Timeouts {
	return provision.Timeouts{DHCP: 5 * time.Second, Netboot: 5 * time.Second, Join: 20 * time.Second,
		Ready: 20 * time.Second, BMC: 3 * time.Second}
}

// runCrashChild is the body of the child process TestCrashResume starts
// and kills (through TestMain): the orchestrator against the fake rack.
func runCrashChild(world, dir string) error {
	client := &provisionfake.Client{Base: world}
	o, err := provision.New(provision.Config{
		Nodes: testNodes(1, crashNodes-1), StateDir: dir, BMCs: client, Issuer: client, Readiness: client,
		ReadyPoll: 20 * time.Millisecond, Parallel: 3, Backoff: 10 * time.Millisecond,
		Timeouts: crashTimeouts(), EarlyNetboot: os.Getenv("SLIPWAY_PROVISION_CRASH_EARLY") == "1",
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev := provision.Event{Node: r.URL.Query().Get("node"), Kind: provision.EventKind(r.URL.Query().Get("kind"))}
		if err := o.Observe(r.Context(), ev); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	resp, err := http.Post(world+"/target", "text/plain", bytes.NewBufferString("http://"+ln.Addr().String()))
	if err != nil {
		return err
	}
	resp.Body.Close()
	rep, err := o.Run(context.Background())
	if err != nil {
		return err
	}
	if rep.Ready != crashNodes {
		var buf bytes.Buffer
		rep.WriteSummary(&buf)
		return fmt.Errorf("run ended with %d of %d nodes ready:\n%s", rep.Ready, crashNodes, buf.String())
	}
	return nil
}

// TestMain runs the crash test's child instead of the tests when the test
// binary is started again as that child.
func TestMain(m *testing.M) {
	if world := os.Getenv(crashChildEnv); world != "" {
		if err := runCrashChild(world, os.Getenv("SLIPWAY_PROVISION_CRASH_DIR")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestCrashResume(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the test binary 20+ times")
	}
	for _, early := range []bool{false, true} {
		name := "staged"
		if early {
			name = "early-netboot"
		}
		t.Run(name, func(t *testing.T) { t.Parallel(); crashResume(t, early) })
	}
}

func crashResume(t *testing.T, early bool) {
	nodes := testNodes(1, crashNodes-1)
	var machines []*provisionfake.Machine
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, n := range nodes {
		machines = append(machines, &provisionfake.Machine{Name: n.Name, Boot: time.Duration(600+rng.IntN(900)) * time.Millisecond})
	}
	rack := provisionfake.New(machines...)
	var mu sync.Mutex
	target := ""
	hc := &http.Client{Timeout: 2 * time.Second}
	rack.Deliver = func(ctx context.Context, ev provision.Event) error {
		mu.Lock()
		u := target
		mu.Unlock()
		if u == "" {
			return errors.New("no provisioner")
		}
		resp, err := hc.Post(fmt.Sprintf("%s/?node=%s&kind=%s", u, ev.Node, ev.Kind), "text/plain", nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/", rack.Handler())
	mux.HandleFunc("POST /target", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		target = string(b)
		mu.Unlock()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	dir := t.TempDir()
	world := "http://" + ln.Addr().String()

	child := func(ctx context.Context) *exec.Cmd {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+world, "SLIPWAY_PROVISION_CRASH_DIR="+dir)
		if early {
			cmd.Env = append(cmd.Env, "SLIPWAY_PROVISION_CRASH_EARLY=1")
		}
		return cmd
	}
	const kills = 20
	t.Logf("seed %d", seed)
	killed := 0
	for i := 0; killed < kills && i < 3*kills; i++ {
		cmd := child(t.Context())
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill anywhere from start-up to well into the boots.
		wait := time.Duration(30+rng.IntN(400)) * time.Millisecond
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			// It finished before the kill: every node is ready already,
			// which ends the test early but is not a failure by itself.
			if err != nil {
				t.Fatalf("child %d exited early: %v\n%s", i, err, out.String())
			}
		case <-time.After(wait):
			cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			killed++
		}
		mu.Lock()
		target = ""
		mu.Unlock()
		st, err := provision.ReadJournal(filepath.Join(dir, provision.JournalFile))
		if err != nil {
			t.Fatalf("journal after kill %d (at %s): %v", killed, wait, err)
		}
		if i%5 == 0 {
			t.Logf("kill %d after %s: %d records, warnings %q", killed, wait, st.Records, st.Warnings)
		}
		if allReady(st) {
			break
		}
	}
	t.Logf("%d kills", killed)
	// The last run goes to the end.
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := child(ctx)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("final resume: %v\n%s", err, out)
	}
	st, err := provision.ReadJournal(filepath.Join(dir, provision.JournalFile))
	if err != nil {
		t.Fatalf("journal after the final run: %v", err)
	}
	if !allReady(st) || len(st.Nodes) != crashNodes {
		t.Errorf("journal after the final run: %d nodes, all ready %v; want %d ready", len(st.Nodes), allReady(st), crashNodes)
	}
	for _, m := range machines {
		s := m.Stats()
		if s.PowerOpsAfterNetboot != 0 {
			t.Errorf("%s was power-switched %d times after it had fetched its config (passed netboot)", m.Name, s.PowerOpsAfterNetboot)
		}
		if !s.Joined {
			t.Errorf("%s never joined", m.Name)
		}
	}
	if killed < kills {
		t.Errorf("only %d kills before the rack was ready; the test needs %d (make the boots longer)", killed, kills)
	}
}

func allReady(st *provision.JournalState) bool {
	if len(st.Nodes) < crashNodes {
		return false
	}
	for _, r := range st.Nodes {
		if r.Phase != provision.PhaseReady {
			return false
		}
	}
	return true
}
