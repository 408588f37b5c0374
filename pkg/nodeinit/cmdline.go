package nodeinit

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Kernel command line parameters the node image reads.
const (
	// ParamNode is the node's name (slipway.node=NAME).
	ParamNode = "slipway.node"
	// ParamConfig is the one-time configuration URL (slipway.config=URL).
	ParamConfig = "slipway.config"
	// ParamImages is the image bundle's index (slipway.images=URL), an
	// absolute http(s) URL or a path under the boot server's /assets/.
	ParamImages = "slipway.images"
	// ParamPhoneHome is the boot server's base URL (phonehome=URL).
	ParamPhoneHome = "phonehome"
)

// Cmdline is a parsed kernel command line: the last value of each
// parameter; a parameter without "=" has the value "".
type Cmdline map[string]string

// ParseCmdline splits a kernel command line on whitespace. Quoting is not
// needed for Slipway's parameters (URLs carry no spaces).
func ParseCmdline(s string) Cmdline {
	c := Cmdline{}
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		c[k] = v
	}
	return c
}

// ReadCmdline reads procRoot/cmdline (procRoot is /proc on a node).
func ReadCmdline(procRoot string) (Cmdline, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, "cmdline"))
	if err != nil {
		return nil, fmt.Errorf("read kernel command line: %w", err)
	}
	return ParseCmdline(string(b)), nil
}

// AssetURL resolves a value that is either an absolute http(s) URL or a
// path in the boot server's asset directory (served under
// PHONEHOME/assets/), the way boot.kernel and boot.initrd are written in
// the inventory.
func (c Cmdline) AssetURL(param string) (string, error) {
	v := c[param]
	if v == "" {
		return "", fmt.Errorf("kernel command line has no %s=", param)
	}
	if strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://") {
		return v, nil
	}
	base := c[ParamPhoneHome]
	if base == "" {
		return "", fmt.Errorf("%s=%s is a path, and the kernel command line has no %s= to resolve it against", param, v, ParamPhoneHome)
	}
	u, err := url.Parse(strings.TrimRight(base, "/") + "/assets/")
	if err != nil {
		return "", fmt.Errorf("%s=%s: %w", ParamPhoneHome, base, err)
	}
	ref, err := url.Parse(strings.TrimLeft(v, "/"))
	if err != nil {
		return "", fmt.Errorf("%s=%s: %w", param, v, err)
	}
	return u.ResolveReference(ref).String(), nil
}
