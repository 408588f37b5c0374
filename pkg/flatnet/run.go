package flatnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Config configures Run.
type Config struct {
	// NodeName is this node's Kubernetes name (required).
	NodeName string
	// Kubeconfig is the kubelet's kubeconfig; Run waits until it exists
	// (kubeadm writes it during the join).
	Kubeconfig string
	// AdminKubeconfig is kubeadm's admin kubeconfig on control-plane nodes
	// (default /etc/kubernetes/admin.conf); when it exists, Run creates the
	// RBAC that lets kubelets list Nodes (EnsureRBAC).
	AdminKubeconfig string
	// CNIDir is where the conflist is written (default /etc/cni/net.d).
	CNIDir string
	// Interval is how often the Nodes are read again (default 10 s).
	Interval time.Duration
	// Routes is the routing table (default IPRoute).
	Routes RouteTable
	// Masquerade installs the masquerade rule (default iptables-restore).
	Masquerade func(ctx context.Context, self []netip.Prefix, all []netip.Prefix) error
	// Log receives what changed; nil discards.
	Log *slog.Logger
}

// Run keeps the node's flat pod network in step with the cluster until ctx
// ends: once the node's pod CIDR is known it writes the conflist (which
// makes the kubelet report the network ready), and on every pass routes
// every other node's pod CIDR to it.
func Run(ctx context.Context, cfg Config) error {
	if cfg.NodeName == "" {
		return errors.New("flat network: no node name (slipway.node= on the kernel command line)")
	}
	if cfg.CNIDir == "" {
		cfg.CNIDir = "/etc/cni/net.d"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.Routes == nil {
		cfg.Routes = IPRoute{}
	}
	if cfg.Masquerade == nil {
		cfg.Masquerade = iptablesMasquerade
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.AdminKubeconfig == "" {
		cfg.AdminKubeconfig = "/etc/kubernetes/admin.conf"
	}
	client, err := waitClient(ctx, cfg, log)
	if err != nil {
		return err
	}
	rbacDone := false
	var lastMasq string
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		if !rbacDone {
			rbacDone = ensureRBAC(ctx, cfg, log)
		}
		if err := pass(ctx, cfg, client, log, &lastMasq); err != nil {
			// Transient (the API restarting, a route racing a node's
			// departure): say so and try again on the next pass.
			log.Warn("flat network pass failed", "node", cfg.NodeName, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ensureRBAC creates the RBAC with the admin kubeconfig when this node has
// one; it reports whether nothing is left to do here.
func ensureRBAC(ctx context.Context, cfg Config, log *slog.Logger) bool {
	if _, err := os.Stat(cfg.AdminKubeconfig); err != nil {
		return true // not a control-plane node
	}
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.AdminKubeconfig)
	if err != nil {
		log.Warn("flat network rbac: read admin kubeconfig", "path", cfg.AdminKubeconfig, "err", err)
		return false
	}
	rc.Timeout = 15 * time.Second
	c, err := kubernetes.NewForConfig(rc)
	if err == nil {
		err = EnsureRBAC(ctx, c)
	}
	if err != nil {
		log.Warn("flat network rbac not created yet", "err", err)
		return false
	}
	log.Info("flat network rbac in place", "clusterrole", RBACName, "group", "system:nodes")
	return true
}

func waitClient(ctx context.Context, cfg Config, log *slog.Logger) (kubernetes.Interface, error) {
	logged := false
	for {
		if _, err := os.Stat(cfg.Kubeconfig); err == nil {
			rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
			if err != nil {
				return nil, fmt.Errorf("flat network: read %s: %w", cfg.Kubeconfig, err)
			}
			rc.Timeout = 15 * time.Second
			return kubernetes.NewForConfig(rc)
		}
		if !logged {
			log.Info("flat network waiting for the kubelet's kubeconfig", "node", cfg.NodeName, "path", cfg.Kubeconfig)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func pass(ctx context.Context, cfg Config, client kubernetes.Interface, log *slog.Logger, lastMasq *string) error {
	list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	var self *corev1.Node
	var all []netip.Prefix
	for i := range list.Items {
		if list.Items[i].Name == cfg.NodeName {
			self = &list.Items[i]
		}
		all = append(all, podCIDRs(list.Items[i])...)
	}
	if self == nil {
		log.Info("flat network waiting for this node's Node object", "node", cfg.NodeName)
		return nil
	}
	mine := podCIDRs(*self)
	if len(mine) == 0 {
		log.Info("flat network waiting for this node's pod CIDR", "node", cfg.NodeName)
		return nil
	}
	conf, err := Conflist(mine)
	if err != nil {
		return err
	}
	p := filepath.Join(cfg.CNIDir, ConflistName)
	if old, err := os.ReadFile(p); err != nil || !bytes.Equal(old, conf) {
		if err := writeAtomic(p, conf); err != nil {
			return err
		}
		log.Info("flat network configuration written", "node", cfg.NodeName, "path", p, "pod_cidr", fmt.Sprint(mine))
	}
	changes, err := Sync(ctx, cfg.Routes, Want(list.Items, cfg.NodeName))
	for _, c := range changes {
		log.Info("flat network "+c, "node", cfg.NodeName)
	}
	if err != nil {
		return err
	}
	slices.SortFunc(all, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	key := fmt.Sprint(mine, all)
	if key != *lastMasq {
		if err := cfg.Masquerade(ctx, mine, all); err != nil {
			return err
		}
		*lastMasq = key
		log.Info("flat network masquerade set", "node", cfg.NodeName, "except_to", fmt.Sprint(all))
	}
	return nil
}

func writeAtomic(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// MasqueradeRules returns the iptables-restore input (nat table, without
// flushing other chains) that masquerades IPv4 traffic from the node's pods
// except to any pod CIDR.
func MasqueradeRules(all []netip.Prefix) string {
	var b strings.Builder
	b.WriteString("*nat\n:SLIPWAY-FLATNET - [0:0]\n-F SLIPWAY-FLATNET\n")
	for _, c := range all {
		if c.Addr().Is4() {
			fmt.Fprintf(&b, "-A SLIPWAY-FLATNET -d %s -j RETURN\n", c.Masked())
		}
	}
	b.WriteString("-A SLIPWAY-FLATNET -d 224.0.0.0/4 -j RETURN\n-A SLIPWAY-FLATNET -j MASQUERADE\nCOMMIT\n")
	return b.String()
}

func iptablesMasquerade(ctx context.Context, self []netip.Prefix, all []netip.Prefix) error {
	cmd := exec.CommandContext(ctx, "iptables-restore", "--noflush")
	cmd.Stdin = strings.NewReader(MasqueradeRules(all))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore: %w: %s", err, strings.TrimSpace(string(out)))
	}
	for _, c := range self {
		if !c.Addr().Is4() {
			continue
		}
		if exec.CommandContext(ctx, "iptables", "-t", "nat", "-C", "POSTROUTING", "-s", c.Masked().String(), "-j", "SLIPWAY-FLATNET").Run() == nil {
			continue
		}
		if out, err := exec.CommandContext(ctx, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", c.Masked().String(), "-j", "SLIPWAY-FLATNET").CombinedOutput(); err != nil {
			return fmt.Errorf("iptables -t nat -A POSTROUTING: %w: %s", err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
