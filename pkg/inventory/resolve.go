package inventory

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Defaults applied where the inventory is silent.
const (
	DefaultHTTPPort      = 8080
	DefaultLeaseTime     = time.Hour
	DefaultDNSDomain     = "cluster.local"
	DefaultPodSubnet     = "10.244.0.0/16"
	DefaultServiceSubnet = "10.96.0.0/12"
	DefaultAPIPort       = 6443
)

// SupportedKubernetesMinors are the Kubernetes minor versions this build
// deploys: kubeadm v1.37 creates control planes of v1.36 and v1.37.
var supportedMinors = []int{36, 37}

// SupportedKubernetesVersions describes the accepted versions for messages.
func SupportedKubernetesVersions() string { return "v1.36.x or v1.37.x" }

// resolver turns decoded documents into an Inventory, collecting errors.
type resolver struct {
	errs       *errorList
	inv        *Inventory
	profiles   map[string]profileDef
	networkDoc *doc
	order      topologyOrder
}

type profileDef struct {
	raw  *rawProfile
	doc  *doc
	path string
}

// Resolve merges already-read inventory files, applies profiles and node
// overrides, expands ranges and validates everything, reporting every
// problem at once (errors.Join of *Error, in file and line order).
func Resolve(files ...File) (*Inventory, error) {
	errs := &errorList{}
	var docs []*doc
	for _, f := range files {
		docs = append(docs, parseDocs(f, errs)...)
	}
	r := &resolver{errs: errs, inv: &Inventory{}, profiles: map[string]profileDef{}}
	for _, f := range files {
		r.inv.Sources = append(r.inv.Sources, f.Name)
	}
	r.resolve(docs)
	if err := errs.err(); err != nil {
		return nil, err
	}
	r.inv.Warnings = errs.warningStrings()
	return r.inv, nil
}

func (r *resolver) errorf(d *doc, path, format string, a ...any) {
	r.errs.add(d.at(path), path, fmt.Sprintf(format, a...))
}

func (r *resolver) warnf(d *doc, path, format string, a ...any) {
	r.errs.warn(d.at(path), path, fmt.Sprintf(format, a...))
}

