package devices

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// pciFunc is one PCI function read from sysfs.
type pciFunc struct {
	addr      string // DDDD:BB:DD.F, lower case
	dir       string // resolved directory under sys/devices
	vendor    string // "0x10de"
	device    string
	class     string // "0x030200"
	subVendor string
	subDevice string
	driver    string
	numa      int
	root      string   // "pci0000:15"
	bridges   []string // upstream bridges, root first
}

// node is the view of one host root that discovery and the monitor read.
type node struct {
	root string
	log  *slog.Logger
}

func (n node) sys(p ...string) string {
	return filepath.Join(append([]string{n.root, "sys"}, p...)...)
}

func (n node) proc(p ...string) string {
	return filepath.Join(append([]string{n.root, "proc"}, p...)...)
}

// dev returns the host path of the device node at container path p
// ("/dev/nvidia0").
func (n node) dev(p string) string {
	return filepath.Join(n.root, p)
}

// pciDevicesDir is the PCI device list, relative to sys.
const pciDevicesDir = "bus/pci/devices"

// scanPCI reads the PCI functions in ROOT/sys/bus/pci/devices whose vendor
// makes GPUs, HCAs or FPGAs (others, such as the many bridges, are read no
// further). A function whose identity (vendor, device, class) cannot be
// read is skipped and logged; reading the list itself failing is the only
// error.
func (n node) scanPCI() (map[string]*pciFunc, error) {
	dir := n.sys(pciDevicesDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list pci devices in %s: %w", dir, err)
	}
	funcs := make(map[string]*pciFunc, len(ents))
	for _, e := range ents {
		name := e.Name()
		if !isBDF(name) {
			n.log.Debug("pci entry skipped: not a pci address", "path", filepath.Join(dir, name))
			continue
		}
		vendor, err := readHexID(filepath.Join(dir, name, "vendor"))
		if err != nil {
			n.log.Warn("pci device skipped", "pci_addr", name, "err", err)
			continue
		}
		if !interestingVendor(vendor) {
			continue
		}
		f, err := n.readPCI(name)
		if err != nil {
			n.log.Warn("pci device skipped", "pci_addr", name, "err", err)
			continue
		}
		funcs[f.addr] = f
	}
	return funcs, nil
}

// interestingVendor reports whether vendor makes devices this package
// discovers by PCI scan (RDMA devices are found through their class and
// read on demand, whatever their vendor).
func interestingVendor(v string) bool {
	switch v {
	case vendorNVIDIA, vendorMellanox, vendorIntel, vendorSilicom:
		return true
	}
	return xilinxVendors[v]
}

// readPCI reads the PCI function addr.
func (n node) readPCI(addr string) (*pciFunc, error) {
	link := n.sys(pciDevicesDir, addr)
	dir, err := resolveLink(link)
	if err != nil {
		return nil, err
	}
	f := &pciFunc{addr: strings.ToLower(addr), dir: dir}
	if f.vendor, err = readHexID(filepath.Join(dir, "vendor")); err != nil {
		return nil, err
	}
	if f.device, err = readHexID(filepath.Join(dir, "device")); err != nil {
		return nil, err
	}
	if f.class, err = readHexID(filepath.Join(dir, "class")); err != nil {
		return nil, err
	}
	// The rest is optional: a device without them is still usable.
	f.subVendor, _ = readHexID(filepath.Join(dir, "subsystem_vendor"))
	f.subDevice, _ = readHexID(filepath.Join(dir, "subsystem_device"))
	f.driver, _ = linkBase(filepath.Join(dir, "driver"))
	f.numa, err = readNUMA(filepath.Join(dir, "numa_node"))
	if err != nil {
		n.log.Warn("numa node unknown", "pci_addr", addr, "err", err)
	}
	f.root, f.bridges = pcieChain(dir, f.addr)
	return f, nil
}

// pcieChain splits a resolved device path ".../devices/pci0000:15/0000:15:01.0/
// 0000:16:00.0/0000:18:00.0" into its PCIe root ("pci0000:15") and the
// bridges between the root and the device, root side first.
func pcieChain(dir, addr string) (string, []string) {
	parts := strings.Split(filepath.ToSlash(dir), "/")
	for i, p := range parts {
		if !strings.HasPrefix(p, "pci") || !isRootName(p) {
			continue
		}
		var bridges []string
		for _, q := range parts[i+1:] {
			q = strings.ToLower(q)
			if !isBDF(q) || q == addr {
				break
			}
			bridges = append(bridges, q)
		}
		return p, bridges
	}
	return "", nil
}

// isRootName reports whether s looks like "pciDDDD:BB".
func isRootName(s string) bool {
	return len(s) == 10 && s[7] == ':' && isBDF(s[3:]+":00.0")
}

// classOf returns the class code's first four hex digits ("0302").
func (f *pciFunc) classBase() string {
	c := strings.TrimPrefix(f.class, "0x")
	if len(c) < 4 {
		return c
	}
	return c[:4]
}
