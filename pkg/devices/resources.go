package devices

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Health defaults.
const (
	// DefaultPollInterval is how often sysfs health is polled.
	DefaultPollInterval = time.Second
	// DefaultRecoveryPeriod is how long a device must stay clean before it
	// is healthy again.
	DefaultRecoveryPeriod = 5 * time.Minute
)

// Config file identity: the device plugin's config file is YAML with this
// apiVersion and kind.
const (
	ConfigAPIVersion = "slipway.dev/v1alpha1"
	ConfigKind       = "DevicePluginConfig"
)

// Default resource names, used with no config file.
const (
	ResourceGPU  = "nvidia.com/gpu"
	ResourceHCA  = "slipway.dev/hca"
	ResourceFPGA = "slipway.dev/fpga"
	// ResourceRoCE is the name suggested for RoCE (Ethernet link layer)
	// HCA ports; not advertised by DefaultConfig.
	ResourceRoCE = "slipway.dev/roce"
)

// HCA port link layers, as sysfs writes them.
const (
	LinkLayerInfiniBand = "InfiniBand"
	LinkLayerEthernet   = "Ethernet"
)

// defaultIgnoredXIDs are the application-caused XIDs that do not mark a GPU
// unhealthy unless configured otherwise: 13 (graphics engine exception), 31
// (MMU fault), 43 (reset channel), 45 (preemptive cleanup), 68 (video
// processor exception) and 109 (context switch timeout). Never modified.
var defaultIgnoredXIDs = []uint64{13, 31, 43, 45, 68, 109}

// DefaultIgnoredXIDs returns a fresh copy of the XIDs ignored by default:
// the application-caused 13, 31, 43, 45, 68 and 109, as the reference
// NVIDIA plugin does.
func DefaultIgnoredXIDs() []uint64 { return append([]uint64(nil), defaultIgnoredXIDs...) }

// ResourceConfig is the device plugin's config file: which devices are
// advertised under which resource names, and health settings.
type ResourceConfig struct {
	// APIVersion must be ConfigAPIVersion.
	APIVersion string `yaml:"apiVersion"`
	// Kind must be ConfigKind.
	Kind string `yaml:"kind"`
	// Resources are tried in order; a device goes to the first resource
	// whose selector matches it, and to none when none matches.
	Resources []Resource `yaml:"resources"`
	// Exclude lists selectors of devices never advertised, whatever
	// Resources say (a storage NIC the host-NIC rule does not catch, a GPU
	// kept for the host).
	Exclude []Selector `yaml:"exclude,omitempty"`
	// GPU says how GPUs in MIG mode are advertised.
	GPU GPUConfig `yaml:"gpu,omitempty"`
	// FPGA says how FPGA resources are named.
	FPGA FPGAConfig `yaml:"fpga,omitempty"`
	// Health configures the health monitor.
	Health HealthConfig `yaml:"health"`
}

// MIG strategies, as NVIDIA's device plugin names them.
const (
	// MIGNone advertises GPUs whole, MIG mode or not; MIG devices are not
	// advertised.
	MIGNone = "none"
	// MIGSingle advertises, under the resource a MIG-mode GPU's selector
	// picks (nvidia.com/gpu), its MIG devices instead of the GPU. Every
	// GPU that resource selects must be in MIG mode with MIG devices of
	// one profile; otherwise the resource advertises nothing and
	// CheckMIG says why.
	MIGSingle = "single"
	// MIGMixed advertises the MIG devices of MIG-mode GPUs as
	// <domain>/mig-<profile> (nvidia.com/mig-1g.10gb, with the domain of
	// the resource the GPU's selector picks) and GPUs not in MIG mode
	// whole.
	MIGMixed = "mixed"
)

// GPUConfig says how GPUs in MIG mode are advertised.
type GPUConfig struct {
	// MIGStrategy is none, single or mixed. Empty means none.
	MIGStrategy string `yaml:"migStrategy,omitempty"`
}

// FPGAConfig says how FPGA resources are named.
type FPGAConfig struct {
	// Pool advertises every FPGA a resource selects under that resource's
	// name. False (the default) splits it by bitstream-compatible
	// identity, as the Xilinx and Intel FPGA plugins do: the FPGAs of
	// resource slipway.dev/fpga become slipway.dev/fpga-<identity> (see
	// FPGAIdentity), so that a pod asking for two FPGAs gets two that take
	// the same bitstreams.
	Pool bool `yaml:"pool,omitempty"`
}

