package ipmisim

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	//go:embed lan.conf.tmpl
	lanConf string
	//go:embed lab.emu
	labEmu string
	//go:embed chassis.sh.tmpl
	chassisScript string
)

// Config configures one ipmi_sim.
type Config struct {
	// Dir is where the configuration, ipmi_sim's state and log, and the
	// built-in chassis files go; it must exist. Required.
	Dir string
	// Port is the UDP port on 127.0.0.1 (default: a free one; if another
	// process takes it before ipmi_sim binds it, Start tries another).
	Port int
	// Username is the admin user's name (default admin).
	Username string
	// Password is the admin user's password. Required.
	Password string
	// ChassisControl is the chassis_control program ipmi_sim runs as
	// "PROGRAM get power", "PROGRAM set power 1", ... (default: the built-in
	// file-backed script; Power, BootDevice and Log read its files).
	ChassisControl string
	// IPMISimPath is the ipmi_sim binary (default: ipmi_sim on PATH).
	IPMISimPath string
	// StartTimeout bounds waiting for ipmi_sim to listen (default 10 s).
	StartTimeout time.Duration
}

// Sim is a running ipmi_sim.
type Sim struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed when ipmi_sim has exited
	waitErr error         // ipmi_sim's exit, valid once exited is closed
	port    int
	user    string
	chassis string // directory of the built-in chassis files
}

// Start writes the configuration into cfg.Dir, starts ipmi_sim and returns
// once it listens on its UDP port.
func Start(ctx context.Context, cfg Config) (*Sim, error) {
	if cfg.Dir == "" || cfg.Password == "" {
		return nil, errors.New("start ipmi_sim: Dir and Password are required")
	}
	if cfg.Username == "" {
		cfg.Username = "admin"
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	bin := cfg.IPMISimPath
	if bin == "" {
		p, err := exec.LookPath("ipmi_sim")
		if err != nil {
			return nil, fmt.Errorf("start ipmi_sim: %w (install the openipmi package)", err)
		}
		bin = p
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("start ipmi_sim: %w", err)
	}
	if strings.ContainsAny(dir+cfg.Username+cfg.Password, "\"\n") {
		return nil, errors.New("start ipmi_sim: the directory, user name and password must not contain quotes or newlines")
	}
	chassis := cfg.ChassisControl
	chassisDir := ""
	if chassis == "" {
		chassisDir = filepath.Join(dir, "chassis")
		if err := os.MkdirAll(chassisDir, 0o700); err != nil {
			return nil, fmt.Errorf("start ipmi_sim: %w", err)
		}
		chassis = filepath.Join(dir, "chassis.sh")
		script := strings.ReplaceAll(chassisScript, "@STATE@", chassisDir)
		if err := os.WriteFile(chassis, []byte(script), 0o700); err != nil {
			return nil, fmt.Errorf("start ipmi_sim: %w", err)
		}
	}
	// ipmi_sim binds its UDP port itself, so a free port can only be
	// proposed, not handed over: another process may take it first. That
	// race is detected, never silent: ipmi_sim exits saying it cannot bind
	// (then another port is tried), and it counts as started only once the
	// port's socket is ipmi_sim's own.
	const tries = 5
	for attempt := 1; ; attempt++ {
		port := cfg.Port
		if port == 0 {
			var err error
			if port, err = proposeUDPPort(); err != nil {
				return nil, fmt.Errorf("start ipmi_sim: %w", err)
			}
		}
		s, err := start(ctx, cfg, bin, dir, port, chassis)
		if err == nil {
			s.chassis = chassisDir
			return s, nil
		}
		if !errors.Is(err, errBind) || cfg.Port != 0 || attempt == tries {
			return nil, err
		}
	}
}

// errBind is ipmi_sim failing to bind its port.
var errBind = errors.New("port taken")

func start(ctx context.Context, cfg Config, bin, dir string, port int, chassis string) (*Sim, error) {
	s := &Sim{port: port, user: cfg.Username, exited: make(chan struct{})}
	conf := strings.NewReplacer("@PORT@", strconv.Itoa(port), "@USER@", cfg.Username,
		"@PASSWORD@", cfg.Password, "@CHASSIS@", chassis).Replace(lanConf)
	files := map[string]string{"lan.conf": conf, "lab.emu": labEmu}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			return nil, fmt.Errorf("start ipmi_sim: %w", err)
		}
	}
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, fmt.Errorf("start ipmi_sim: %w", err)
	}
	logPath := filepath.Join(dir, "ipmi_sim.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start ipmi_sim: %w", err)
	}
	defer logf.Close()
	logStart, _ := logf.Seek(0, io.SeekEnd)
	s.cmd = exec.Command(bin, "-c", filepath.Join(dir, "lan.conf"), "-f", filepath.Join(dir, "lab.emu"), "-s", state, "-n")
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ipmi_sim: %w", err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()

	deadline := time.Now().Add(cfg.StartTimeout)
	for {
		if ownsUDPPort(s.cmd.Process.Pid, port) {
			return s, nil
		}
		select {
		case <-s.exited:
			out, _ := os.ReadFile(logPath)
			if int64(len(out)) > logStart {
				out = out[logStart:]
			}
			if strings.Contains(string(out), "Unable to bind") {
				return nil, fmt.Errorf("start ipmi_sim on 127.0.0.1:%d: %w (%s)", port, errBind, strings.TrimSpace(firstLine(string(out))))
			}
			return nil, fmt.Errorf("start ipmi_sim: it exited (%v); see %s", s.waitErr, logPath)
		case <-ctx.Done():
			s.Close()
			return nil, fmt.Errorf("start ipmi_sim: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Close()
			return nil, fmt.Errorf("start ipmi_sim: not listening on 127.0.0.1:%d after %s; see %s", port, cfg.StartTimeout, logPath)
		}
	}
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "Unable to bind") {
			return l
		}
	}
	return s
}

