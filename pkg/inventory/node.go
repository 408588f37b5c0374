package inventory

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// rangeRE matches a node range name such as gpu[01-16] or r1-n[1-40]-a.
var rangeRE = regexp.MustCompile(`^([^\[\]]*)\[(\d+)-(\d+)\]([^\[\]]*)$`)

// MaxRange is the largest number of nodes one range entry may expand to.
const MaxRange = 10000

// expandName returns the node names an entry's name stands for. A name
// with [A-B] expands to one name per index, zero-padded to A's width when
// A has a leading zero; the index strings are returned too.
func expandName(name string) (names, indexes []string, isRange bool, err error) {
	if !strings.ContainsAny(name, "[]") {
		return []string{name}, []string{""}, false, nil
	}
	m := rangeRE.FindStringSubmatch(name)
	if m == nil {
		return nil, nil, true, fmt.Errorf("%q is not a valid range: write prefix[FIRST-LAST]suffix, for example gpu[01-16]", name)
	}
	lo, err1 := strconv.Atoi(m[2])
	hi, err2 := strconv.Atoi(m[3])
	if err1 != nil || err2 != nil || lo > hi {
		return nil, nil, true, fmt.Errorf("range %q counts down or is not numeric: the first index must not exceed the last", name)
	}
	if hi-lo+1 > MaxRange {
		return nil, nil, true, fmt.Errorf("range %q has %d nodes, more than %d", name, hi-lo+1, MaxRange)
	}
	width := 0
	if len(m[2]) > 1 && m[2][0] == '0' {
		width = len(m[2])
	}
	for i := lo; i <= hi; i++ {
		idx := fmt.Sprintf("%0*d", width, i)
		names = append(names, m[1]+idx+m[4])
		indexes = append(indexes, idx)
	}
	return names, indexes, true, nil
}

// addAddr returns a + k, or false when that leaves the address family.
func addAddr(a netip.Addr, k int) (netip.Addr, bool) {
	if k == 0 {
		return a, true
	}
	if a.Is4() {
		b := a.As4()
		v := uint64(binary.BigEndian.Uint32(b[:])) + uint64(k)
		if v > 0xffffffff {
			return netip.Addr{}, false
		}
		binary.BigEndian.PutUint32(b[:], uint32(v))
		return netip.AddrFrom4(b), true
	}
	for range k {
		a = a.Next()
		if !a.IsValid() {
			return a, false
		}
	}
	return a, true
}

// addMAC returns m + k as a 48-bit number.
func addMAC(m net.HardwareAddr, k int) (net.HardwareAddr, bool) {
	if len(m) != 6 {
		return nil, false
	}
	var b [8]byte
	copy(b[2:], m)
	v := binary.BigEndian.Uint64(b[:]) + uint64(k)
	if v >= 1<<48 {
		return nil, false
	}
	binary.BigEndian.PutUint64(b[:], v)
	return net.HardwareAddr(append([]byte(nil), b[2:]...)), true
}

func parseMAC(s string) (net.HardwareAddr, error) {
	m, err := net.ParseMAC(s)
	if err != nil || len(m) != 6 {
		return nil, fmt.Errorf("%q is not a MAC address (want six hex pairs, for example 52:54:00:12:34:56)", s)
	}
	return m, nil
}

