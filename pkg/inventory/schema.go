package inventory

// The raw schema: what a file may say, as written. Scalars stay strings
// here and are parsed during resolution, where their positions are known,
// so that a wrong value is reported with its file, line and column.

type rawDoc struct {
	APIVersion string                 `yaml:"apiVersion"`
	Kind       string                 `yaml:"kind"`
	Cluster    *rawCluster            `yaml:"cluster"`
	Network    *rawNetwork            `yaml:"network"`
	Profiles   map[string]*rawProfile `yaml:"profiles"`
	Nodes      []rawNode              `yaml:"nodes"`
	Addons     []rawAddon             `yaml:"addons"`
}

type rawCluster struct {
	Name                 string `yaml:"name"`
	KubernetesVersion    string `yaml:"kubernetesVersion"`
	ControlPlaneEndpoint string `yaml:"controlPlaneEndpoint"`
	PodSubnet            string `yaml:"podSubnet"`
	ServiceSubnet        string `yaml:"serviceSubnet"`
	DNSDomain            string `yaml:"dnsDomain"`
}

type rawNetwork struct {
	Provisioner          *rawProvisioner `yaml:"provisioner"`
	Subnet               string          `yaml:"subnet"`
	Gateway              string          `yaml:"gateway"`
	DNSServers           []string        `yaml:"dnsServers"`
	DomainName           string          `yaml:"domainName"`
	DHCP                 *rawDHCP        `yaml:"dhcp"`
	RouterAdvertisements *bool           `yaml:"routerAdvertisements"`
}

type rawProvisioner struct {
	Interface string `yaml:"interface"`
	Address   string `yaml:"address"`
	HTTPPort  *int   `yaml:"httpPort"`
}

type rawDHCP struct {
	Mode      string `yaml:"mode"`
	LeaseTime string `yaml:"leaseTime"`
}

type rawProfile struct {
	Role   string            `yaml:"role"`
	Boot   *rawBoot          `yaml:"boot"`
	Labels map[string]string `yaml:"labels"`
	Taints []rawTaint        `yaml:"taints"`
	BMC    *rawBMC           `yaml:"bmc"`
}

type rawBoot struct {
	Firmware   string `yaml:"firmware"`
	Kernel     string `yaml:"kernel"`
	Initrd     string `yaml:"initrd"`
	KernelArgs string `yaml:"kernelArgs"`
}

type rawTaint struct {
	Key    string `yaml:"key"`
	Value  string `yaml:"value"`
	Effect string `yaml:"effect"`
}

type rawBMC struct {
	URL                string `yaml:"url"`
	Username           string `yaml:"username"`
	Password           string `yaml:"password"`
	CAFile             string `yaml:"caFile"`
	InsecureSkipVerify *bool  `yaml:"insecureSkipVerify"`
}

type rawNIC struct {
	Name string `yaml:"name"`
	MAC  string `yaml:"mac"`
	IP   string `yaml:"ip"`
}

type rawNode struct {
	Name     string            `yaml:"name"`
	Profile  string            `yaml:"profile"`
	Role     string            `yaml:"role"`
	Rack     string            `yaml:"rack"`
	Slot     *int              `yaml:"slot"`
	Serial   string            `yaml:"serial"`
	MAC      string            `yaml:"mac"`
	MACs     []string          `yaml:"macs"`
	IP       string            `yaml:"ip"`
	NICs     []rawNIC          `yaml:"nics"`
	BMC      *rawBMC           `yaml:"bmc"`
	Boot     *rawBoot          `yaml:"boot"`
	Labels   map[string]string `yaml:"labels"`
	Taints   []rawTaint        `yaml:"taints"`
	Disabled *bool             `yaml:"disabled"`
}
