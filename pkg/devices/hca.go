package devices

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// rdmaCharClasses are the sysfs classes whose entries are an HCA's character
// devices, each with an ibdev file naming the HCA; the device node is
// /dev/infiniband/<entry>.
var rdmaCharClasses = []string{"infiniband_verbs", "infiniband_mad", "infiniband_cm"}

// rdmaCharDevs maps HCA name to the names of its character devices.
func (n node) rdmaCharDevs() map[string][]string {
	out := map[string][]string{}
	for _, class := range rdmaCharClasses {
		dir := n.sys("class", class)
		ents, err := os.ReadDir(dir)
		if err != nil {
			if !os.IsNotExist(err) {
				n.log.Warn("rdma char devices unreadable", "path", dir, "err", err)
			}
			continue
		}
		for _, e := range ents {
			// Besides the device links the class holds files such as
			// abi_version on every host: not devices, nothing to report.
			if e.Type().IsRegular() {
				continue
			}
			ib, err := readAttr(filepath.Join(dir, e.Name(), "ibdev"))
			if err != nil {
				n.log.Warn("rdma char device skipped", "path", filepath.Join(dir, e.Name()), "err", err)
				continue
			}
			out[ib] = append(out[ib], e.Name())
		}
	}
	return out
}

// defaultRouteIfaces returns the interfaces that carry a default route
// (ROOT/proc/net/route). An HCA whose interface carries it, or is enslaved
// to a bond or bridge, is the host's own NIC (storage, management), not a
// device for pods.
func (n node) defaultRouteIfaces() map[string]bool {
	out := map[string]bool{}
	// The default routes come first in practice; 64 KiB is plenty.
	buf := make([]byte, 64<<10)
	nr, err := readSmall(n.proc("net", "route"), buf)
	if err != nil {
		return out
	}
	for line := range strings.Lines(string(buf[:nr])) {
		fs := strings.Fields(line)
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		if len(fs) >= 8 && fs[1] == "00000000" && fs[7] == "00000000" {
			out[fs[0]] = true
		}
	}
	return out
}

// hcaEnv is what HCA discovery reads once per run.
type hcaEnv struct {
	chars        map[string][]string
	defaultRoute map[string]bool
	includeHost  bool
}

// discoverHCAs lists ROOT/sys/class/infiniband and builds one device per
// RDMA device whose PCI function is known.
func (n node) discoverHCAs(funcs map[string]*pciFunc, includeHost bool) []Device {
	dir := n.sys("class", "infiniband")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if !os.IsNotExist(err) {
			n.log.Warn("infiniband devices unreadable", "path", dir, "err", err)
		}
		return nil
	}
	env := hcaEnv{chars: n.rdmaCharDevs(), defaultRoute: n.defaultRouteIfaces(), includeHost: includeHost}
	var out []Device
	for _, e := range ents {
		d, ok := n.readHCA(e.Name(), funcs, env)
		if ok {
			out = append(out, d)
		}
	}
	return out
}