// bmcURL parses a BMC URL into b's protocol, scheme, host and port.
func parseBMCURL(s string, b *BMC) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not a BMC URL: write redfish://HOST[:PORT] (HTTPS), redfish+http://HOST[:PORT] or ipmi://HOST[:PORT]", s)
	}
	if u.User != nil {
		return fmt.Errorf("%q carries credentials in the URL: remove them and use bmc.username and bmc.password: env:NAME", redactURL(u))
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q has a path or query: give only scheme://host[:port]", s)
	}
	var defPort uint16
	switch u.Scheme {
	case "redfish", "redfish+https":
		b.Protocol, b.Scheme, defPort = ProtocolRedfish, "https", 443
	case "redfish+http":
		b.Protocol, b.Scheme, defPort = ProtocolRedfish, "http", 80
	case "ipmi":
		b.Protocol, b.Scheme, defPort = ProtocolIPMI, "", 623
	default:
		return fmt.Errorf("unknown BMC scheme %q in %q: want redfish://, redfish+http:// or ipmi://", u.Scheme, s)
	}
	b.Host = u.Hostname()
	b.Port = defPort
	if ps := u.Port(); ps != "" {
		p, err := strconv.Atoi(ps)
		if err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("%q has an invalid port", s)
		}
		b.Port = uint16(p)
	}
	if _, err := netip.ParseAddr(b.Host); err != nil && !isDNSName(b.Host) {
		return fmt.Errorf("%q: host %q is neither an IP address nor a DNS name", s, b.Host)
	}
	b.URL = s
	return nil
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// withBMCHost returns the URL with its host replaced.
func withBMCHost(s string, host netip.Addr) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	if p := u.Port(); p != "" {
		u.Host = net.JoinHostPort(host.String(), p)
	} else if host.Is6() {
		u.Host = "[" + host.String() + "]"
	} else {
		u.Host = host.String()
	}
	return u.String()
}

