package kubeadm

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"path"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/phonehome"
)

// Kind says how a node enters the cluster. The values are those of
// provision.JoinKind.
type Kind string

// Join kinds.
const (
	// KindInit is the first control-plane node: kubeadm init.
	KindInit Kind = "init"
	// KindControlPlane is a further control-plane node: kubeadm join with the
	// uploaded certificates.
	KindControlPlane Kind = "join-control-plane"
	// KindWorker is a worker: kubeadm join with a bootstrap token.
	KindWorker Kind = "join-worker"
)

// Format is the form a node configuration is served in.
type Format string

// Node configuration formats.
const (
	// FormatCloudConfig is a cloud-init "#cloud-config" document (default).
	FormatCloudConfig Format = "cloud-config"
	// FormatScript is a POSIX shell script for stateless images without cloud-init.
	FormatScript Format = "script"
)

// ParseFormat accepts "cloud-config" and "script"; "" is cloud-config.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case "", FormatCloudConfig:
		return FormatCloudConfig, nil
	case FormatScript:
		return FormatScript, nil
	}
	return "", fmt.Errorf("node configuration format %q: want cloud-config or script", s)
}

// Install says what a node installs and enables before running kubeadm.
// The zero Install installs nothing and only starts the services the image
// already has (containerd, kubelet).
type Install struct {
	// Packages are package names per OS family: "debian" (apt-get) and
	// "rhel" (dnf). The node picks its family from /etc/os-release.
	Packages map[string][]string `json:"packages,omitempty"`
	// Services are enabled and started in order (default containerd, kubelet).
	Services []string `json:"services,omitempty"`
}

// DefaultInstall is the package set for nodes whose image lacks the runtime
// and kubelet. The Kubernetes packages come from pkgs.k8s.io, which the
// image's package sources must already list.
func DefaultInstall() Install {
	return Install{Packages: map[string][]string{
		"debian": {"containerd", "kubelet", "kubeadm"},
		"rhel":   {"containerd", "kubelet", "kubeadm"},
	}}
}

// Paths on the node.
const (
	// NodeKubeadmConfig is where the kubeadm configuration is written (0600);
	// it holds the token and is removed once kubeadm has run.
	NodeKubeadmConfig = "/etc/kubernetes/slipway/kubeadm.yaml"
	// NodePKIDir is kubeadm's certificate directory.
	NodePKIDir = "/etc/kubernetes/pki"
	// NodeJoinScript is where the cloud-config form writes the steps it runs.
	NodeJoinScript = "/var/lib/slipway/join.sh"
)

// NodeConfig is everything one node receives.
type NodeConfig struct {
	// Node is the node the configuration is for.
	Node inventory.Node
	// Kind is how the node enters the cluster.
	Kind Kind
	// Kubeadm is the kubeadm configuration (InitConfiguration and
	// ClusterConfiguration, or JoinConfiguration).
	Kubeadm []byte
	// PKIFiles are written under /etc/kubernetes/pki; only the first
	// control-plane node receives them.
	PKIFiles []File
	// Install is what the node installs and enables first.
	Install Install
	// PhoneHomeURL is the boot server's base URL; each step is POSTed to
	// PhoneHomeURL/phone-home/NODE. Empty: no reports.
	PhoneHomeURL string
	// PodNetwork is PodNetworkFlat to start the node image's flat pod
	// network (images/node, pkg/flatnet); empty leaves the pod network to
	// the inventory's add-ons.
	PodNetwork string
}

// PodNetworkFlat is the built-in pod network of the Slipway node image for
// a flat provisioning network: bridge + host-local on the Node's pod CIDR,
// routes to every other node's pod CIDR. It is used when the inventory lists
// no add-ons (whose first must be the pod network).
const PodNetworkFlat = "flat"

// Render returns the configuration in format f.
func (nc NodeConfig) Render(f Format) ([]byte, error) {
	switch f {
	case "", FormatCloudConfig:
		return nc.CloudConfig()
	case FormatScript:
		return nc.Script(), nil
	}
	return nil, fmt.Errorf("render node configuration for %s: unknown format %q", nc.Node.Name, f)
}