// readHCA builds the HCA named ibdev, or reports false with a logged reason.
func (n node) readHCA(ibdev string, funcs map[string]*pciFunc, env hcaEnv) (Device, bool) {
	link := n.sys("class", "infiniband", ibdev)
	ibdir, err := resolveLink(link)
	if err != nil {
		n.log.Warn("hca skipped", "device_id", ibdev, "err", err)
		return Device{}, false
	}
	// .../<bdf>/infiniband/<ibdev>
	addr := strings.ToLower(filepath.Base(filepath.Dir(filepath.Dir(ibdir))))
	f, ok := funcs[addr]
	if !ok {
		// Another vendor's RDMA device (bnxt_re, irdma, ...), not
		// read by the scan.
		var err error
		if f, err = n.readPCI(addr); err != nil {
			n.log.Warn("hca skipped: pci function unreadable", "device_id", ibdev, "pci_addr", addr, "err", err)
			return Device{}, false
		}
	}
	ports := n.readPorts(ibdir, ibdev)
	// Only an Ethernet (RoCE) device can be the host's own NIC: an
	// InfiniBand HCA carrying the host's IPoIB address is still shared
	// with pods through verbs.
	ib := slices.ContainsFunc(ports, func(p Port) bool { return p.LinkLayer == LinkLayerInfiniBand })
	if !ib && !env.includeHost {
		if host, ifname := n.isHostNIC(f, env.defaultRoute); host {
			n.log.Info("hca skipped: host network interface", "device_id", ibdev, "pci_addr", addr, "netdev", ifname)
			return Device{}, false
		}
	}
	d := baseDevice(KindHCA, f)
	d.ID = ibdev
	d.Attributes["ibdev"] = ibdev
	for _, a := range []string{"node_guid", "sys_image_guid", "fw_ver", "board_id", "hca_type"} {
		if v, err := readAttr(filepath.Join(ibdir, a)); err == nil {
			d.Attributes[a] = v
		} else {
			n.log.Debug("hca attribute unreadable", "device_id", ibdev, "attr", a, "err", err)
		}
	}
	d.Ports = ports
	if nds := netDevs(f.dir); len(nds) > 0 {
		d.Attributes["netdevs"] = strings.Join(nds, ",")
	}

	var problems []string
	chars := slices.Clone(env.chars[ibdev])
	slices.Sort(chars)
	hasVerbs := false
	for _, c := range chars {
		p := "/dev/infiniband/" + c
		if !exists(n.dev(p)) {
			n.log.Debug("hca device node missing", "device_id", ibdev, "path", p)
			continue
		}
		if strings.HasPrefix(c, "uverbs") {
			hasVerbs = true
		}
		d.DeviceNodes = append(d.DeviceNodes, DeviceNode{Path: p, Permissions: "rw"})
	}
	if !hasVerbs {
		problems = append(problems, "no uverbs device")
	}
	if p := "/dev/infiniband/rdma_cm"; exists(n.dev(p)) {
		d.DeviceNodes = append(d.DeviceNodes, DeviceNode{Path: p, Permissions: "rw"})
	}
	// A card with one port cabled is common: it is usable while any port
	// is up. Down ports are listed so that a person sees them.
	if down := portProblems(d.Ports); len(down) > 0 {
		var nums []string
		for _, p := range d.Ports {
			if !p.usable() {
				nums = append(nums, strconv.Itoa(p.Number))
			}
		}
		d.Attributes["ports_down"] = strings.Join(nums, ",")
		if len(down) == len(d.Ports) {
			problems = append(problems, down...)
		}
	}
	if len(d.Ports) == 0 {
		problems = append(problems, "no ports")
	}
	setHealth(&d, problems)
	return d, true
}

// usable reports whether the port is up: state ACTIVE, physical state
// LinkUp.
func (p Port) usable() bool { return p.State == "ACTIVE" && p.PhysState == "LinkUp" }

// portProblems says which ports are not usable.
func portProblems(ports []Port) []string {
	var out []string
	for _, p := range ports {
		if !p.usable() {
			out = append(out, fmt.Sprintf("port %d %s (%s)", p.Number, orUnknown(p.State), orUnknown(p.PhysState)))
		}
	}
	return out
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// readPorts reads ibdir/ports/<n>/, in port number order.
func (n node) readPorts(ibdir, ibdev string) []Port {
	dir := filepath.Join(ibdir, "ports")
	ents, err := os.ReadDir(dir)
	if err != nil {
		n.log.Warn("hca ports unreadable", "device_id", ibdev, "err", err)
		return nil
	}
	var ports []Port
	for _, e := range ents {
		num, err := strconv.Atoi(e.Name())
		if err != nil || num < 1 {
			continue
		}
		ports = append(ports, readPort(filepath.Join(dir, e.Name()), num))
	}
	slices.SortFunc(ports, func(a, b Port) int { return a.Number - b.Number })
	return ports
}

// readPort reads one port; unreadable attributes stay empty.
func readPort(dir string, num int) Port {
	p := Port{Number: num}
	p.State = stateName(dir, "state")
	p.PhysState = stateName(dir, "phys_state")
	p.LinkLayer, _ = readAttr(filepath.Join(dir, "link_layer"))
	p.Rate, _ = readAttr(filepath.Join(dir, "rate"))
	p.NetDev, _ = readAttr(filepath.Join(dir, "gid_attrs", "ndevs", "0"))
	return p
}

// stateName reads "4: ACTIVE" and returns "ACTIVE".
func stateName(dir, attr string) string {
	s, err := readAttr(filepath.Join(dir, attr))
	if err != nil {
		return ""
	}
	if _, name, ok := strings.Cut(s, ":"); ok {
		return strings.TrimSpace(name)
	}
	return s
}

// netDevs lists the network interfaces of a PCI function, sorted.
func netDevs(pcidir string) []string {
	ents, err := os.ReadDir(filepath.Join(pcidir, "net"))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// isHostNIC reports whether one of f's network interfaces carries the
// default route or is enslaved to a bond or bridge, and which.
func (n node) isHostNIC(f *pciFunc, defaultRoute map[string]bool) (bool, string) {
	for _, nd := range netDevs(f.dir) {
		if defaultRoute[nd] {
			return true, nd
		}
		if master, err := linkBase(filepath.Join(f.dir, "net", nd, "master")); err == nil {
			return true, nd + " in " + master
		}
	}
	return false, ""
}