func (r *resolver) resolve(docs []*doc) {
	if r.severalInventories(docs) {
		return
	}
	var clusterDoc *doc
	var routed []routedDef
	for _, d := range docs {
		if d.raw.APIVersion != APIVersion {
			if d.raw.APIVersion == "" {
				r.errorf(d, "apiVersion", "apiVersion is missing: add apiVersion: %s", APIVersion)
			} else {
				r.errorf(d, "apiVersion", "unsupported apiVersion %q: this provisioner reads %s", d.raw.APIVersion, APIVersion)
			}
		}
		if d.raw.Kind != Kind {
			r.errorf(d, "kind", "kind is %q, want kind: %s", d.raw.Kind, Kind)
		}
		if d.raw.Cluster != nil {
			clusterDoc = d
		}
		if d.raw.Network != nil {
			if r.networkDoc != nil {
				r.errorf(d, "network", "network is already defined at %s: define it in one file only (further provisioning networks go under networks:)", r.networkDoc.at("network"))
			} else {
				r.networkDoc = d
			}
		}
		for i, rn := range d.raw.Networks {
			routed = append(routed, routedDef{d: d, path: fmt.Sprintf("networks[%d]", i), raw: rn})
		}
		names := make([]string, 0, len(d.raw.Profiles))
		for name := range d.raw.Profiles {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			path := "profiles[" + name + "]"
			if prev, ok := r.profiles[name]; ok {
				r.errorf(d, path, "profile %q is already defined at %s", name, prev.doc.at(prev.path))
				continue
			}
			p := d.raw.Profiles[name]
			if p == nil {
				p = &rawProfile{}
			}
			r.profiles[name] = profileDef{raw: p, doc: d, path: path}
		}
	}
	if len(docs) == 0 {
		return
	}
	if r.networkDoc == nil {
		r.errorf(docs[0], "", "no network section in any file: describe the provisioning network (network.provisioner.address, network.subnet)")
	} else {
		r.network(r.networkDoc, r.networkDoc.raw.Network)
		r.routedNetworks(routed)
	}
	r.inv.Profiles = map[string]Profile{}
	for name, def := range r.profiles {
		r.inv.Profiles[name] = r.profile(def.doc, def.path, def.raw)
	}
	type origin struct {
		d    *doc
		path string
	}
	var origins []origin
	for _, d := range docs {
		for i, rn := range d.raw.Nodes {
			path := fmt.Sprintf("nodes[%d]", i)
			for _, n := range r.node(d, path, rn) {
				r.inv.Nodes = append(r.inv.Nodes, n)
				origins = append(origins, origin{d, path})
			}
		}
	}
	r.addons(docs)
	if clusterDoc == nil {
		r.errorf(docs[0], "", "no cluster section in any file: describe the cluster (cluster.name, cluster.kubernetesVersion)")
	} else {
		r.cluster(clusterDoc, clusterDoc.raw.Cluster)
	}

	// Checks across nodes: duplicates and roles.
	type claim struct {
		node string
		at   Pos
	}
	seen := map[string]claim{}
	dup := func(kind, value string, i int, field string) {
		o := origins[i]
		key := kind + "\x00" + value
		n := r.inv.Nodes[i]
		if prev, ok := seen[key]; ok {
			r.errorf(o.d, o.path+"."+field, "node %s: duplicate %s %s: node %s (%s) has it already", n.Name, kind, value, prev.node, prev.at)
			return
		}
		seen[key] = claim{node: n.Name, at: o.d.at(o.path)}
	}
	cps := 0
	for i, n := range r.inv.Nodes {
		dup("node name", n.Name, i, "name")
		if len(n.MAC) > 0 {
			dup("MAC", n.MAC.String(), i, "mac")
		}
		for j, nic := range n.NICs {
			if len(nic.MAC) > 0 {
				dup("MAC", nic.MAC.String(), i, fmt.Sprintf("nics[%d].mac", j))
			}
			if nic.IP.IsValid() {
				dup("IP address", nic.IP.String(), i, fmt.Sprintf("nics[%d].ip", j))
			}
		}
		if n.IP.IsValid() {
			dup("IP address", n.IP.String(), i, "ip")
		}
		if n.BMC.Host != "" {
			dup("BMC address", n.BMC.Addr(), i, "bmc.url")
		}
		if n.Role == RoleControlPlane && !n.Disabled {
			cps++
		}
	}
	// Without other errors only: a node whose profile failed to resolve has
	// no role, and "no control plane" would then be noise.
	if len(r.errs.errs) == 0 {
		switch {
		case cps == 0:
			r.errorf(docs[0], "nodes", "no enabled control-plane node: give at least one node role: control-plane (directly or through its profile)")
		case cps%2 == 0:
			r.warnf(docs[0], "nodes", "%d control-plane nodes: etcd needs a majority, so an even number tolerates no more failures than %d; use an odd number", cps, cps-1)
		}
	}
}

// severalInventories reports, as one problem, documents that define more
// than one cluster: they are separate inventories loaded together (a
// directory holding two of them), and resolving them as one would bury
// that in a cascade of duplicate names, addresses and profiles.
func (r *resolver) severalInventories(docs []*doc) bool {
	var clusters []*doc
	for _, d := range docs {
		if d.raw.Cluster != nil {
			clusters = append(clusters, d)
		}
	}
	if len(clusters) < 2 {
		return false
	}
	var parts, files []string
	for _, d := range clusters {
		parts = append(parts, fmt.Sprintf("cluster %q (%s)", d.raw.Cluster.Name, d.at("cluster")))
		if !slices.Contains(files, d.file) {
			files = append(files, d.file)
		}
	}
	hint := "keep one cluster section per inventory"
	if len(files) > 1 {
		hint = fmt.Sprintf("load one inventory at a time (for example -f %s), or keep each inventory in a directory of its own", files[0])
	}
	r.errorf(clusters[1], "cluster", "%d inventories were loaded as one: %s; -f merges every file it is given, and every *.yaml of a directory, into a single inventory: %s",
		len(clusters), strings.Join(parts, ", "), hint)
	return true
}