// proposeUDPPort returns a UDP port of 127.0.0.1 that was free a moment
// ago. Start detects when ipmi_sim then cannot have it.
func proposeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// ownsUDPPort reports whether process pid holds the IPv4 UDP socket bound
// to port: the socket's inode in /proc/net/udp is one of pid's open files.
func ownsUDPPort(pid, port int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/udp", pid))
	if err != nil {
		return false
	}
	want := fmt.Sprintf(":%04X", port)
	var inodes []string
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && strings.HasSuffix(f[1], want) {
			inodes = append(inodes, "socket:["+f[9]+"]")
		}
	}
	if len(inodes) == 0 {
		return false
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return false
	}
	for _, fd := range fds {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && slices.Contains(inodes, l) {
			return true
		}
	}
	return false
}

// Port returns the UDP port ipmi_sim listens on.
func (s *Sim) Port() int { return s.port }

// Addr returns 127.0.0.1:PORT.
func (s *Sim) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL returns the BMC URL in inventory form, ipmi://127.0.0.1:PORT.
func (s *Sim) URL() string { return "ipmi://" + s.Addr() }

// Power reports whether the built-in chassis is powered on.
func (s *Sim) Power() (bool, error) {
	v, err := s.read("power")
	return v == "1", err
}

// BootDevice returns the built-in chassis's boot device ("default" if none
// was set).
func (s *Sim) BootDevice() (string, error) {
	v, err := s.read("bootdev")
	if v == "" {
		v = "default"
	}
	return v, err
}

// Log returns every "set NAME VALUE" ipmi_sim sent the built-in chassis, in
// order.
func (s *Sim) Log() ([]string, error) {
	v, err := s.read("log")
	if v == "" {
		return nil, err
	}
	return strings.Split(v, "\n"), err
}

func (s *Sim) read(name string) (string, error) {
	if s.chassis == "" {
		return "", errors.New("ipmi_sim runs a custom chassis_control program; its state is not in files")
	}
	b, err := os.ReadFile(filepath.Join(s.chassis, name))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return strings.TrimSpace(string(b)), err
}

// Close kills the ipmi_sim this Sim started and waits for it.
func (s *Sim) Close() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	select {
	case <-s.exited:
		return nil
	default:
	}
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop ipmi_sim (pid %d): %w", s.cmd.Process.Pid, err)
	}
	<-s.exited
	return nil
}