// maxNameLen is the longest name part of an extended resource name (a
// Kubernetes qualified name).
const maxNameLen = 63

// fpgaIDLen is the length of an FPGA interface ID in hex.
const fpgaIDLen = 32

// FPGAIdentity returns the bitstream-compatible identity of an FPGA: its
// interface ID (the Alveo shell's interface UUID, the Intel FIM's interface
// or compat ID) in lower-case hex without dashes; for a card that reports
// none, its shell name in lower case with characters a resource name
// cannot hold as "_"; "" when it has neither.
func FPGAIdentity(d Device) string {
	if id := strings.ReplaceAll(strings.ToLower(d.Attributes["interface_id"]), "-", ""); id != "" {
		return strings.TrimPrefix(id, "0x")
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, d.Attributes["shell"])
}

// fpgaResourceName is the resource of the FPGAs with identity id that
// resource base selects: base-id, cut to the 63 characters a name may have.
func fpgaResourceName(base, id string) string {
	_, name, _ := strings.Cut(base, "/")
	if room := maxNameLen - len(name) - 1; len(id) > room {
		id = strings.TrimRight(id[:max(room, 0)], "._-")
	}
	if id == "" {
		return base
	}
	return base + "-" + id
}

// Resource maps the devices a selector matches to one resource name.
type Resource struct {
	// Name is the extended resource name, "vendor.domain/name".
	Name string `yaml:"name"`
	// Selector picks the devices.
	Selector Selector `yaml:"selector"`
	// Replicas shares each device by time-slicing: the resource
	// advertises this many replicas of it, as NVIDIA's plugin does.
	// Replicas give no memory or fault isolation: every pod on a device
	// sees all of its memory, and one that faults it takes the others
	// down. 0 or 1 means no sharing; at most MaxReplicas.
	Replicas int `yaml:"replicas,omitempty"`
}

// MaxReplicas is the most replicas a shared device may have.
const MaxReplicas = 1024

// Assignment is one resource of a plan: its name, its devices, in the
// order of discovery, and how many replicas of each it advertises.
type Assignment struct {
	Name     string
	Devices  []Device
	Replicas int
}

// Selector matches devices. Every non-empty field must match (AND); within
// a list field any entry may match (OR). An empty selector matches nothing.
type Selector struct {
	// Kinds are device kinds: gpu, hca, fpga.
	Kinds []Kind `yaml:"kinds,omitempty"`
	// Vendors are PCI vendor IDs, "0x10de" or "10de".
	Vendors []string `yaml:"vendors,omitempty"`
	// DeviceIDs are PCI device IDs, "0x2330" or "2330".
	DeviceIDs []string `yaml:"deviceIDs,omitempty"`
	// Drivers are bound kernel driver names ("nvidia", "mlx5_core").
	Drivers []string `yaml:"drivers,omitempty"`
	// PCIAddresses are PCI functions, DDDD:BB:DD.F or BB:DD.F; a trailing
	// "*" matches a prefix.
	PCIAddresses []string `yaml:"pciAddresses,omitempty"`
	// Model is a shell pattern (path.Match) on the model name, such as
	// "*H100*".
	Model string `yaml:"model,omitempty"`
	// LinkLayers are HCA link layers, "InfiniBand" or "Ethernet" (RoCE); an
	// HCA matches when every one of its ports has one of them, so that an
	// InfiniBand resource never gets an Ethernet port. A device without
	// ports does not match.
	LinkLayers []string `yaml:"linkLayers,omitempty"`
}

// HealthConfig configures the health monitor from the config file.
type HealthConfig struct {
	// IgnoredXIDs are XIDs that do not mark a GPU unhealthy. Nil means
	// DefaultIgnoredXIDs; an empty list ignores none.
	IgnoredXIDs []uint64 `yaml:"ignoredXIDs"`
	// PollInterval is how often HCA ports, FPGA IDs and device presence are
	// checked. Zero means 1s.
	PollInterval Duration `yaml:"pollInterval,omitempty"`
	// RecoveryPeriod is how long an unhealthy device must stay clean before
	// it is healthy again. Zero means 5m; negative means never recover.
	RecoveryPeriod Duration `yaml:"recoveryPeriod,omitempty"`
}

