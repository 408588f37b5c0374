package kubeadm

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// KubeadmAPIVersion is the kubeadm configuration API every config is written in.
const KubeadmAPIVersion = "kubeadm.k8s.io/v1beta4"

// Supported Kubernetes versions: the kubeadm Slipway pins (v1.37) deploys its
// own minor and the one before it.
const (
	MinKubernetesMinor = 36
	MaxKubernetesMinor = 37
)

// DefaultCRISocket is the container runtime socket written into every
// nodeRegistration (containerd's).
const DefaultCRISocket = "unix:///var/run/containerd/containerd.sock"

// DefaultAPIServerPort is the port a control-plane node's API server binds.
const DefaultAPIServerPort = 6443

// CheckKubernetesVersion accepts "v1.M.P" (optionally with a pre-release) for
// a minor M that the pinned kubeadm can deploy.
func CheckKubernetesVersion(v string) error {
	rest, ok := strings.CutPrefix(v, "v")
	parts := strings.SplitN(rest, ".", 3)
	if !ok || len(parts) != 3 || parts[0] != "1" {
		return fmt.Errorf("kubernetes version %q: want v1.MINOR.PATCH, such as v1.%d.2", v, MaxKubernetesMinor)
	}
	minor, err := strconv.Atoi(parts[1])
	patch, _, _ := strings.Cut(parts[2], "-")
	_, perr := strconv.Atoi(patch)
	if err != nil || perr != nil {
		return fmt.Errorf("kubernetes version %q: want v1.MINOR.PATCH, such as v1.%d.2", v, MaxKubernetesMinor)
	}
	if minor < MinKubernetesMinor || minor > MaxKubernetesMinor {
		return fmt.Errorf("kubernetes version %q: kubeadm v1.%d deploys v1.%d.x and v1.%d.x only", v, MaxKubernetesMinor, MinKubernetesMinor, MaxKubernetesMinor)
	}
	return nil
}

// The structs below are the subset of kubeadm.k8s.io/v1beta4 Slipway writes.
// They are declared here rather than imported because the kubeadm API lives
// in k8s.io/kubernetes, which the product module does not depend on; the
// control-plane tests check every rendered config with `kubeadm config validate`.

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

type arg struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

type nodeRegistration struct {
	Name             string  `json:"name"`
	CRISocket        string  `json:"criSocket"`
	Taints           []taint `json:"taints,omitempty"`
	KubeletExtraArgs []arg   `json:"kubeletExtraArgs,omitempty"`
}

type apiEndpoint struct {
	AdvertiseAddress string `json:"advertiseAddress"`
	BindPort         int    `json:"bindPort"`
}

type bootstrapToken struct {
	Token       string   `json:"token"`
	Description string   `json:"description"`
	TTL         string   `json:"ttl"`
	Usages      []string `json:"usages"`
	Groups      []string `json:"groups"`
}

type initConfiguration struct {
	typeMeta         `json:",inline"`
	BootstrapTokens  []bootstrapToken `json:"bootstrapTokens"`
	NodeRegistration nodeRegistration `json:"nodeRegistration"`
	LocalAPIEndpoint apiEndpoint      `json:"localAPIEndpoint"`
	CertificateKey   string           `json:"certificateKey"`
	Timeouts         *timeouts        `json:"timeouts,omitempty"`
}

type networking struct {
	PodSubnet     string `json:"podSubnet"`
	ServiceSubnet string `json:"serviceSubnet"`
	DNSDomain     string `json:"dnsDomain"`
}

type clusterConfiguration struct {
	typeMeta             `json:",inline"`
	ClusterName          string     `json:"clusterName"`
	KubernetesVersion    string     `json:"kubernetesVersion"`
	ControlPlaneEndpoint string     `json:"controlPlaneEndpoint"`
	Networking           networking `json:"networking"`
}

type bootstrapTokenDiscovery struct {
	Token             string   `json:"token"`
	APIServerEndpoint string   `json:"apiServerEndpoint"`
	CACertHashes      []string `json:"caCertHashes"`
}

type discovery struct {
	BootstrapToken bootstrapTokenDiscovery `json:"bootstrapToken"`
}

type joinControlPlane struct {
	LocalAPIEndpoint apiEndpoint `json:"localAPIEndpoint"`
	CertificateKey   string      `json:"certificateKey"`
}

type timeouts struct {
	ControlPlaneComponentHealthCheck string `json:"controlPlaneComponentHealthCheck,omitempty"`
	KubeletHealthCheck               string `json:"kubeletHealthCheck,omitempty"`
	KubernetesAPICall                string `json:"kubernetesAPICall,omitempty"`
	EtcdAPICall                      string `json:"etcdAPICall,omitempty"`
	Discovery                        string `json:"discovery,omitempty"`
	TLSBootstrap                     string `json:"tlsBootstrap,omitempty"`
}

