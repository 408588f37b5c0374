package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/pkg/addons"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/kubeadm"
)

// configRenderOptions are the flags of `config render`.
type configRenderOptions struct {
	out         string
	showSecrets bool
	format      string
}

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show what nodes receive; apply cluster add-ons",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError("config needs a subcommand: config render NODE, or config addons")
		},
	}
	cmd.AddCommand(newConfigRenderCmd(g), newConfigAddonsCmd(g))
	return cmd
}

func newConfigAddonsCmd(g *globals) *cobra.Command {
	var kindWait time.Duration
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "addons -f PATH... [--dry-run]",
		Short: "Apply the inventory's add-ons (manifests and Helm charts) to the cluster",
		Long: "addons applies what the inventory lists under addons (a CNI, the device plugin DaemonSet,\n" +
			"Helm charts), in order: manifests with server-side apply under the field manager \"slipway\",\n" +
			"charts as Helm releases (installed, or upgraded when the chart files or values changed). It is\n" +
			"idempotent: run it again after changing the inventory. It authenticates with a short-lived\n" +
			"admin certificate minted from the cluster CA in --state-dir/pki and talks to the inventory's\n" +
			"control-plane endpoint. A failed add-on is named with its inventory entry (FILE:LINE:COL) and\n" +
			"does not stop the others. With --dry-run nothing changes: each add-on is shown with a diff\n" +
			"against the cluster (Secret values redacted).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.configAddons(cmd.Context(), kindWait, dryRun)
		},
	}
	cmd.Flags().DurationVar(&kindWait, "kind-wait", addons.DefaultKindWait, "how long to wait for a kind whose CustomResourceDefinition was just applied")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "change nothing; show what would change as a diff against the cluster")
	return cmd
}

func (g *globals) configAddons(ctx context.Context, kindWait time.Duration, dryRun bool) error {
	inv, err := g.loadInventory()
	if err != nil {
		return err
	}
	if len(inv.Addons) == 0 {
		fmt.Fprintln(g.stdout, "no add-ons listed in the inventory")
		return nil
	}
	if _, err := addons.Load(inv.Addons); err != nil {
		return err
	}
	dir := filepath.Join(g.stateDir, "pki")
	if _, err := os.Stat(filepath.Join(dir, kubeadm.CACertFile)); err != nil {
		return fmt.Errorf("apply add-ons: no cluster PKI in %s (provisioner up creates it with the cluster)", dir)
	}
	pki, err := kubeadm.EnsurePKI(kubeadm.PKIConfig{Dir: dir, Log: g.log})
	if err != nil {
		return err
	}
	b, err := kubeadm.New(kubeadm.Config{Inventory: inv, PKI: pki})
	if err != nil {
		return err
	}
	kc, err := pki.AdminKubeconfig("https://"+b.Endpoint(), time.Now(), 0)
	if err != nil {
		return err
	}
	rc, err := kubeadm.RESTConfig(kc)
	if err != nil {
		return err
	}
	rc.Timeout = 30 * time.Second
	a, err := addons.New(addons.Config{REST: rc, KindWait: kindWait, Log: g.log})
	if err != nil {
		return err
	}
	apply := a.ApplyAddons
	if dryRun {
		apply = a.PlanAddons
	}
	res, err := apply(ctx, inv.Addons)
	for _, r := range res {
		fmt.Fprintln(g.stdout, r)
		fmt.Fprint(g.stdout, r.Diff)
	}
	return err
}

