package addons

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/kube"
	ri "helm.sh/helm/v4/pkg/release"
	rcommon "helm.sh/helm/v4/pkg/release/common"
	rspb "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// DigestLabel is the release label that records the digest of the chart
// files a release was made from; with the values it decides whether a
// re-apply has anything to do.
const DigestLabel = "slipway.dev/chart-digest"

// maxHistory is how many revisions of a release Helm keeps.
const maxHistory = 10

// chartPlan is what applying one chart add-on would do.
type chartPlan struct {
	chart   *chart.Chart
	vals    map[string]any
	secrets redactor
	digest  string
	// last is the release's newest revision, nil when never installed.
	last *rspb.Release
}

// helmConfig returns an action configuration for releases in namespace.
// Helm's requests are bounded by timeout rather than by the REST
// configuration's (short) timeout: Helm waits for hooks with watches.
func (a *Applier) helmConfig(namespace string, timeout time.Duration, log *slog.Logger) (*action.Configuration, error) {
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(log.Handler()))
	rc := rest.CopyConfig(a.cfg.REST)
	rc.Timeout = max(rc.Timeout, timeout)
	if err := cfg.Init(&restGetter{rest: rc, namespace: namespace, disc: a.cached, mapper: a.mapper}, namespace, "secret"); err != nil {
		return nil, err
	}
	return cfg, nil
}

// prepareChart fetches the chart, merges the values and reads the release's
// newest revision.
func (a *Applier) prepareChart(ctx context.Context, cfg *action.Configuration, c *inventory.Chart) (*chartPlan, error) {
	tmp, err := os.MkdirTemp("", "slipway-chart-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	f := &fetcher{timeout: a.cfg.FetchTimeout, tmp: tmp}
	ch, err := f.loadChart(ctx, c)
	if err != nil {
		return nil, err
	}
	vals, secrets, err := chartValues(c)
	if err != nil {
		return nil, err
	}
	p := &chartPlan{chart: ch, vals: vals, secrets: secrets, digest: chartDigest(ch)}
	hist, err := cfg.Releases.History(c.Release)
	if err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, p.secrets.err(fmt.Errorf("read release history: %w", err))
	}
	for _, h := range hist {
		r, err := asRelease(h)
		if err != nil {
			return nil, err
		}
		if p.last == nil || r.Version > p.last.Version {
			p.last = r
		}
	}
	return p, nil
}

func asRelease(r ri.Releaser) (*rspb.Release, error) {
	switch r := r.(type) {
	case *rspb.Release:
		return r, nil
	case rspb.Release:
		return &r, nil
	}
	return nil, fmt.Errorf("unsupported release type %T", r)
}

// unchanged reports whether the release's newest revision is deployed from
// the same chart files and values.
func (p *chartPlan) unchanged() bool {
	return p.last != nil && p.last.Info != nil && p.last.Info.Status == rcommon.StatusDeployed &&
		p.last.Labels[DigestLabel] == p.digest[:digestLabelLen] && sameValues(p.last.Config, p.vals)
}

// digestLabelLen is how much of the hex digest the label holds (label
// values are at most 63 characters).
const digestLabelLen = 48