// MonitorConfig returns the health monitor's config for devices discovered
// with d: the root, NVML mode, seam and logger of d, the health settings of
// c (zero ones meaning the monitor's defaults).
func (c ResourceConfig) MonitorConfig(d Config) MonitorConfig {
	return MonitorConfig{
		Root:           d.Root,
		NVML:           d.NVML,
		NVMLLib:        d.NVMLLib,
		IgnoredXIDs:    c.Health.IgnoredXIDs,
		PollInterval:   c.Health.PollInterval.Duration,
		RecoveryPeriod: c.Health.RecoveryPeriod.Duration,
		Log:            d.Log,
	}
}

// Duration is a time.Duration written as a Go duration string ("90s").
type Duration struct{ time.Duration }

// UnmarshalYAML parses a Go duration string ("90s", "5m").
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: duration %q: want a Go duration such as 1s or 5m", n.Line, s)
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration as a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// DefaultConfig returns the config used with no file: every GPU as
// nvidia.com/gpu, every InfiniBand HCA as slipway.dev/hca, every FPGA as
// slipway.dev/fpga, default health settings. RoCE (Ethernet) ports are not
// advertised by default: they are often the host's storage network; a
// config that wants them names a resource of their own (ResourceRoCE with
// linkLayers [Ethernet]), never mixed with InfiniBand.
func DefaultConfig() ResourceConfig {
	return ResourceConfig{
		APIVersion: ConfigAPIVersion,
		Kind:       ConfigKind,
		Resources: []Resource{
			{Name: ResourceGPU, Selector: Selector{Kinds: []Kind{KindGPU}}},
			{Name: ResourceHCA, Selector: Selector{Kinds: []Kind{KindHCA}, LinkLayers: []string{LinkLayerInfiniBand}}},
			{Name: ResourceFPGA, Selector: Selector{Kinds: []Kind{KindFPGA}}},
		},
		Health: HealthConfig{
			IgnoredXIDs:    DefaultIgnoredXIDs(),
			PollInterval:   Duration{DefaultPollInterval},
			RecoveryPeriod: Duration{DefaultRecoveryPeriod},
		},
	}
}

// LoadConfig reads, strictly decodes (an unknown field is an error naming
// the file and line), defaults and validates the config file at path. Every
// validation problem is reported at once.
func LoadConfig(path string) (ResourceConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return ResourceConfig{}, fmt.Errorf("load device plugin config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return ResourceConfig{}, fmt.Errorf("load device plugin config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes, defaults and validates a config file's contents.
// With no resources listed, the default resources are used.
func ParseConfig(data []byte) (ResourceConfig, error) {
	var c ResourceConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return ResourceConfig{}, errors.New("empty file: want apiVersion " + ConfigAPIVersion + " and kind " + ConfigKind)
		}
		return ResourceConfig{}, err
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return ResourceConfig{}, err
	}
	return c, nil
}

func (c *ResourceConfig) applyDefaults() {
	d := DefaultConfig()
	if len(c.Resources) == 0 {
		c.Resources = d.Resources
	}
	if c.Health.IgnoredXIDs == nil {
		c.Health.IgnoredXIDs = d.Health.IgnoredXIDs
	}
	if c.Health.PollInterval.Duration == 0 {
		c.Health.PollInterval = d.Health.PollInterval
	}
	if c.Health.RecoveryPeriod.Duration == 0 {
		c.Health.RecoveryPeriod = d.Health.RecoveryPeriod
	}
}

// resourceNameRE is an extended resource name: a DNS subdomain, a slash and
// a name.
var resourceNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)