// SlowStepTimeout bounds kubeadm's waits for components to come up (API
// server, kubelet, TLS bootstrap), 4-5 minutes by default. A server with
// slow firmware or an emulated lab machine can need longer; Slipway's own
// --join-timeout (15m) still bounds the whole join.
const SlowStepTimeout = 10 * time.Minute

// SlowAPICallTimeout bounds each of kubeadm's calls to the API server and
// etcd (kubeadm's defaults: 1 and 2 minutes).
const SlowAPICallTimeout = 5 * time.Minute

func slowTimeouts(discovery time.Duration) *timeouts {
	if discovery <= 0 {
		discovery = SlowStepTimeout
	}
	return &timeouts{
		ControlPlaneComponentHealthCheck: SlowStepTimeout.String(),
		KubeletHealthCheck:               SlowStepTimeout.String(),
		// kubeadm's 1m (2m for etcd) per API call ran out in the lab while
		// a young API server answered slowly ("client rate limiter Wait
		// returned an error ... would exceed context deadline" creating the
		// admin ClusterRoleBinding).
		KubernetesAPICall: SlowAPICallTimeout.String(),
		EtcdAPICall:       SlowAPICallTimeout.String(),
		Discovery:         discovery.String(),
		TLSBootstrap:      SlowStepTimeout.String(),
	}
}

type joinConfiguration struct {
	typeMeta         `json:",inline"`
	NodeRegistration nodeRegistration  `json:"nodeRegistration"`
	Discovery        discovery         `json:"discovery"`
	ControlPlane     *joinControlPlane `json:"controlPlane,omitempty"`
	Timeouts         *timeouts         `json:"timeouts,omitempty"`
}

// JoinOptions tune a JoinConfiguration.
type JoinOptions struct {
	// DiscoveryTimeout bounds kubeadm's discovery; 0 means SlowStepTimeout.
	DiscoveryTimeout time.Duration
}

// InitConfig renders the first control-plane node's kubeadm configuration:
// an InitConfiguration carrying tok (so kubeadm does not create its own 24 h
// token) and the certificate key for upload-certs, then the
// ClusterConfiguration from the inventory.
func InitConfig(c inventory.Cluster, n inventory.Node, tok Token, certificateKey string) ([]byte, error) {
	if n.Role != inventory.RoleControlPlane {
		return nil, fmt.Errorf("render init configuration for %s: node role is %s, want %s", n.Name, n.Role, inventory.RoleControlPlane)
	}
	nr, err := registration(n)
	if err != nil {
		return nil, err
	}
	if err := checkAdvertise(n); err != nil {
		return nil, err
	}
	if err := CheckKubernetesVersion(c.KubernetesVersion); err != nil {
		return nil, fmt.Errorf("render init configuration for %s: %w", n.Name, err)
	}
	if err := checkSubnets(c); err != nil {
		return nil, fmt.Errorf("render init configuration for %s: %w", n.Name, err)
	}
	if certificateKey == "" {
		return nil, fmt.Errorf("render init configuration for %s: no certificate key", n.Name)
	}
	if tok.TTL <= 0 {
		return nil, fmt.Errorf("render init configuration for %s: token %s has no ttl", n.Name, tok)
	}
	ic := initConfiguration{
		typeMeta: typeMeta{KubeadmAPIVersion, "InitConfiguration"},
		BootstrapTokens: []bootstrapToken{{
			Token:       tok.Value(),
			Description: tok.Description(),
			TTL:         tok.TTL.String(),
			Usages:      []string{"signing", "authentication"},
			Groups:      []string{NodeTokenGroup},
		}},
		NodeRegistration: nr,
		LocalAPIEndpoint: apiEndpoint{AdvertiseAddress: n.IP.String(), BindPort: DefaultAPIServerPort},
		CertificateKey:   certificateKey,
		Timeouts:         slowTimeouts(0),
	}
	cc := clusterConfiguration{
		typeMeta:             typeMeta{KubeadmAPIVersion, "ClusterConfiguration"},
		ClusterName:          c.Name,
		KubernetesVersion:    c.KubernetesVersion,
		ControlPlaneEndpoint: endpoint(c),
		Networking: networking{
			PodSubnet:     c.PodSubnet.String(),
			ServiceSubnet: c.ServiceSubnet.String(),
			DNSDomain:     c.DNSDomain,
		},
	}
	return documents(ic, cc)
}

