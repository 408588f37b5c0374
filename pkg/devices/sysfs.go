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

// maxAttrSize bounds a sysfs attribute read: real attributes are one page at
// most, and a fixture or a broken driver must not make us read a huge file.
const maxAttrSize = 4096

// readAttr reads a sysfs attribute file and trims surrounding white space.
// An empty file is an error: sysfs never has a meaningful empty value for
// the attributes read here.
func readAttr(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, maxAttrSize)
	n, err := f.Read(buf)
	if err != nil && n == 0 {
		return "", fmt.Errorf("read %s: %w", path, err)
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
