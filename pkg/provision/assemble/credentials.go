package assemble

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/slipway-dev/slipway/pkg/addons"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/kubeadm"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/pxe/httpboot"
)

// credentials are what a join mode gives the rest of the assembly.
type credentials struct {
	issuer    provision.Issuer
	renderer  httpboot.Renderer
	readiness provision.Readiness
	addons    *addonStep
}

// newCredentials builds the join credentials, the node-config renderer and
// readiness for opts.Join. baseURL is the boot server as nodes reach it.
func newCredentials(opts Options, baseURL string) (credentials, error) {
	if opts.Join == JoinReportOnly {
		return credentials{renderer: reportOnlyRenderer{inv: opts.Inventory, baseURL: baseURL, delay: opts.ReportDelay}}, nil
	}
	inv := opts.Inventory
	pki, err := kubeadm.EnsurePKI(kubeadm.PKIConfig{Dir: filepath.Join(opts.StateDir, "pki"), Log: opts.Log})
	if err != nil {
		return credentials{}, err
	}
	var client kubernetes.Interface
	var c credentials
	if ep := inv.Cluster.ControlPlaneEndpoint; ep != "" {
		// The client mints short-lived admin certificates as it goes, so a
		// run longer than one certificate's life keeps its API access.
		rc := pki.AdminRESTConfig("https://"+ep, 0)
		rc.Timeout = 10 * time.Second
		if client, err = kubernetes.NewForConfig(rc); err != nil {
			return credentials{}, fmt.Errorf("cluster api client for %s: %w", ep, err)
		}
		if len(inv.Addons) > 0 {
			a, err := addons.New(addons.Config{REST: rc, Log: opts.Log})
			if err != nil {
				return credentials{}, err
			}
			c.addons = &addonStep{applier: a, files: inv.Addons}
		}
	}
	b, err := kubeadm.New(kubeadm.Config{
		Inventory: inv, PKI: pki, Client: client, Format: opts.NodeConfigFormat, Log: opts.Log, PhoneHomeURL: baseURL,
	})
	if err != nil {
		return credentials{}, err
	}
	c.issuer, c.renderer, c.readiness = kubeadmIssuer{b}, b, b
	if client != nil {
		c.readiness = kubeadm.NewReadyList(client, time.Second)
	}
	return c, nil
}

// kubeadmIssuer adapts the kubeadm bootstrapper to the orchestrator's issuer.
type kubeadmIssuer struct{ b *kubeadm.Bootstrapper }

func (k kubeadmIssuer) Issue(ctx context.Context, n inventory.Node, kind provision.JoinKind) error {
	return k.b.Issue(ctx, n, kubeadm.Kind(kind))
}

func (k kubeadmIssuer) Revoke(ctx context.Context, n inventory.Node) error { return k.b.Revoke(ctx, n) }

// addonStep applies the inventory's add-ons (the pod network above all: no
// node is Ready without one) as soon as the first control plane's API
// answers, while the other nodes join. A failure is reported, not fatal to
// the run.
type addonStep struct {
	applier *addons.Applier
	files   []inventory.Addon
}

func (a *addonStep) run(ctx context.Context) *AddonsResult {
	objs, err := a.applier.ApplyWhenServing(ctx, a.files, 10*time.Second)
	return addonsResult(a.files, objs, err)
}

// addonsResult sorts what ApplyWhenServing returned by add-on. An error
// about no add-on in particular (the API server never answered) is every
// add-on's that applied nothing.
func addonsResult(list []inventory.Addon, objs []addons.Result, err error) *AddonsResult {
	r := &AddonsResult{Objects: objs, Err: err}
	failed := map[string]error{}
	for _, ae := range addons.FailedAddons(err) {
		failed[ae.Addon.Name()] = ae.Err
	}
	for _, ad := range list {
		o := AddonOutcome{Name: ad.Name(), Err: failed[ad.Name()]}
		for _, res := range objs {
			if res.Addon == o.Name {
				o.Objects = append(o.Objects, res)
			}
		}
		if err != nil && len(failed) == 0 && len(o.Objects) == 0 {
			o.Err = err
		}
		r.Addons = append(r.Addons, o)
	}
	return r
}