// JoinConfig renders a JoinConfiguration for n: discovery through tok with
// the CA pinned by caHash (never unsafeSkipCAVerification), and for a
// control-plane node the certificate key to download the uploaded
// certificates. Workers never receive the certificate key.
func JoinConfig(c inventory.Cluster, n inventory.Node, tok Token, caHash, certificateKey string, opts JoinOptions) ([]byte, error) {
	nr, err := registration(n)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(caHash, "sha256:") {
		return nil, fmt.Errorf("render join configuration for %s: ca hash %q is not sha256:<hex>", n.Name, caHash)
	}
	if err := CheckKubernetesVersion(c.KubernetesVersion); err != nil {
		return nil, fmt.Errorf("render join configuration for %s: %w", n.Name, err)
	}
	jc := joinConfiguration{
		typeMeta:         typeMeta{KubeadmAPIVersion, "JoinConfiguration"},
		NodeRegistration: nr,
		Discovery: discovery{
			BootstrapToken: bootstrapTokenDiscovery{
				Token:             tok.Value(),
				APIServerEndpoint: endpoint(c),
				CACertHashes:      []string{caHash},
			},
		},
	}
	jc.Timeouts = slowTimeouts(opts.DiscoveryTimeout)
	switch n.Role {
	case inventory.RoleControlPlane:
		if certificateKey == "" {
			return nil, fmt.Errorf("render join configuration for control-plane node %s: no certificate key", n.Name)
		}
		if err := checkAdvertise(n); err != nil {
			return nil, err
		}
		jc.ControlPlane = &joinControlPlane{
			LocalAPIEndpoint: apiEndpoint{AdvertiseAddress: n.IP.String(), BindPort: DefaultAPIServerPort},
			CertificateKey:   certificateKey,
		}
	case inventory.RoleWorker:
	default:
		return nil, fmt.Errorf("render join configuration for %s: unknown role %q", n.Name, n.Role)
	}
	return documents(jc)
}

// endpoint returns host:port of the control-plane endpoint, port 6443 when
// the inventory gives none.
func endpoint(c inventory.Cluster) string {
	if _, _, err := net.SplitHostPort(c.ControlPlaneEndpoint); err == nil {
		return c.ControlPlaneEndpoint
	}
	return net.JoinHostPort(strings.Trim(c.ControlPlaneEndpoint, "[]"), strconv.Itoa(DefaultAPIServerPort))
}

// checkAdvertise refuses an API server address kubeadm cannot advertise.
func checkAdvertise(n inventory.Node) error {
	if n.IP.IsLoopback() || n.IP.IsUnspecified() || n.IP.IsMulticast() {
		return fmt.Errorf("render kubeadm configuration for control-plane node %s: its IP %s cannot be the API server's advertise address; give the node its address on the provisioning network", n.Name, n.IP)
	}
	return nil
}

func checkSubnets(c inventory.Cluster) error {
	if !c.PodSubnet.IsValid() || !c.ServiceSubnet.IsValid() {
		return errors.New("pod and service subnets must both be set")
	}
	if c.PodSubnet.Overlaps(c.ServiceSubnet) {
		return fmt.Errorf("pod subnet %s overlaps service subnet %s", c.PodSubnet, c.ServiceSubnet)
	}
	return nil
}

// registration builds the nodeRegistration: node name, labels (its own and
// its topology's) through the kubelet's --node-labels, the node IP, and the
// inventory's taints (none listed keeps kubeadm's default).
func registration(n inventory.Node) (nodeRegistration, error) {
	if n.Name == "" {
		return nodeRegistration{}, errors.New("render kubeadm configuration: node has no name")
	}
	if !n.IP.IsValid() {
		return nodeRegistration{}, fmt.Errorf("render kubeadm configuration for %s: node has no IP", n.Name)
	}
	// No taints in the inventory: kubeadm's default (control-plane nodes
	// get node-role.kubernetes.io/control-plane:NoSchedule, workers none).
	// Listed taints replace that default, as in kubeadm.
	nr := nodeRegistration{Name: n.Name, CRISocket: DefaultCRISocket}
	for _, t := range n.Taints {
		nr.Taints = append(nr.Taints, taint{Key: t.Key, Value: t.Value, Effect: t.Effect})
	}
	// Topology labels (topology.slipway.dev/rack, ...) go in with the
	// node's own, so a scheduler sees them from the node's first moment.
	labels := n.NodeLabels()
	if len(labels) > 0 {
		keys := make([]string, 0, len(labels))
		for k := range labels {
			// The inventory refuses these at load; an inventory built
			// by hand is checked here, before any node is touched.
			if err := inventory.KubeletMaySet(k); err != nil {
				return nodeRegistration{}, fmt.Errorf("render kubeadm configuration for %s: %w", n.Name, err)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		kv := make([]string, 0, len(keys))
		for _, k := range keys {
			kv = append(kv, k+"="+labels[k])
		}
		nr.KubeletExtraArgs = append(nr.KubeletExtraArgs, arg{"node-labels", strings.Join(kv, ",")})
	}
	nr.KubeletExtraArgs = append(nr.KubeletExtraArgs, arg{"node-ip", n.IP.String()})
	return nr, nil
}

func documents(docs ...any) ([]byte, error) {
	var buf bytes.Buffer
	for i, d := range docs {
		b, err := yaml.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("render kubeadm configuration: %w", err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}