func (r *resolver) parseAddr(d *doc, path, s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		r.errorf(d, path, "%q is not an IP address (want for example 10.0.0.5)", s)
		return netip.Addr{}
	}
	return a
}

func (r *resolver) parsePrefix(d *doc, path, s string) netip.Prefix {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		r.errorf(d, path, "%q is not a CIDR subnet (want for example 10.0.0.0/24)", s)
		return netip.Prefix{}
	}
	if p.Masked() != p {
		r.errorf(d, path, "%s has host bits set: did you mean %s?", s, p.Masked())
	}
	return p.Masked()
}

var k8sVersionRE = regexp.MustCompile(`^v?1\.(\d+)\.(\d+)$`)

func (r *resolver) cluster(d *doc, rc *rawCluster) {
	c := &r.inv.Cluster
	c.Name = rc.Name
	switch {
	case c.Name == "":
		r.errorf(d, "cluster", "cluster.name is missing")
	case !isDNSLabel(c.Name):
		r.errorf(d, "cluster.name", "%q is not a valid name: use lowercase letters, digits and '-', at most 63 characters", c.Name)
	}
	if rc.KubernetesVersion == "" {
		r.errorf(d, "cluster", "cluster.kubernetesVersion is missing: use %s", SupportedKubernetesVersions())
	} else if m := k8sVersionRE.FindStringSubmatch(rc.KubernetesVersion); m == nil {
		r.errorf(d, "cluster.kubernetesVersion", "%q is not a Kubernetes release version: write it as v1.MINOR.PATCH, for example v1.37.2", rc.KubernetesVersion)
	} else if minor, _ := strconv.Atoi(m[1]); !slices.Contains(supportedMinors, minor) {
		r.errorf(d, "cluster.kubernetesVersion", "Kubernetes %s is not supported by this build: use %s", rc.KubernetesVersion, SupportedKubernetesVersions())
	} else {
		c.KubernetesVersion = "v" + strings.TrimPrefix(rc.KubernetesVersion, "v")
	}
	pod, svc := rc.PodSubnet, rc.ServiceSubnet
	if pod == "" {
		pod = DefaultPodSubnet
	}
	if svc == "" {
		svc = DefaultServiceSubnet
	}
	c.PodSubnet = r.parsePrefix(d, "cluster.podSubnet", pod)
	c.ServiceSubnet = r.parsePrefix(d, "cluster.serviceSubnet", svc)
	if c.PodSubnet.IsValid() && c.ServiceSubnet.IsValid() && c.PodSubnet.Overlaps(c.ServiceSubnet) {
		r.errorf(d, "cluster.serviceSubnet", "service subnet %s overlaps pod subnet %s: choose disjoint ranges", c.ServiceSubnet, c.PodSubnet)
	}
	for _, p := range r.provisioningNetworks() {
		prov := p.Subnet
		what := "the provisioning subnet " + prov.String()
		if len(r.inv.Networks) > 0 {
			what = fmt.Sprintf("provisioning network %s (%s)", p.Name, prov)
		}
		if prov.IsValid() && c.PodSubnet.IsValid() && prov.Overlaps(c.PodSubnet) {
			r.errorf(d, "cluster.podSubnet", "pod subnet %s overlaps %s: pods would shadow node addresses", c.PodSubnet, what)
		}
		if prov.IsValid() && c.ServiceSubnet.IsValid() && prov.Overlaps(c.ServiceSubnet) {
			r.errorf(d, "cluster.serviceSubnet", "service subnet %s overlaps %s", c.ServiceSubnet, what)
		}
	}
	c.DNSDomain = rc.DNSDomain
	if c.DNSDomain == "" {
		c.DNSDomain = DefaultDNSDomain
	} else if !isDNSName(c.DNSDomain) {
		r.errorf(d, "cluster.dnsDomain", "%q is not a DNS domain name", c.DNSDomain)
	}
	ep := rc.ControlPlaneEndpoint
	if ep == "" {
		for _, n := range r.inv.Nodes {
			if n.Role == RoleControlPlane && !n.Disabled && n.IP.IsValid() {
				ep = n.IP.String()
				break
			}
		}
		if ep == "" {
			return // reported as "no control-plane node"
		}
	}
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		host, port = strings.Trim(ep, "[]"), strconv.Itoa(DefaultAPIPort)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		r.errorf(d, "cluster.controlPlaneEndpoint", "%q has no valid port: write host:port, for example 10.0.0.10:6443", ep)
		return
	}
	if _, err := netip.ParseAddr(host); err != nil && !isDNSName(host) {
		r.errorf(d, "cluster.controlPlaneEndpoint", "%q: %q is neither an IP address nor a DNS name", ep, host)
		return
	}
	c.ControlPlaneEndpoint = net.JoinHostPort(host, port)
}