// CheckResourceName returns an error unless name is an extended resource
// name the kubelet accepts from a device plugin (a qualified name with a
// domain: at most 253 characters before the slash and 63 after it, not in
// kubernetes.io or requests.).
func CheckResourceName(name string) error {
	domain, n, _ := strings.Cut(name, "/")
	switch {
	case !resourceNameRE.MatchString(name) || strings.HasPrefix(name, "kubernetes.io/") || strings.HasPrefix(name, "requests."):
		return fmt.Errorf("name %q: want an extended resource name such as example.com/gpu", name)
	case len(n) > maxNameLen:
		return fmt.Errorf("name %q: %d characters after the /, the kubelet takes at most %d", name, len(n), maxNameLen)
	case len(domain) > 253:
		return fmt.Errorf("name %q: domain of %d characters, at most 253", name, len(domain))
	}
	return nil
}

// Validate reports every problem of c at once.
func (c ResourceConfig) Validate() error {
	var errs []error
	if c.APIVersion != ConfigAPIVersion {
		errs = append(errs, fmt.Errorf("apiVersion %q: want %s", c.APIVersion, ConfigAPIVersion))
	}
	if c.Kind != ConfigKind {
		errs = append(errs, fmt.Errorf("kind %q: want %s", c.Kind, ConfigKind))
	}
	seen := map[string]bool{}
	for i, r := range c.Resources {
		where := fmt.Sprintf("resources[%d] (%s)", i, r.Name)
		if err := CheckResourceName(r.Name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		if seen[r.Name] {
			errs = append(errs, fmt.Errorf("%s: name %q is listed twice; merge the selectors", where, r.Name))
		}
		seen[r.Name] = true
		if err := r.Selector.validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: selector: %w", where, err))
		}
		if r.Replicas < 0 || r.Replicas > MaxReplicas {
			errs = append(errs, fmt.Errorf("%s: replicas %d: want 0 (no sharing) to %d", where, r.Replicas, MaxReplicas))
		}
	}
	switch c.GPU.MIGStrategy {
	case "", MIGNone, MIGSingle, MIGMixed:
	default:
		errs = append(errs, fmt.Errorf("gpu.migStrategy %q: want none, single or mixed", c.GPU.MIGStrategy))
	}
	if !c.FPGA.Pool {
		for i, r := range c.Resources {
			_, name, _ := strings.Cut(r.Name, "/")
			mayFPGA := len(r.Selector.Kinds) == 0 || slices.Contains(r.Selector.Kinds, KindFPGA)
			if mayFPGA && len(name)+1+fpgaIDLen > maxNameLen {
				errs = append(errs, fmt.Errorf("resources[%d] (%s): name %q is too long to split by FPGA identity (%s-<32 hex digits> must fit %d characters after the /); shorten it or set fpga.pool: true",
					i, r.Name, r.Name, r.Name, maxNameLen))
			}
		}
	}
	for i, sel := range c.Exclude {
		if err := sel.validate(); err != nil {
			errs = append(errs, fmt.Errorf("exclude[%d]: %w", i, err))
		}
	}
	if c.Health.PollInterval.Duration < 0 {
		errs = append(errs, fmt.Errorf("health.pollInterval %s: want a positive duration", c.Health.PollInterval))
	}
	return errors.Join(errs...)
}

func (s Selector) validate() error {
	var errs []error
	if s.isEmpty() {
		errs = append(errs, errors.New("empty: it would match nothing; set kinds, vendors, deviceIDs, drivers, pciAddresses, model or linkLayers"))
	}
	for _, k := range s.Kinds {
		if k != KindGPU && k != KindHCA && k != KindFPGA {
			errs = append(errs, fmt.Errorf("kind %q: want gpu, hca or fpga", k))
		}
	}
	for _, v := range slices.Concat(s.Vendors, s.DeviceIDs) {
		if _, ok := normHexID(v); !ok {
			errs = append(errs, fmt.Errorf("pci id %q: want 4 hex digits such as 0x10de", v))
		}
	}
	for _, a := range s.PCIAddresses {
		if normPCIPattern(a) == "" {
			errs = append(errs, fmt.Errorf("pci address %q: want DDDD:BB:DD.F or BB:DD.F, optionally ending in *", a))
		}
	}
	if s.Model != "" {
		if _, err := path.Match(s.Model, ""); err != nil {
			errs = append(errs, fmt.Errorf("model pattern %q: %w", s.Model, err))
		}
	}
	for _, l := range s.LinkLayers {
		if l != LinkLayerInfiniBand && l != LinkLayerEthernet {
			errs = append(errs, fmt.Errorf("link layer %q: want InfiniBand or Ethernet", l))
		}
	}
	return errors.Join(errs...)
}