type cloudFile struct {
	Path        string `json:"path"`
	Owner       string `json:"owner"`
	Permissions string `json:"permissions"`
	Encoding    string `json:"encoding,omitempty"`
	Content     string `json:"content"`
}

type cloudConfig struct {
	Hostname   string      `json:"hostname"`
	FQDN       string      `json:"fqdn,omitempty"`
	WriteFiles []cloudFile `json:"write_files"`
	RunCmd     [][]string  `json:"runcmd"`
}

// CloudConfig renders the "#cloud-config" form: write_files puts the
// kubeadm configuration, the PKI files (first control plane only) and the
// join steps in place; runcmd runs the steps.
func (nc NodeConfig) CloudConfig() ([]byte, error) {
	cc := cloudConfig{Hostname: nc.Node.Name}
	for _, f := range nc.files() {
		cc.WriteFiles = append(cc.WriteFiles, cloudFile{
			Path: f.path, Owner: "root:root", Permissions: fmt.Sprintf("%04o", f.mode), Content: string(f.data),
		})
	}
	cc.WriteFiles = append(cc.WriteFiles, cloudFile{
		Path: NodeJoinScript, Owner: "root:root", Permissions: "0700", Content: string(nc.steps()),
	})
	cc.RunCmd = [][]string{{"/bin/sh", NodeJoinScript}}
	b, err := yaml.Marshal(cc)
	if err != nil {
		return nil, fmt.Errorf("render cloud-config for %s: %w", nc.Node.Name, err)
	}
	return append([]byte("#cloud-config\n# slipway node configuration for "+nc.Node.Name+" ("+string(nc.Kind)+")\n"), b...), nil
}

// Script renders the plain shell form: it writes the same files, then runs
// the same steps.
func (nc NodeConfig) Script() []byte {
	var b bytes.Buffer
	b.WriteString("#!/bin/sh\n# slipway node configuration for " + nc.Node.Name + " (" + string(nc.Kind) + ")\nset -eu\numask 077\n")
	for _, f := range nc.files() {
		fmt.Fprintf(&b, "mkdir -p %s\n", shQuote(path.Dir(f.path)))
		// Text goes in a quoted here-document, readable for review; anything
		// that could end the here-document early goes base64 encoded.
		if text := string(f.data); strings.HasSuffix(text, "\n") && !strings.Contains(text, heredocEnd) {
			fmt.Fprintf(&b, "cat > %s <<'%s'\n%s%s\n", shQuote(f.path), heredocEnd, text, heredocEnd)
		} else {
			fmt.Fprintf(&b, "base64 -d > %s <<'%s'\n%s\n%s\n",
				shQuote(f.path), heredocEnd, wrap(base64.StdEncoding.EncodeToString(f.data), 76), heredocEnd)
		}
		fmt.Fprintf(&b, "chmod %04o %s\n", f.mode, shQuote(f.path))
	}
	body := nc.steps()
	// The steps are a script of their own; drop its shebang and options.
	_, rest, _ := strings.Cut(string(body), "# steps\n")
	b.WriteString(rest)
	return b.Bytes()
}

const heredocEnd = "SLIPWAY_EOF"

type nodeFile struct {
	path string
	mode uint32
	data []byte
}

func (nc NodeConfig) files() []nodeFile {
	out := []nodeFile{{NodeKubeadmConfig, 0o600, nc.Kubeadm}}
	for _, f := range nc.PKIFiles {
		mode := uint32(0o644)
		if f.Secret {
			mode = 0o600
		}
		out = append(out, nodeFile{path.Join(NodePKIDir, f.Path), mode, f.Data})
	}
	return out
}

