package devices

import (
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// isXilinx reports whether f is an Alveo function under XRT: an Alveo vendor
// with XRT's mgmt_pf or user_pf marker file, or a known Alveo device ID
// (Xilinx does not use the class code).
func isXilinx(f *pciFunc) bool {
	if !xilinxVendors[f.vendor] {
		return false
	}
	if exists(filepath.Join(f.dir, "mgmt_pf")) || exists(filepath.Join(f.dir, "user_pf")) {
		return true
	}
	_, ok := modelNames[vendorXilinx+":"+f.device]
	return ok
}

// xilinxRole returns "mgmt" or "user" for an Alveo function.
func xilinxRole(f *pciFunc) string {
	switch {
	case exists(filepath.Join(f.dir, "mgmt_pf")):
		return "mgmt"
	case exists(filepath.Join(f.dir, "user_pf")):
		return "user"
	case f.driver == "xclmgmt":
		return "mgmt"
	}
	// Without XRT's markers: Alveo user PFs have odd device IDs (5001,
	// 5005, 500d, 5021), mgmt PFs even ones.
	if v, err := strconv.ParseUint(strings.TrimPrefix(f.device, "0x"), 16, 16); err == nil && v%2 == 1 {
		return "user"
	}
	return "mgmt"
}

// discoverXilinx groups the Alveo functions by card (same bus and device
// number) and builds one FPGA per card, addressed by its user function (the
// one a workload opens), so a card is never counted twice.
func (n node) discoverXilinx(funcs []*pciFunc) []Device {
	type card struct{ mgmt, user *pciFunc }
	cards := map[string]*card{}
	var keys []string
	for _, f := range funcs {
		key := f.addr[:len(f.addr)-2] // DDDD:BB:DD
		c, ok := cards[key]
		if !ok {
			c = &card{}
			cards[key] = c
			keys = append(keys, key)
		}
		if xilinxRole(f) == "mgmt" {
			c.mgmt = f
		} else {
			c.user = f
		}
	}
	slices.Sort(keys)
	var out []Device
	for _, k := range keys {
		out = append(out, n.xilinxCard(cards[k].mgmt, cards[k].user))
	}
	return out
}

func (n node) xilinxCard(mgmt, user *pciFunc) Device {
	main := user
	if main == nil {
		main = mgmt
	}
	d := baseDevice(KindFPGA, main)
	d.ID = main.addr
	var problems []string
	if user == nil {
		problems = append(problems, "no user function")
	} else {
		render := globFirst(filepath.Join(user.dir, "drm", "renderD*"))
		if render == "" {
			problems = append(problems, "no render node")
		} else if p := "/dev/dri/" + filepath.Base(render); exists(n.dev(p)) {
			d.DeviceNodes = append(d.DeviceNodes, DeviceNode{Path: p, Permissions: "rw"})
		} else {
			problems = append(problems, p+" missing")
		}
	}
	if mgmt != nil {
		d.Attributes["mgmt_pf"] = mgmt.addr
		if inst, err := readAttr(filepath.Join(mgmt.dir, "instance")); err == nil {
			if p := "/dev/xclmgmt" + inst; exists(n.dev(p)) {
				d.DeviceNodes = append(d.DeviceNodes, DeviceNode{Path: p, Permissions: "rw"})
			}
		}
	}
	// XRT: the management function has rom.m.<N> (shell name VBNV) and
	// xmc.m.<N> (serial); the user function's own rom.u.<N> is the
	// fallback when the management function is not bound.
	if v := firstAttr(pfDirs(mgmt, user), []string{"rom.m.*", "rom.u.*"}, "VBNV"); v != "" {
		d.Attributes["shell"] = v
	}
	if v := firstAttr(pfDirs(mgmt, user), []string{"xmc.m.*", "xmc.u.*"}, "serial_num"); v != "" {
		d.Attributes["serial"] = v
	}
	// interface_uuids names the shell's interface, which bitstreams are
	// built against (what shells are matched on); logic_uuids names the
	// logic loaded now. Either PF has them; the management one is read
	// first.
	for _, f := range pfDirs(mgmt, user) {
		if _, ok := d.Attributes["interface_id"]; !ok {
			if s, err := readAttr(filepath.Join(f, "interface_uuids")); err == nil {
				id := strings.ToLower(strings.Fields(s)[0])
				d.Attributes["interface_id"] = id
				if isAllF(id) {
					problems = append(problems, "interface id "+id)
				}
			}
		}
		if _, ok := d.Attributes["logic_uuid"]; !ok {
			if s, err := readAttr(filepath.Join(f, "logic_uuids")); err == nil {
				d.Attributes["logic_uuid"] = strings.ToLower(strings.Fields(s)[0])
			}
		}
	}
	if user != nil {
		d.Attributes["user_pf"] = user.addr
	}
	setHealth(&d, problems)
	return d
}

// pfDirs are the directories of an Alveo card's functions, management
// first; a missing function is left out.
func pfDirs(mgmt, user *pciFunc) []string {
	var out []string
	for _, f := range []*pciFunc{mgmt, user} {
		if f != nil {
			out = append(out, f.dir)
		}
	}
	return out
}

// firstAttr reads attr in the first directory matching one of patterns
// under the first of dirs that has one, and returns "" when none does.
func firstAttr(dirs, patterns []string, attr string) string {
	for _, dir := range dirs {
		for _, p := range patterns {
			if f := globFirst(filepath.Join(dir, p, attr)); f != "" {
				if s, err := readAttr(f); err == nil {
					return s
				}
			}
		}
	}
	return ""
}

// globFirst returns the first match of pattern in sorted order, or "".
func globFirst(pattern string) string {
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		return ""
	}
	slices.Sort(m)
	return m[0]
}