func (s Selector) isEmpty() bool {
	return len(s.Kinds) == 0 && len(s.Vendors) == 0 && len(s.DeviceIDs) == 0 && len(s.Drivers) == 0 &&
		len(s.PCIAddresses) == 0 && s.Model == "" && len(s.LinkLayers) == 0
}

// normHexID turns "10DE" or "0x10de" into "0x10de".
func normHexID(s string) (string, bool) {
	h := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "0x")
	if len(h) != 4 {
		return "", false
	}
	if _, err := strconv.ParseUint(h, 16, 16); err != nil {
		return "", false
	}
	return "0x" + h, true
}

// normPCIPattern lower-cases a PCI address pattern and adds the 0000 domain
// to BB:DD.F; it returns "" when the pattern is not an address.
func normPCIPattern(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	prefix, star := strings.CutSuffix(s, "*")
	// BB:DD.F (or a prefix of it, "1b:*") has a two-digit first field.
	if i := strings.IndexByte(prefix, ':'); i == 2 {
		prefix = "0000:" + prefix
	}
	if star {
		if prefix == "" || !isBDFPrefix(prefix) {
			return ""
		}
		return prefix + "*"
	}
	if !isBDF(prefix) {
		return ""
	}
	return prefix
}

// isBDFPrefix reports whether p is a prefix of some PCI address.
func isBDFPrefix(p string) bool {
	const tmpl = "0000:00:00.0"
	if len(p) > len(tmpl) {
		return false
	}
	return isBDF(p + tmpl[len(p):])
}

// Matches reports whether s matches d: every non-empty field must match.
// An empty selector matches nothing.
func (s Selector) Matches(d Device) bool {
	if s.isEmpty() {
		return false
	}
	if len(s.Kinds) > 0 && !slices.Contains(s.Kinds, d.Kind) {
		return false
	}
	if len(s.Vendors) > 0 && !slices.ContainsFunc(s.Vendors, func(v string) bool { n, _ := normHexID(v); return n == d.VendorID }) {
		return false
	}
	if len(s.DeviceIDs) > 0 && !slices.ContainsFunc(s.DeviceIDs, func(v string) bool { n, _ := normHexID(v); return n == d.DeviceID }) {
		return false
	}
	if len(s.Drivers) > 0 && !slices.Contains(s.Drivers, d.Driver) {
		return false
	}
	if len(s.PCIAddresses) > 0 && !slices.ContainsFunc(s.PCIAddresses, func(a string) bool {
		p := normPCIPattern(a)
		if pre, ok := strings.CutSuffix(p, "*"); ok {
			return pre != "" && strings.HasPrefix(d.PCIAddress, pre)
		}
		return p != "" && p == d.PCIAddress
	}) {
		return false
	}
	if s.Model != "" {
		if ok, err := path.Match(s.Model, d.Model); err != nil || !ok {
			return false
		}
	}
	if len(s.LinkLayers) > 0 && (len(d.Ports) == 0 || slices.ContainsFunc(d.Ports, func(p Port) bool { return !slices.Contains(s.LinkLayers, p.LinkLayer) })) {
		return false
	}
	return true
}

// Assign maps resource name to the devices it advertises (Plan, as a
// map).
func (c ResourceConfig) Assign(devs []Device) map[string][]Device {
	out := map[string][]Device{}
	for _, a := range c.Plan(devs) {
		out[a.Name] = a.Devices
	}
	return out
}