// applyChart installs or upgrades one chart add-on. A re-apply with the
// same chart files and values changes nothing and makes no new revision.
func (a *Applier) applyChart(ctx context.Context, ad inventory.Addon, dryRun bool) (Result, error) {
	c := ad.Chart
	log := a.log.With("addon", ad.Name())
	res := Result{Addon: ad.Name(), File: ad.Source.File, Object: "release " + ad.Name()}
	cfg, err := a.helmConfig(c.Namespace, c.Timeout, log)
	if err != nil {
		return res, err
	}
	p, err := a.prepareChart(ctx, cfg, c)
	if err != nil {
		return res, err
	}
	res.Chart = p.chart.Metadata.Name + " " + p.chart.Metadata.Version
	labels := map[string]string{DigestLabel: p.digest[:digestLabelLen]}

	if p.last != nil && p.last.Info != nil && p.last.Info.Status.IsPending() {
		// A pending revision older than the timeout was left by a process
		// that died mid-operation (a live one marks it failed at its
		// timeout); mark it failed so the upgrade below can go on.
		age := time.Since(p.last.Info.LastDeployed)
		if age < c.Timeout || dryRun {
			return res, fmt.Errorf("release revision %d is %s since %s: another install or upgrade is running (or was interrupted less than the timeout, %s, ago); try again later",
				p.last.Version, p.last.Info.Status, p.last.Info.LastDeployed.Format(time.RFC3339), c.Timeout)
		}
		p.last.SetStatus(rcommon.StatusFailed, fmt.Sprintf("marked failed by slipway: left %s for %s", p.last.Info.Status, age.Round(time.Second)))
		if err := cfg.Releases.Update(p.last); err != nil {
			return res, fmt.Errorf("mark interrupted revision %d failed: %w", p.last.Version, err)
		}
		log.Warn("interrupted helm revision marked failed", "revision", p.last.Version, "age", age.Round(time.Second).String())
	}

	if p.unchanged() {
		res.Action, res.Revision = Unchanged, p.last.Version
		return res, nil
	}

	ctx, cancel := context.WithTimeout(ctx, c.Timeout+30*time.Second)
	defer cancel()
	var rel ri.Releaser
	if p.last == nil {
		in := action.NewInstall(cfg)
		in.ReleaseName, in.Namespace, in.CreateNamespace = c.Release, c.Namespace, true
		in.Timeout, in.WaitStrategy = c.Timeout, kube.HookOnlyStrategy
		in.ServerSideApply, in.ForceConflicts = true, true
		in.Labels = labels
		if dryRun {
			// Nothing of the release exists yet: render without the server
			// (its CRDs are not installed, so a server dry run would fail on
			// the chart's own custom resources) against its real version
			// and APIs.
			in.DryRunStrategy, in.IncludeCRDs = action.DryRunClient, true
			if err := a.clientCapabilities(in); err != nil {
				return res, err
			}
		}
		rel, err = in.RunWithContext(ctx, p.chart, p.vals)
		res.Action = Created
	} else {
		up := action.NewUpgrade(cfg)
		up.Namespace, up.Timeout, up.WaitStrategy = c.Namespace, c.Timeout, kube.HookOnlyStrategy
		up.ServerSideApply, up.ForceConflicts = "auto", true
		// The inventory's values are the whole truth: never merge in the
		// values of an earlier revision.
		up.ResetValues = true
		up.MaxHistory = maxHistory
		up.Labels = labels
		if dryRun {
			up.DryRunStrategy = action.DryRunServer
		}
		rel, err = up.RunWithContext(ctx, c.Release, p.chart, p.vals)
		res.Action = Changed
	}
	if err != nil {
		return res, p.secrets.err(err)
	}
	r, err := asRelease(rel)
	if err != nil {
		return res, err
	}
	res.Revision = r.Version
	if dryRun {
		old := ""
		if p.last != nil {
			old = p.last.Manifest
		}
		res.Diff = p.secrets.text(manifestDiff(old, r.Manifest))
		if p.last != nil && res.Diff == "" && sameValues(p.last.Config, p.vals) && p.last.Info.Status == rcommon.StatusDeployed {
			// Same objects and values from changed chart files (a README).
			res.Diff = "(chart files changed, rendered objects the same: an upgrade records a new revision)\n"
		}
		return res, nil
	}
	if r.Info != nil && r.Info.Status != rcommon.StatusDeployed {
		return res, fmt.Errorf("revision %d is %s: %s", r.Version, r.Info.Status, p.secrets.text(r.Info.Description))
	}
	return res, nil
}

// clientCapabilities gives a client-side dry-run install the cluster's
// Kubernetes version and API versions, so it renders as the real install.
func (a *Applier) clientCapabilities(in *action.Install) error {
	v, err := a.disc.ServerVersion()
	if err != nil {
		return fmt.Errorf("read the API server's version: %w", err)
	}
	kv, err := common.ParseKubeVersion(v.GitVersion)
	if err != nil {
		return fmt.Errorf("read the API server's version: %w", err)
	}
	in.KubeVersion = kv
	vs, err := action.GetVersionSet(a.disc)
	if err != nil {
		return fmt.Errorf("read the API server's API versions: %w", err)
	}
	in.APIVersions = vs
	return nil
}

// restGetter hands Helm our REST configuration, discovery and mapper, with
// the release's namespace as the default.
type restGetter struct {
	rest      *rest.Config
	namespace string
	disc      discovery.CachedDiscoveryInterface
	mapper    meta.RESTMapper
}

var _ genericclioptions.RESTClientGetter = (*restGetter)(nil)

func (g *restGetter) ToRESTConfig() (*rest.Config, error) { return rest.CopyConfig(g.rest), nil }
func (g *restGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	return g.disc, nil
}
func (g *restGetter) ToRESTMapper() (meta.RESTMapper, error)        { return g.mapper, nil }
func (g *restGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig { return nsConfig{g} }

// nsConfig is the kubeconfig Helm's kube client asks for its default
// namespace; there is no kubeconfig file.
type nsConfig struct{ g *restGetter }

func (c nsConfig) RawConfig() (clientcmdapi.Config, error) { return clientcmdapi.Config{}, nil }
func (c nsConfig) ClientConfig() (*rest.Config, error)     { return c.g.ToRESTConfig() }
func (c nsConfig) Namespace() (string, bool, error)        { return c.g.namespace, true, nil }
func (c nsConfig) ConfigAccess() clientcmd.ConfigAccess {
	return clientcmd.NewDefaultClientConfigLoadingRules()
}