// node resolves one node entry (a single node or a range) into nodes.
func (r *resolver) node(d *doc, path string, rn rawNode) []Node {
	names, indexes, isRange, err := expandName(rn.Name)
	if rn.Name == "" {
		r.errorf(d, path, "node has no name")
		return nil
	}
	if err != nil {
		r.errorf(d, path+".name", "%v", err)
		return nil
	}
	for _, n := range names {
		if !isDNSLabel(n) {
			r.errorf(d, path+".name", "node name %q is not a valid hostname: use lowercase letters, digits and '-', at most 63 characters", n)
			return nil
		}
	}
	label := rn.Name // how messages name this entry

	// Start from the profile, then apply the node's own settings.
	base := Node{Profile: rn.Profile, Serial: rn.Serial, Source: d.at(path)}
	base.Boot.Firmware = FirmwareUEFI
	var prof Profile
	profileOK := false // settings a profile supplies are only checked when it resolved
	passwordGiven := rn.BMC != nil && rn.BMC.Password != ""
	if rn.Profile == "" {
		r.errorf(d, path, "node %s has no profile: set profile: to one of %s", label, r.profileNames())
	} else if def, ok := r.profiles[rn.Profile]; !ok {
		msg := fmt.Sprintf("node %s: unknown profile %q", label, rn.Profile)
		if s := closest(rn.Profile, r.profileNameList()); s != "" {
			msg += fmt.Sprintf(", did you mean %q?", s)
		} else {
			msg += "; defined profiles: " + r.profileNames()
		}
		r.errorf(d, path+".profile", "%s", msg)
	} else {
		prof = r.inv.Profiles[rn.Profile]
		profileOK = true
		passwordGiven = passwordGiven || def.raw.BMC != nil && def.raw.BMC.Password != ""
	}
	base.Role = prof.Role
	if prof.Boot.Firmware != "" {
		base.Boot.Firmware = prof.Boot.Firmware
	}
	base.Boot.Kernel, base.Boot.Initrd, base.Boot.KernelArgs, base.Boot.Method = prof.Boot.Kernel, prof.Boot.Initrd, prof.Boot.KernelArgs, prof.Boot.Method
	base.Boot.ConfigFormat = prof.Boot.ConfigFormat
	base.Labels = maps.Clone(prof.Labels)
	base.Taints = append([]Taint(nil), prof.Taints...)
	base.BMC = prof.BMC
	switch Role(rn.Role) {
	case "":
	case RoleControlPlane, RoleWorker:
		base.Role = Role(rn.Role)
	default:
		r.errorf(d, path+".role", "unknown role %q: want control-plane or worker", rn.Role)
	}
	r.boot(d, path+".boot", rn.Boot, &base.Boot)
	if len(rn.Labels) > 0 {
		if base.Labels == nil {
			base.Labels = map[string]string{}
		}
		r.labels(d, path+".labels", rn.Labels, base.Labels)
	}
	for _, t := range r.taints(d, path+".taints", rn.Taints) {
		if !containsTaint(base.Taints, t) {
			base.Taints = append(base.Taints, t)
		}
	}
	r.bmcDefaults(d, path+".bmc", rn.BMC, &base.BMC)
	if rn.Disabled != nil {
		base.Disabled = *rn.Disabled
	}
	if base.Role == "" && profileOK {
		r.errorf(d, path, "node %s has no role: set role: control-plane or worker on the node or in profile %q", label, rn.Profile)
	}
	if rn.Slot != nil {
		if *rn.Slot < 0 {
			r.errorf(d, path+".slot", "slot %d is negative", *rn.Slot)
		}
		base.Slot = *rn.Slot
	}

	// Text that may carry {index}: checked for typos, and {index} only in
	// a range.
	for _, f := range []struct{ path, value string }{{path + ".serial", rn.Serial}, {path + ".rack", rn.Rack}} {
		if err := checkPlaceholders(f.value); err != nil {
			r.errorf(d, f.path, "%v", err)
		}
	}

	// Topology: the profile's levels, the node's on top, then rack.
	topo := mergeTopology(prof.Topology, r.topology(d, path+".topology", rn.Topology))
	if rn.Rack != "" {
		if _, both := rn.Topology.get("rack"); both {
			r.errorf(d, path+".rack", "node %s gives its rack twice, as rack: and as topology.rack: keep one", label)
		} else if checkPlaceholders(rn.Rack) != nil {
			// reported above
		} else if !labelValueRE.MatchString(strings.ReplaceAll(rn.Rack, indexPlaceholder, "0")) {
			r.errorf(d, path+".rack", "rack %q is not a valid Kubernetes label value (at most 63 letters, digits, '-', '_', '.'): it becomes the node label %srack", rn.Rack, TopologyLabelPrefix)
		} else {
			topo = mergeTopology(topo, []TopologyLevel{{Level: "rack", Value: rn.Rack}})
		}
	}
	if !isRange {
		templated := []string{rn.Serial, rn.Rack}
		if rn.BMC != nil {
			templated = append(templated, rn.BMC.URL)
		}
		for _, v := range base.Labels {
			templated = append(templated, v)
		}
		for _, l := range topo {
			templated = append(templated, l.Value)
		}
		for _, v := range templated {
			if strings.Contains(v, indexPlaceholder) {
				r.errorf(d, path, "node %s is not a range, so {index} (in %q) has no value: write the value out, or make the entry a range such as %s[01-04]", label, v, label)
				break
			}
		}
	}

	// Addresses: parsed once; a range counts up from them.
	var mac net.HardwareAddr
	var macs []net.HardwareAddr
	switch {
	case rn.MAC != "" && len(rn.MACs) > 0:
		r.errorf(d, path+".macs", "give either mac (the first node's, counted up along the range) or macs (one per node), not both")
	case len(rn.MACs) > 0:
		if !isRange {
			r.errorf(d, path+".macs", "macs is for ranges; a single node has one boot mac:")
		} else if len(rn.MACs) != len(names) {
			r.errorf(d, path+".macs", "range %s has %d nodes but macs lists %d addresses: give exactly one per node, in order", label, len(names), len(rn.MACs))
		}
		for i, s := range rn.MACs {
			m, err := parseMAC(s)
			if err != nil {
				r.errorf(d, fmt.Sprintf("%s.macs[%d]", path, i), "%v", err)
			}
			macs = append(macs, m)
		}
	case rn.MAC != "":
		m, err := parseMAC(rn.MAC)
		if err != nil {
			r.errorf(d, path+".mac", "%v", err)
		}
		mac = m
	default:
		r.errorf(d, path, "node %s has no boot NIC mac: the DHCP server answers known MACs only", label)
	}
	var ip netip.Addr
	if rn.IP == "" {
		r.errorf(d, path, "node %s has no ip: give its address on the provisioning network", label)
	} else if a := r.parseAddr(d, path+".ip", rn.IP); a.IsValid() {
		ip = a
	}
	pnet, pnetOK := r.nodeNetwork(d, path, label, rn.Network, ip)
	base.Network = pnet.Name
	nicMACs := make([]net.HardwareAddr, len(rn.NICs))
	nicIPs := make([]netip.Addr, len(rn.NICs))
	for i, nic := range rn.NICs {
		np := fmt.Sprintf("%s.nics[%d]", path, i)
		if nic.MAC == "" {
			r.errorf(d, np, "NIC has no mac")
		} else if m, err := parseMAC(nic.MAC); err != nil {
			r.errorf(d, np+".mac", "%v", err)
		} else {
			nicMACs[i] = m
		}
		if nic.IP != "" {
			nicIPs[i] = r.parseAddr(d, np+".ip", nic.IP)
		}
	}
	bmcURL := ""
	if rn.BMC != nil {
		bmcURL = rn.BMC.URL
	}
	if bmcURL == "" {
		r.errorf(d, path, "node %s has no bmc.url: write redfish://HOST, redfish+http://HOST:PORT or ipmi://HOST", label)
	} else if err := checkPlaceholders(bmcURL); err != nil {
		r.errorf(d, path+".bmc.url", "%v", err)
		bmcURL = ""
	}
	var bmcHost netip.Addr
	templated := strings.Contains(bmcURL, indexPlaceholder)
	if bmcURL != "" {
		probe := base.BMC
		if err := parseBMCURL(strings.ReplaceAll(bmcURL, indexPlaceholder, indexes[0]), &probe); err != nil {
			r.errorf(d, path+".bmc.url", "%v", err)
			bmcURL = ""
		} else if a, err := netip.ParseAddr(probe.Host); err == nil && !templated {
			bmcHost = a
		}
	}
	if base.BMC.Username == "" && profileOK {
		r.errorf(d, path+".bmc", "node %s has no BMC username: set bmc.username on the node or in profile %q", label, rn.Profile)
	}
	if !passwordGiven && profileOK {
		r.errorf(d, path+".bmc", "node %s has no BMC password reference: set bmc.password: env:NAME or file:/path on the node or in its profile", label)
	}
	if profileOK && !base.Disabled && (base.Boot.Kernel == "" || base.Boot.Initrd == "") {
		r.errorf(d, path+".boot", "node %s has no boot kernel and initrd: set boot.kernel and boot.initrd in profile %q or on the node", label, rn.Profile)
	}
	if profileOK && !base.Disabled && base.Boot.Method == BootMethodVirtualMedia && base.Boot.Firmware != FirmwareBIOS {
		// up and iso refuse such a node (pkg/bootiso), but only once running.
		r.errorf(d, path+".boot", "node %s: boot.method virtual-media needs boot.firmware: bios: the node's CD cannot run its script under UEFI with Debian 12's iPXE (a script on a CD needs iPXE 1.21 or newer); set firmware: bios (and the server's BIOS to legacy boot), or boot it over PXE", label)
	}

	ipReported := map[string]bool{} // a range out of its network is reported once, not per node
	labelReported := false          // so is a label an index makes invalid
	out := make([]Node, 0, len(names))
	for k, name := range names {
		n := base
		n.Name = name
		idx := indexes[k]
		n.Serial = strings.ReplaceAll(rn.Serial, indexPlaceholder, idx)
		n.Labels = maps.Clone(base.Labels)
		for key, v := range n.Labels {
			if strings.Contains(v, indexPlaceholder) {
				v = strings.ReplaceAll(v, indexPlaceholder, idx)
				if !labelValueRE.MatchString(v) && !labelReported {
					r.errorf(d, path+".labels["+key+"]", "node %s: label value %q is not a valid Kubernetes label value (at most 63 letters, digits, '-', '_', '.')", name, v)
					labelReported = true
				}
				n.Labels[key] = v
			}
		}
		n.Topology = make([]TopologyLevel, len(topo))
		for i, l := range topo {
			l.Value = strings.ReplaceAll(l.Value, indexPlaceholder, idx)
			if !labelValueRE.MatchString(l.Value) && !labelReported {
				r.errorf(d, path+".topology", "node %s: topology %s %q is not a valid Kubernetes label value (at most 63 letters, digits, '-', '_', '.')", name, l.Level, l.Value)
				labelReported = true
			}
			n.Topology[i] = l
			if l.Level == "rack" {
				n.Rack = l.Value
			}
		}
		if len(n.Topology) == 0 {
			n.Topology = nil
		}
		if k == 0 {
			for key, v := range n.TopologyLabels() {
				if own, ok := n.Labels[key]; ok && own != v {
					r.errorf(d, path+".labels["+key+"]", "node %s: label %s=%s contradicts its topology, which sets %s", name, key, own, v)
				}
			}
			r.order.check(r, d, path, n)
		}
		if isRange && rn.Slot != nil {
			n.Slot = base.Slot + k
		}
		switch {
		case len(macs) > 0:
			if k < len(macs) {
				n.MAC = HardwareAddr(macs[k])
			}
		case mac != nil:
			m, ok := addMAC(mac, k)
			if !ok && k > 0 {
				r.errorf(d, path+".mac", "range %s runs past the last MAC address", label)
				return nil
			}
			n.MAC = HardwareAddr(m)
		}
		if ip.IsValid() {
			a, ok := addAddr(ip, k)
			if !ok {
				r.errorf(d, path+".ip", "range %s runs past the end of the address space", label)
				return nil
			}
			n.IP = a
			if pnetOK {
				if kind, problem := checkNodeIP(pnet, r.inv.Network, a); problem != "" && !ipReported[kind] {
					r.errorf(d, path+".ip", "node %s: %s", name, problem)
					ipReported[kind] = true
				}
			}
		}
		n.NICs = nil
		for i, nic := range rn.NICs {
			out := NIC{Name: nic.Name}
			if nicMACs[i] != nil {
				m, _ := addMAC(nicMACs[i], k)
				out.MAC = HardwareAddr(m)
			}
			if nicIPs[i].IsValid() {
				out.IP, _ = addAddr(nicIPs[i], k)
			}
			n.NICs = append(n.NICs, out)
		}
		if bmcURL != "" {
			u := strings.ReplaceAll(bmcURL, indexPlaceholder, idx)
			if bmcHost.IsValid() && k > 0 {
				h, _ := addAddr(bmcHost, k)
				u = withBMCHost(u, h)
			}
			if err := parseBMCURL(u, &n.BMC); err != nil {
				r.errorf(d, path+".bmc.url", "node %s: %v", name, err)
			} else if n.Boot.Method == BootMethodVirtualMedia && n.BMC.Protocol != ProtocolRedfish {
				r.errorf(d, path+".bmc.url", "node %s: boot.method virtual-media needs a Redfish BMC (redfish:// or redfish+http://); IPMI has no virtual media", name)
			}
			r.checkTLS(d, path, &n)
		}
		out = append(out, n)
	}
	return out
}