// Plan returns the resources c advertises devs under, sorted by name: each
// device goes to the first resource whose selector matches, in the order of
// devs; devices an Exclude selector matches are left out. Unless
// FPGA.Pool, an FPGA goes to the resource's name split by its identity (see
// FPGAConfig). MIG devices follow GPU.MIGStrategy: a selector never sees
// them; they go where their GPU's resource says. Resources that match no
// device are absent.
func (c ResourceConfig) Plan(devs []Device) []Assignment {
	byName := map[string]*Assignment{}
	var names []string
	add := func(name string, replicas int, d Device) {
		a := byName[name]
		if a == nil {
			a = &Assignment{Name: name, Replicas: replicas}
			byName[name] = a
			names = append(names, name)
		}
		a.Devices = append(a.Devices, d)
	}
	migs := map[string][]Device{} // parent GPU UUID -> its MIG devices
	for _, d := range devs {
		if d.Kind == KindMIG {
			migs[d.Attributes["parent_uuid"]] = append(migs[d.Attributes["parent_uuid"]], d)
		}
	}
	strategy := c.GPU.MIGStrategy
	single := map[string]bool{} // resources that get MIG devices under single
	for _, d := range devs {
		if d.Kind == KindMIG || slices.ContainsFunc(c.Exclude, func(s Selector) bool { return s.Matches(d) }) {
			continue
		}
		for _, r := range c.Resources {
			if !r.Selector.Matches(d) {
				continue
			}
			name := r.Name
			switch {
			case d.Kind == KindFPGA && !c.FPGA.Pool:
				name = fpgaResourceName(name, FPGAIdentity(d))
			case d.Kind == KindGPU && d.Attributes["mig_mode"] == "enabled" && strategy == MIGSingle:
				single[name] = true
				for _, m := range migs[d.Attributes["uuid"]] {
					add(name, r.Replicas, m)
				}
				if len(migs[d.Attributes["uuid"]]) == 0 {
					add(name, r.Replicas, d) // caught by CheckMIG below
				}
				name = ""
			case d.Kind == KindGPU && d.Attributes["mig_mode"] == "enabled" && strategy == MIGMixed:
				domain, _, _ := strings.Cut(name, "/")
				for _, m := range migs[d.Attributes["uuid"]] {
					add(domain+"/mig-"+strings.ReplaceAll(m.Attributes["profile"], "+", "."), r.Replicas, m)
				}
				name = ""
			}
			if name != "" {
				add(name, r.Replicas, d)
			}
			break
		}
	}
	slices.Sort(names)
	out := make([]Assignment, 0, len(names))
	for _, n := range names {
		a := *byName[n]
		if single[n] && migSingleProblem(a.Devices) != "" {
			continue
		}
		out = append(out, a)
	}
	return out
}

// migSingleProblem says why devs cannot be one single-strategy resource:
// not all MIG devices, or MIG devices of several profiles; "" when they
// can.
func migSingleProblem(devs []Device) string {
	profiles := map[string]bool{}
	for _, d := range devs {
		if d.Kind != KindMIG {
			return "GPU " + d.ID + " is not in MIG mode or has no MIG devices"
		}
		profiles[d.Attributes["profile"]] = true
	}
	if len(profiles) > 1 {
		ps := slices.Sorted(maps.Keys(profiles))
		return "MIG devices of several profiles (" + strings.Join(ps, ", ") + ")"
	}
	return ""
}

// CheckMIG reports the resources that the single MIG strategy leaves empty
// because their GPUs are not all in MIG mode with one profile, and what to
// do; nil when there are none.
func (c ResourceConfig) CheckMIG(devs []Device) error {
	if c.GPU.MIGStrategy != MIGSingle {
		return nil
	}
	var errs []error
	byName := map[string][]Device{}
	migs := map[string][]Device{}
	for _, d := range devs {
		if d.Kind == KindMIG {
			migs[d.Attributes["parent_uuid"]] = append(migs[d.Attributes["parent_uuid"]], d)
		}
	}
	hasMIG := false
	for _, d := range devs {
		if d.Kind != KindGPU || slices.ContainsFunc(c.Exclude, func(s Selector) bool { return s.Matches(d) }) {
			continue
		}
		for _, r := range c.Resources {
			if r.Selector.Matches(d) {
				if d.Attributes["mig_mode"] == "enabled" && len(migs[d.Attributes["uuid"]]) > 0 {
					hasMIG = true
					byName[r.Name] = append(byName[r.Name], migs[d.Attributes["uuid"]]...)
				} else {
					byName[r.Name] = append(byName[r.Name], d)
				}
				break
			}
		}
	}
	if !hasMIG {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		if p := migSingleProblem(byName[name]); p != "" {
			errs = append(errs, fmt.Errorf("mig strategy single: %s not advertised: %s; put every GPU in MIG mode with one profile, or set gpu.migStrategy: mixed", name, p))
		}
	}
	return errors.Join(errs...)
}