func (r *resolver) boot(d *doc, path string, rb *rawBoot, b *Boot) {
	if rb == nil {
		return
	}
	if rb.Firmware != "" {
		switch f := Firmware(rb.Firmware); f {
		case FirmwareUEFI, FirmwareBIOS:
			b.Firmware = f
		default:
			r.errorf(d, path+".firmware", "unknown firmware %q: want uefi or bios", rb.Firmware)
		}
	}
	if rb.Kernel != "" {
		b.Kernel = rb.Kernel
	}
	if rb.Initrd != "" {
		b.Initrd = rb.Initrd
	}
	if rb.KernelArgs != "" {
		b.KernelArgs = rb.KernelArgs
	}
	switch m := BootMethod(rb.Method); m {
	case "":
	case BootMethodPXE, BootMethodVirtualMedia:
		b.Method = m
	default:
		r.errorf(d, path+".method", "unknown boot method %q: want pxe or virtual-media", rb.Method)
	}
	switch f := ConfigFormat(rb.ConfigFormat); f {
	case "":
	case ConfigFormatCloudConfig, ConfigFormatScript:
		b.ConfigFormat = f
	default:
		r.errorf(d, path+".configFormat", "unknown node configuration format %q: want cloud-config or script", rb.ConfigFormat)
	}
}

var labelKeyRE = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
var labelValueRE = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)

func (r *resolver) labels(d *doc, path string, in map[string]string, out map[string]string) {
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := in[k]
		kp := path + "[" + k + "]"
		if !labelKeyRE.MatchString(k) {
			r.errorf(d, kp, "%q is not a valid Kubernetes label key (optional DNS prefix/, then a name of letters, digits, '-', '_', '.')", k)
			continue
		}
		if err := KubeletMaySet(k); err != nil {
			r.errorf(d, kp, "%v", err)
			continue
		}
		if secretLabelKey(k) {
			// The value is never echoed: it may be the secret.
			r.errorf(d, kp, "label %q looks like it holds a secret: node labels are readable by anyone who may list nodes; keep secrets out of the inventory", k)
			continue
		}
		if err := checkPlaceholders(v); err != nil {
			r.errorf(d, kp, "%v", err)
			continue
		}
		if !labelValueRE.MatchString(strings.ReplaceAll(v, indexPlaceholder, "0")) {
			r.errorf(d, kp, "%q is not a valid Kubernetes label value (at most 63 letters, digits, '-', '_', '.')", v)
			continue
		}
		if strings.HasPrefix(k, TopologyLabelPrefix) {
			r.errorf(d, kp, "label %s is set from the node's topology: write topology: {%s: %s} (or rack:) instead", k, strings.TrimPrefix(k, TopologyLabelPrefix), v)
			continue
		}
		out[k] = v
	}
}

