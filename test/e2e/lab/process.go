//go:build e2e

package lab

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Process is a program the lab started. Stop kills it by PID.
type Process struct {
	label string
	cmd   *exec.Cmd
	out   *os.File
	done  chan struct{}
	err   error // set before done is closed
}

func startProcess(label string, cmd *exec.Cmd, logPath string) (*Process, error) {
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", label, err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	// A process group of its own: a Ctrl-C at the terminal reaches the test
	// binary, which then stops this process deliberately.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s (%s): %w", label, cmd.Path, err)
	}
	p := &Process{label: label, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

// PID returns the process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns how the process exited; nil while it runs or after exit 0.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM, then SIGKILL after 3 s, and waits for the exit.
func (p *Process) Stop() {
	if !p.Running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(3 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}