// intelFPGA builds an Intel FPGA from its DFL tree (fpga_region/region*/
// dfl-port.*) or its legacy OPAE tree (fpga/intel-fpga-dev.*/intel-fpga-
// port.*).
func (n node) intelFPGA(f *pciFunc) Device {
	d := baseDevice(KindFPGA, f)
	d.ID = f.addr
	var problems []string
	var port, afu, iface string
	if p := globFirst(filepath.Join(f.dir, "fpga_region", "region*", "dfl-port.*")); p != "" {
		d.Attributes["driver_api"] = "dfl"
		port = p
		afu = filepath.Join(p, "afu_id")
		iface = globFirst(filepath.Join(filepath.Dir(p), "dfl-fme.*", "dfl-fme-region.*", "fpga_region", "region*", "compat_id"))
		if b := globFirst(filepath.Join(filepath.Dir(p), "dfl-fme.*", "bitstream_id")); b != "" {
			if s, err := readAttr(b); err == nil {
				d.Attributes["bitstream_id"] = s
			}
		}
	} else if p := globFirst(filepath.Join(f.dir, "fpga", "intel-fpga-dev.*", "intel-fpga-port.*")); p != "" {
		d.Attributes["driver_api"] = "opae"
		port = p
		afu = filepath.Join(p, "afu_id")
		iface = globFirst(filepath.Join(filepath.Dir(p), "intel-fpga-fme.*", "pr", "interface_id"))
		if b := globFirst(filepath.Join(filepath.Dir(p), "intel-fpga-fme.*", "bitstream_id")); b != "" {
			if s, err := readAttr(b); err == nil {
				d.Attributes["bitstream_id"] = s
			}
		}
	}
	if port == "" {
		setHealth(&d, []string{"no fpga port (dfl-pci or intel-fpga-pci not bound)"})
		return d
	}
	if p := "/dev/" + filepath.Base(port); exists(n.dev(p)) {
		d.DeviceNodes = append(d.DeviceNodes, DeviceNode{Path: p, Permissions: "rw"})
	} else {
		problems = append(problems, p+" missing")
	}
	problems = append(problems, fpgaIDProblems(&d, afu, iface)...)
	setHealth(&d, problems)
	return d
}

// fpgaIDProblems records the AFU and interface IDs found at the given paths
// and says which are all f (no valid bitstream).
func fpgaIDProblems(d *Device, afuPath, ifacePath string) []string {
	var problems []string
	for _, x := range []struct{ attr, path string }{{"afu_id", afuPath}, {"interface_id", ifacePath}} {
		if x.path == "" {
			continue
		}
		s, err := readAttr(x.path)
		if err != nil {
			continue
		}
		d.Attributes[x.attr] = s
		if isAllF(s) {
			problems = append(problems, x.attr+" all f")
		}
	}
	return problems
}

// fpgaProblems re-reads the IDs of an FPGA for the monitor.
func (n node) fpgaProblems(d Device) []string {
	// Discovery already logged what is odd about this card; polling every
	// second must not repeat it.
	n = node{root: n.root, log: slog.New(slog.DiscardHandler)}
	f, err := n.readPCI(d.PCIAddress)
	if err != nil {
		return []string{"pci device gone"}
	}
	var fresh Device
	if isXilinx(f) {
		var mgmt *pciFunc
		if m := d.Attributes["mgmt_pf"]; m != "" && m != f.addr {
			if mf, err := n.readPCI(m); err == nil {
				mgmt = mf
			}
		} else if m == f.addr {
			mgmt = f
		}
		user := f
		if mgmt == f {
			user = nil
		}
		fresh = n.xilinxCard(mgmt, user)
	} else {
		fresh = n.intelFPGA(f)
	}
	if fresh.Healthy {
		return nil
	}
	return []string{fresh.HealthReason}
}