func (r *resolver) checkTLS(d *doc, path string, n *Node) {
	if n.BMC.Protocol != ProtocolRedfish || n.BMC.Scheme != "https" {
		if n.BMC.CAFile != "" || n.BMC.InsecureSkipVerify {
			r.warnf(d, path+".bmc", "node %s: caFile and insecureSkipVerify apply only to redfish:// (HTTPS) BMCs", n.Name)
		}
		return
	}
	if n.BMC.CAFile != "" && n.BMC.InsecureSkipVerify {
		r.errorf(d, path+".bmc", "node %s: give either bmc.caFile or bmc.insecureSkipVerify: true, not both", n.Name)
	}
}

func containsTaint(ts []Taint, t Taint) bool {
	for _, x := range ts {
		if x.Key == t.Key && x.Effect == t.Effect {
			return true
		}
	}
	return false
}

func (r *resolver) profileNameList() []string {
	names := make([]string, 0, len(r.profiles))
	for n := range r.profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (r *resolver) profileNames() string {
	names := r.profileNameList()
	if len(names) == 0 {
		return "(none defined: add a profiles: section)"
	}
	return strings.Join(names, ", ")
}

var dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

func isDNSLabel(s string) bool { return dnsLabelRE.MatchString(s) }

func isDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(strings.ToLower(s), ".") {
		if !isDNSLabel(l) {
			return false
		}
	}
	return true
}
