package devices

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// maxAttrSize bounds a sysfs attribute read. The attributes read here are
// short (IDs, states, GUIDs, UUIDs); a longer file is an error rather than
// a silently truncated value.
const maxAttrSize = 512

// readAttr reads a sysfs attribute file and trims surrounding white space.
// An empty file is an error: sysfs never has a meaningful empty value for
// the attributes read here.
func readAttr(path string) (string, error) {
	var buf [maxAttrSize]byte
	n, err := readSmall(path, buf[:])
	if err != nil {
		return "", err
	}
	if n == len(buf) {
		return "", fmt.Errorf("read %s: longer than %d bytes", path, maxAttrSize)
	}
	s := strings.TrimSpace(string(buf[:n]))
	if s == "" {
		return "", fmt.Errorf("read %s: empty", path)
	}
	return s, nil
}

// readHexID reads a PCI ID attribute ("0x10de") and returns it in lower case
// with its 0x prefix; it rejects values that are not hexadecimal.
func readHexID(path string) (string, error) {
	s, err := readAttr(path)
	if err != nil {
		return "", err
	}
	s = strings.ToLower(s)
	digits, ok := strings.CutPrefix(s, "0x")
	if !ok || digits == "" {
		return "", fmt.Errorf("parse %s: %q is not a hex id", path, s)
	}
	if _, err := strconv.ParseUint(digits, 16, 32); err != nil {
		return "", fmt.Errorf("parse %s: %q is not a hex id", path, s)
	}
	return s, nil
}

// readNUMA reads a numa_node attribute. -1, a missing file and garbage all
// give NoNUMA; garbage and unreadable files also give an error to log.
func readNUMA(path string) (int, error) {
	s, err := readAttr(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return NoNUMA, nil
		}
		return NoNUMA, err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < -1 {
		return NoNUMA, fmt.Errorf("parse %s: %q is not a numa node", path, s)
	}
	if n < 0 {
		return NoNUMA, nil
	}
	return n, nil
}

// linkBase returns the last element of a symlink's target (a driver name).
func linkBase(path string) (string, error) {
	t, err := os.Readlink(path)
	if err != nil {
		return "", err
	}
	return filepath.Base(t), nil
}

// exists reports whether path exists (following symlinks).
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// isBDF reports whether s is a PCI address, DDDD:BB:DD.F in hex.
func isBDF(s string) bool {
	if len(s) != 12 || s[4] != ':' || s[7] != ':' || s[10] != '.' {
		return false
	}
	for i, c := range []byte(s) {
		if i == 4 || i == 7 || i == 10 {
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return s[11] <= '7'
}

// isAllF reports whether an FPGA AFU or interface ID is all f: the kernel's
// way of saying no valid bitstream is loaded.
func isAllF(id string) bool {
	id = strings.TrimPrefix(strings.ToLower(id), "0x")
	if id == "" {
		return false
	}
	for _, c := range id {
		if c != 'f' && c != '-' {
			return false
		}
	}
	return true
}

// resolveLink resolves a sysfs class or bus link ("bus/pci/devices/<bdf>"
// -> "../../../devices/pci0000:15/...") with one readlink instead of
// walking every component: the kernel's links are relative and their
// parents are real directories. A path that is not a link is returned as
// is. The target must exist: a dangling link or a loop is an error.
func resolveLink(path string) (string, error) {
	target, err := os.Readlink(path)
	var dir string
	switch {
	case err == nil && filepath.IsAbs(target):
		dir = target
	case err == nil:
		dir = filepath.Join(filepath.Dir(path), target)
	default:
		dir = path
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", path, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("resolve %s: %s is not a directory", path, dir)
	}
	return dir, nil
}
