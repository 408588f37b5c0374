package provision

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// LockFile is the lock's file name inside the state directory.
const LockFile = "provision.lock"

// Holder describes who holds a state directory.
type Holder struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Command string    `json:"command"`
	Since   time.Time `json:"since"`
}

func (h Holder) String() string {
	return fmt.Sprintf("%q (pid %d on %s, since %s)", h.Command, h.PID, h.Host, h.Since.Format(time.RFC3339))
}

// ErrLocked is returned (wrapped, with the holder) when another process
// holds the state directory.
var ErrLocked = errors.New("state directory is in use")

// Lock is an exclusive hold on a state directory. The kernel drops it when
// the process dies, so a crash never leaves a stale lock.
type Lock struct {
	f *os.File
}

// LockStateDir takes the state directory for command (such as
// "provisioner up"), creating it if needed. When another process holds it,
// the error wraps ErrLocked and names the holder.
func LockStateDir(dir, command string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock state directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock state directory %s: %w", dir, err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	// A status check (Held) takes a shared lock for an instant: try again
	// briefly before calling the directory taken.
	for i := 0; i < 10 && errors.Is(err, syscall.EWOULDBLOCK); i++ {
		time.Sleep(20 * time.Millisecond)
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := os.ReadFile(path)
			var h Holder
			who := "another process"
			if json.Unmarshal(b, &h) == nil && h.PID != 0 {
				who = h.String()
			}
			return nil, fmt.Errorf("lock state directory %s: %w by %s; wait for it to finish or stop it, or use another --state-dir", dir, ErrLocked, who)
		}
		return nil, fmt.Errorf("lock state directory %s: %w", dir, err)
	}
	host, _ := os.Hostname()
	h := Holder{PID: os.Getpid(), Host: host, Command: strings.TrimSpace(command), Since: time.Now().UTC().Truncate(time.Second)}
	b, _ := json.Marshal(h)
	if err := f.Truncate(0); err == nil {
		f.WriteAt(append(b, '\n'), 0)
	}
	return &Lock{f: f}, nil
}

// Held reports whether a process holds dir's lock, and who, without taking
// it for longer than a check: status uses it to tell a live run from a
// journal left by a run that ended or crashed (the kernel drops a dead
// process's lock). A state directory without a lock file is not held.
func Held(dir string) (Holder, bool, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return Holder{}, false, nil
	}
	if err != nil {
		return Holder{}, false, fmt.Errorf("check lock %s: %w", path, err)
	}
	defer f.Close()
	// A shared lock is refused only while an exclusive one (a run) holds it.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return Holder{}, false, fmt.Errorf("check lock %s: %w", path, err)
		}
		var h Holder
		b, _ := os.ReadFile(path)
		if json.Unmarshal(b, &h) != nil || h.PID == 0 {
			h = Holder{Command: "another process"}
		}
		return h, true, nil
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return Holder{}, false, nil
}

// Unlock releases the state directory.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	l.f.Truncate(0)
	err := l.f.Close() // closing drops the flock
	l.f = nil
	return err
}