// KubeletMaySet refuses a node label key that a kubelet may not set on its
// own Node through --node-labels, where it would refuse to start:
// kubernetes.io and k8s.io labels outside the set the NodeRestriction
// admission allows (node-role.kubernetes.io/worker is the usual one).
func KubeletMaySet(key string) error {
	prefix, _, ok := strings.Cut(key, "/")
	if !ok {
		return nil
	}
	if !(prefix == "kubernetes.io" || prefix == "k8s.io" || strings.HasSuffix(prefix, ".kubernetes.io") || strings.HasSuffix(prefix, ".k8s.io")) {
		return nil
	}
	allowed := []string{"kubernetes.io/hostname", "kubernetes.io/instance-type", "kubernetes.io/os", "kubernetes.io/arch",
		"beta.kubernetes.io/instance-type", "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
		"failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
		"topology.kubernetes.io/zone", "topology.kubernetes.io/region", "node.kubernetes.io/instance-type"}
	if slices.Contains(allowed, key) || prefix == "kubelet.kubernetes.io" || prefix == "node.kubernetes.io" ||
		strings.HasSuffix(prefix, ".kubelet.kubernetes.io") || strings.HasSuffix(prefix, ".node.kubernetes.io") {
		return nil
	}
	return fmt.Errorf("label %q: the kubelet may not set labels in the %s namespace on its own node; use a site prefix (such as example.com/role) or apply it after the node joined", key, prefix)
}

// secretLabelKey reports whether a label key's name looks like it holds a
// secret. It looks at whole words (split at '-', '_', '.'), so that
// gpu-passthrough or tokenizer-cache pass.
func secretLabelKey(key string) bool {
	_, name, ok := strings.Cut(key, "/")
	if !ok {
		name = key
	}
	words := strings.FieldsFunc(strings.ToLower(name), func(r rune) bool { return r == '-' || r == '_' || r == '.' })
	for i, w := range words {
		switch w {
		case "password", "passwd", "passphrase", "pass", "pw", "pwd", "secret", "secrets", "token", "credential", "credentials",
			"apikey", "privatekey", "passcode":
			return true
		}
		if i+1 < len(words) && (w == "api" || w == "private" || w == "access" || w == "secret") && words[i+1] == "key" {
			return true
		}
	}
	return false
}

func (r *resolver) taints(d *doc, path string, in []rawTaint) []Taint {
	var out []Taint
	for i, t := range in {
		tp := fmt.Sprintf("%s[%d]", path, i)
		if !labelKeyRE.MatchString(t.Key) {
			r.errorf(d, tp+".key", "%q is not a valid taint key", t.Key)
			continue
		}
		switch t.Effect {
		case "NoSchedule", "PreferNoSchedule", "NoExecute":
		default:
			r.errorf(d, tp+".effect", "unknown taint effect %q: want NoSchedule, PreferNoSchedule or NoExecute", t.Effect)
			continue
		}
		out = append(out, Taint(t))
	}
	return out
}

// bmcDefaults applies the credential and TLS fields of rb onto b.
func (r *resolver) bmcDefaults(d *doc, path string, rb *rawBMC, b *BMC) {
	if rb == nil {
		return
	}
	if rb.Username != "" {
		b.Username = rb.Username
	}
	if rb.Password != "" {
		ref, err := ParseSecretRef(rb.Password)
		if err != nil {
			// The value is never echoed: it may be a real password.
			r.errorf(d, path+".password", "%v", err)
		} else {
			b.Password = ref
		}
	}
	if rb.CAFile != "" {
		b.CAFile = rb.CAFile
	}
	if rb.InsecureSkipVerify != nil {
		b.InsecureSkipVerify = *rb.InsecureSkipVerify
	}
}

func (r *resolver) profile(d *doc, path string, rp *rawProfile) Profile {
	var p Profile
	switch Role(rp.Role) {
	case "", RoleControlPlane, RoleWorker:
		p.Role = Role(rp.Role)
	default:
		r.errorf(d, path+".role", "unknown role %q: want control-plane or worker", rp.Role)
	}
	r.boot(d, path+".boot", rp.Boot, &p.Boot)
	if len(rp.Labels) > 0 {
		p.Labels = map[string]string{}
		r.labels(d, path+".labels", rp.Labels, p.Labels)
	}
	p.Topology = r.topology(d, path+".topology", rp.Topology)
	p.Taints = r.taints(d, path+".taints", rp.Taints)
	if rp.BMC != nil && rp.BMC.URL != "" {
		r.errorf(d, path+".bmc.url", "a BMC URL belongs to one node: set bmc.url on the node, keep credentials and TLS settings in the profile")
	}
	r.bmcDefaults(d, path+".bmc", rp.BMC, &p.BMC)
	return p
}