// steps returns the join script: install, enable services, kubeadm,
// remove the configuration, each step reported to the phone-home endpoint.
func (nc NodeConfig) steps() []byte {
	var b bytes.Buffer
	b.WriteString("#!/bin/sh\nset -eu\n# steps\n")
	url := ""
	if nc.PhoneHomeURL != "" {
		url = phonehome.URL(nc.PhoneHomeURL, nc.Node.Name)
	}
	fmt.Fprintf(&b, "PHONE_HOME=%s\n", shQuote(url))
	b.WriteString(`# report STEP STATUS tells the provisioner how a step went. It retries (the
# boot server may be restarting), and a report that cannot be delivered is
# said on the console, stderr and the journal, never dropped in silence.
# busybox 1.35's wget crashes with -T (exit 139): its timeout comes from
# timeout(1) instead.
report() {
  echo "slipway: step $1: $2" >&2
  [ -n "$PHONE_HOME" ] || return 0
  tries=0
  while [ "$tries" -lt 5 ]; do
    tries=$((tries + 1))
    if command -v curl >/dev/null 2>&1; then
      curl -fsS -m 10 -X POST --data-binary "` + phonehome.ShellBody + `" "$PHONE_HOME" >/dev/null && return 0
    elif command -v wget >/dev/null 2>&1; then
      timeout 15 wget -q -O /dev/null --post-data "` + phonehome.ShellBody + `" "$PHONE_HOME" && return 0
    else
      echo "slipway: neither curl nor wget on this node" >&2
      break
    fi
    sleep "$tries"
  done
  msg="slipway: REPORT LOST: step $1 status $2 could not be sent to $PHONE_HOME after $tries tries"
  echo "$msg" >&2
  { echo "$msg" >/dev/console; } 2>/dev/null || true
  command -v logger >/dev/null 2>&1 && logger -t slipway -p daemon.err "$msg"
  return 0
}
step() {
  name=$1
  shift
  report "$name" started
  if "$@"; then
    report "$name" ok
  else
    rc=$?
    report "$name" "failed rc=$rc"
    exit "$rc"
  fi
}
`)
	if pk := nc.Install.Packages; len(pk) > 0 {
		b.WriteString("install_packages() {\n  . /etc/os-release\n  case \" ${ID:-} ${ID_LIKE:-} \" in\n")
		for _, fam := range sortedKeys(pk) {
			names := make([]string, 0, len(pk[fam]))
			for _, p := range pk[fam] {
				names = append(names, shQuote(p))
			}
			list := strings.Join(names, " ")
			switch fam {
			case "debian":
				fmt.Fprintf(&b, "  *\" debian \"*|*\" ubuntu \"*)\n    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q %s ;;\n", list)
			case "rhel":
				fmt.Fprintf(&b, "  *\" rhel \"*|*\" fedora \"*|*\" centos \"*)\n    dnf install -y -q %s ;;\n", list)
			}
		}
		b.WriteString("  *) echo \"slipway: no package list for OS ${ID:-unknown}\" >&2; return 1 ;;\n  esac\n}\n")
		b.WriteString("step install-packages install_packages\n")
	}
	services := nc.Install.Services
	if len(services) == 0 {
		services = []string{"containerd", "kubelet"}
	}
	for _, s := range services {
		fmt.Fprintf(&b, "step enable-%s systemctl enable --now %s\n", s, shQuote(s))
	}
	if nc.PodNetwork == PodNetworkFlat {
		// The node image's agent waits for the kubelet's credentials, then
		// writes the CNI configuration from the Node's pod CIDR.
		b.WriteString("step pod-network systemctl enable --now slipway-flatnet.service\n")
	}
	switch nc.Kind {
	case KindInit:
		fmt.Fprintf(&b, "step %s kubeadm init --config %s --upload-certs\n", phonehome.StepKubeadmInit, NodeKubeadmConfig)
	default:
		fmt.Fprintf(&b, "step %s kubeadm join --config %s\n", phonehome.StepKubeadmJoin, NodeKubeadmConfig)
	}
	// The configuration holds the token (and on control planes the
	// certificate key); it is of no use once kubeadm has run.
	fmt.Fprintf(&b, "step remove-config rm -f %s\n", NodeKubeadmConfig)
	fmt.Fprintf(&b, "report %s %s\n", phonehome.StepDone, phonehome.OK)
	return b.Bytes()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// shQuote quotes s for a POSIX shell.
func shQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func wrap(s string, n int) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n])
		b.WriteByte('\n')
		s = s[n:]
	}
	b.WriteString(s)
	return b.String()
}