func newConfigRenderCmd(g *globals) *cobra.Command {
	var o configRenderOptions
	cmd := &cobra.Command{
		Use:   "render NODE -f PATH... [--out DIR] [--show-secrets] [--format cloud-config|script]",
		Short: "Print the configuration a node would receive, secrets redacted",
		Long: "render prints the node configuration the boot server would hand NODE: the kubeadm\n" +
			"configuration (InitConfiguration for the first control-plane node, JoinConfiguration\n" +
			"otherwise), the CA files for the first control-plane node, and the steps that install,\n" +
			"enable and run kubeadm. The token, the certificate key and private keys are shown as\n" +
			"[redacted] unless --show-secrets is given. The token shown is minted for this preview\n" +
			"only and is never created in the cluster.\n\n" +
			"The cluster PKI is read from --state-dir/pki; when there is none yet, a throwaway CA is\n" +
			"used (the CA hash then differs from the one nodes will receive) and nothing is written\n" +
			"to the state directory.\n\n" +
			"With --out DIR it writes DIR/NODE.kubeadm.yaml and DIR/NODE.cloud-config.yaml (or\n" +
			"DIR/NODE.sh), mode 0600 when secrets are shown.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("config render takes one node name, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.configRender(args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "", "write the files into DIR instead of printing the node configuration")
	f.BoolVar(&o.showSecrets, "show-secrets", false, "show the token, certificate key and private keys instead of [redacted]")
	f.StringVar(&o.format, "format", "", "node configuration format: cloud-config or script (default: the node's boot.configFormat, else cloud-config)")
	return cmd
}

func (g *globals) configRender(name string, o configRenderOptions) error {
	if o.format != "" {
		if _, err := kubeadm.ParseFormat(o.format); err != nil {
			return usageError("--format: %v", err)
		}
	}
	inv, err := g.loadInventory()
	if err != nil {
		return err
	}
	node, ok := inv.Node(name)
	if !ok {
		return fmt.Errorf("render config: node %q is not in the inventory (%s)", name, strings.Join(inv.Sources, ", "))
	}
	pki, cleanup, err := g.previewPKI()
	if err != nil {
		return err
	}
	defer cleanup()
	b, err := kubeadm.New(kubeadm.Config{Inventory: inv, PKI: pki, PhoneHomeURL: phoneHomeBase(inv.Network), Log: g.log})
	if err != nil {
		return err
	}
	nc, err := b.Preview(node, kubeadm.KindOf(inv, node), o.showSecrets)
	if err != nil {
		return err
	}
	format := b.Format(node)
	if o.format != "" {
		format = kubeadm.Format(o.format)
	}
	out, err := nc.Render(format)
	if err != nil {
		return err
	}
	if o.out == "" {
		_, err := g.stdout.Write(out)
		return err
	}
	return writeRendered(g, o, node, format, nc.Kubeadm, out)
}

// phoneHomeBase is the boot server's URL as nodes reach it, or "" when the
// inventory names no provisioner address.
func phoneHomeBase(n inventory.Network) string {
	if !n.Address.IsValid() {
		return ""
	}
	port := n.HTTPPort
	if port == 0 {
		port = 8080
	}
	return "http://" + netip.AddrPortFrom(n.Address, port).String()
}

// previewPKI loads the cluster PKI from the state directory, or creates a
// throwaway one (removed by cleanup) when the state directory has none yet:
// a preview must not create the cluster's CAs.
func (g *globals) previewPKI() (*kubeadm.PKI, func(), error) {
	dir := filepath.Join(g.stateDir, "pki")
	if _, err := os.Stat(filepath.Join(dir, kubeadm.CACertFile)); err == nil {
		p, err := kubeadm.EnsurePKI(kubeadm.PKIConfig{Dir: dir, Log: g.log})
		return p, func() {}, err
	}
	tmp, err := os.MkdirTemp("", "slipway-preview-pki-")
	if err != nil {
		return nil, nil, fmt.Errorf("render config: %w", err)
	}
	cleanup := func() { os.RemoveAll(tmp) }
	fmt.Fprintf(g.stderr, "warning: no cluster PKI in %s yet; rendering with a throwaway CA, so the CA hash differs from what nodes will receive\n", dir)
	p, err := kubeadm.EnsurePKI(kubeadm.PKIConfig{Dir: tmp})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return p, cleanup, nil
}

func writeRendered(g *globals, o configRenderOptions, node inventory.Node, f kubeadm.Format, kubeadmCfg, nodeCfg []byte) error {
	mode := os.FileMode(0o644)
	if o.showSecrets {
		mode = 0o600
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("render config for %s: %w", node.Name, err)
	}
	name := node.Name + ".cloud-config.yaml"
	if f == kubeadm.FormatScript {
		name = node.Name + ".sh"
	}
	for _, file := range []struct {
		name string
		data []byte
	}{{node.Name + ".kubeadm.yaml", kubeadmCfg}, {name, nodeCfg}} {
		path := filepath.Join(o.out, file.name)
		// Remove first so an older, more permissive file's mode does not survive.
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("render config for %s: %w", node.Name, err)
		}
		if err := os.WriteFile(path, file.data, mode); err != nil {
			return fmt.Errorf("render config for %s: %w", node.Name, err)
		}
		fmt.Fprintln(g.stdout, path)
	}
	return nil
}
