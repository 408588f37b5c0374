package inventory

// The raw schema: what a file may say, as written. Scalars stay strings
// here and are parsed during resolution, where their positions are known,
// so that a wrong value is reported with its file, line and column.
//
// The same structs are written back by EncodeYAML and EncodeJSON (inventory
// show), so what the provisioner prints is an inventory it reads again.

type rawDoc struct {
	APIVersion string                 `yaml:"apiVersion" json:"apiVersion"`
	Kind       string                 `yaml:"kind" json:"kind"`
	Cluster    *rawCluster            `yaml:"cluster,omitempty" json:"cluster,omitempty"`
	Network    *rawNetwork            `yaml:"network,omitempty" json:"network,omitempty"`
	Networks   []rawRoutedNetwork     `yaml:"networks,omitempty" json:"networks,omitempty"`
	Profiles   map[string]*rawProfile `yaml:"profiles,omitempty" json:"profiles,omitempty"`
	Nodes      []rawNode              `yaml:"nodes,omitempty" json:"nodes,omitempty"`
	Addons     []rawAddon             `yaml:"addons,omitempty" json:"addons,omitempty"`
}

type rawCluster struct {
	Name                 string `yaml:"name,omitempty" json:"name,omitempty"`
	KubernetesVersion    string `yaml:"kubernetesVersion,omitempty" json:"kubernetesVersion,omitempty"`
	ControlPlaneEndpoint string `yaml:"controlPlaneEndpoint,omitempty" json:"controlPlaneEndpoint,omitempty"`
	PodSubnet            string `yaml:"podSubnet,omitempty" json:"podSubnet,omitempty"`
	ServiceSubnet        string `yaml:"serviceSubnet,omitempty" json:"serviceSubnet,omitempty"`
	DNSDomain            string `yaml:"dnsDomain,omitempty" json:"dnsDomain,omitempty"`
}

type rawNetwork struct {
	Name                 string          `yaml:"name,omitempty" json:"name,omitempty"`
	Provisioner          *rawProvisioner `yaml:"provisioner,omitempty" json:"provisioner,omitempty"`
	Subnet               string          `yaml:"subnet,omitempty" json:"subnet,omitempty"`
	Gateway              string          `yaml:"gateway,omitempty" json:"gateway,omitempty"`
	DNSServers           []string        `yaml:"dnsServers,omitempty" json:"dnsServers,omitempty"`
	DomainName           string          `yaml:"domainName,omitempty" json:"domainName,omitempty"`
	DHCP                 *rawDHCP        `yaml:"dhcp,omitempty" json:"dhcp,omitempty"`
	RouterAdvertisements *bool           `yaml:"routerAdvertisements,omitempty" json:"routerAdvertisements,omitempty"`
}

// rawRoutedNetwork is one entry of networks: a provisioning subnet the
// provisioner reaches through a router, whose DHCP requests arrive through
// relays.
type rawRoutedNetwork struct {
	Name               string   `yaml:"name,omitempty" json:"name,omitempty"`
	Subnet             string   `yaml:"subnet,omitempty" json:"subnet,omitempty"`
	Gateway            string   `yaml:"gateway,omitempty" json:"gateway,omitempty"`
	DNSServers         []string `yaml:"dnsServers,omitempty" json:"dnsServers,omitempty"`
	DomainName         string   `yaml:"domainName,omitempty" json:"domainName,omitempty"`
	Relays             []string `yaml:"relays,omitempty" json:"relays,omitempty"`
	ProvisionerAddress string   `yaml:"provisionerAddress,omitempty" json:"provisionerAddress,omitempty"`
}

type rawProvisioner struct {
	Interface string `yaml:"interface,omitempty" json:"interface,omitempty"`
	Address   string `yaml:"address,omitempty" json:"address,omitempty"`
	HTTPPort  *int   `yaml:"httpPort,omitempty" json:"httpPort,omitempty"`
}

type rawDHCP struct {
	Mode      string `yaml:"mode,omitempty" json:"mode,omitempty"`
	LeaseTime string `yaml:"leaseTime,omitempty" json:"leaseTime,omitempty"`
}

type rawProfile struct {
	Role     string            `yaml:"role,omitempty" json:"role,omitempty"`
	Boot     *rawBoot          `yaml:"boot,omitempty" json:"boot,omitempty"`
	Labels   map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	Topology orderedMap        `yaml:"topology,omitempty" json:"topology,omitempty"`
	Taints   []rawTaint        `yaml:"taints,omitempty" json:"taints,omitempty"`
	BMC      *rawBMC           `yaml:"bmc,omitempty" json:"bmc,omitempty"`
}

type rawBoot struct {
	Firmware     string `yaml:"firmware,omitempty" json:"firmware,omitempty"`
	Kernel       string `yaml:"kernel,omitempty" json:"kernel,omitempty"`
	Initrd       string `yaml:"initrd,omitempty" json:"initrd,omitempty"`
	KernelArgs   string `yaml:"kernelArgs,omitempty" json:"kernelArgs,omitempty"`
	Method       string `yaml:"method,omitempty" json:"method,omitempty"`
	ConfigFormat string `yaml:"configFormat,omitempty" json:"configFormat,omitempty"`
}

type rawTaint struct {
	Key    string `yaml:"key" json:"key"`
	Value  string `yaml:"value,omitempty" json:"value,omitempty"`
	Effect string `yaml:"effect" json:"effect"`
}

type rawBMC struct {
	URL                string `yaml:"url,omitempty" json:"url,omitempty"`
	Username           string `yaml:"username,omitempty" json:"username,omitempty"`
	Password           string `yaml:"password,omitempty" json:"password,omitempty"`
	CAFile             string `yaml:"caFile,omitempty" json:"caFile,omitempty"`
	InsecureSkipVerify *bool  `yaml:"insecureSkipVerify,omitempty" json:"insecureSkipVerify,omitempty"`
}

type rawNIC struct {
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	MAC  string `yaml:"mac,omitempty" json:"mac,omitempty"`
	IP   string `yaml:"ip,omitempty" json:"ip,omitempty"`
}

type rawNode struct {
	Name     string            `yaml:"name" json:"name"`
	Profile  string            `yaml:"profile,omitempty" json:"profile,omitempty"`
	Role     string            `yaml:"role,omitempty" json:"role,omitempty"`
	Rack     string            `yaml:"rack,omitempty" json:"rack,omitempty"`
	Slot     *int              `yaml:"slot,omitempty" json:"slot,omitempty"`
	Serial   string            `yaml:"serial,omitempty" json:"serial,omitempty"`
	Topology orderedMap        `yaml:"topology,omitempty" json:"topology,omitempty"`
	Network  string            `yaml:"network,omitempty" json:"network,omitempty"`
	MAC      string            `yaml:"mac,omitempty" json:"mac,omitempty"`
	MACs     []string          `yaml:"macs,omitempty" json:"macs,omitempty"`
	IP       string            `yaml:"ip,omitempty" json:"ip,omitempty"`
	NICs     []rawNIC          `yaml:"nics,omitempty" json:"nics,omitempty"`
	BMC      *rawBMC           `yaml:"bmc,omitempty" json:"bmc,omitempty"`
	Boot     *rawBoot          `yaml:"boot,omitempty" json:"boot,omitempty"`
	Labels   map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	Taints   []rawTaint        `yaml:"taints,omitempty" json:"taints,omitempty"`
	Disabled *bool             `yaml:"disabled,omitempty" json:"disabled,omitempty"`
}
