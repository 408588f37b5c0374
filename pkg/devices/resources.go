package devices

import (
	"errors"
	"time"
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
)

// DefaultIgnoredXIDs are the application-caused XIDs that do not mark a GPU
// unhealthy unless configured otherwise: 13 (graphics engine exception), 31
// (MMU fault), 43 (reset channel), 45 (preemptive cleanup), 68 (video
// processor exception) and 109 (context switch timeout).
var defaultIgnoredXIDs = []uint64{13, 31, 43, 45, 68, 109}

// DefaultIgnoredXIDs returns a fresh copy of the XIDs ignored by default.
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
	// Health configures the health monitor.
	Health HealthConfig `yaml:"health"`
}

// Resource maps the devices a selector matches to one resource name.
type Resource struct {
	// Name is the extended resource name, "vendor.domain/name".
	Name string `yaml:"name"`
	// Selector picks the devices.
	Selector Selector `yaml:"selector"`
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
	// LinkLayers are HCA link layers, "InfiniBand" or "Ethernet"; an HCA
	// matches when any port has one of them.
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

// Duration is a time.Duration written as a Go duration string ("90s").
type Duration struct{ time.Duration }

// DefaultConfig returns the config used with no file: every GPU as
// nvidia.com/gpu, every HCA as slipway.dev/hca, every FPGA as
// slipway.dev/fpga, default health settings.
func DefaultConfig() ResourceConfig {
	return ResourceConfig{
		APIVersion: ConfigAPIVersion,
		Kind:       ConfigKind,
		Resources: []Resource{
			{Name: ResourceGPU, Selector: Selector{Kinds: []Kind{KindGPU}}},
			{Name: ResourceHCA, Selector: Selector{Kinds: []Kind{KindHCA}}},
			{Name: ResourceFPGA, Selector: Selector{Kinds: []Kind{KindFPGA}}},
		},
	}
}

// LoadConfig reads, strictly decodes (unknown fields are errors with file and
// line), defaults and validates the config file at path.
func LoadConfig(path string) (ResourceConfig, error) {
	return ResourceConfig{}, errors.New("load device plugin config: not implemented yet")
}

// Matches reports whether s matches d.
func (s Selector) Matches(d Device) bool {
	return false
}

// Assign maps resource name to the devices it advertises, each device under
// the first matching resource, in the order of devs. Resources with no
// devices are absent.
func (c ResourceConfig) Assign(devs []Device) map[string][]Device {
	return nil
}
