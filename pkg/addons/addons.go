package addons

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// FieldManager is the server-side apply field manager of every object applied.
const FieldManager = "slipway"

// DefaultKindWait is how long Apply waits for a kind to appear in the API
// (a CustomResourceDefinition applied just before becoming established).
const DefaultKindWait = 60 * time.Second

// Config configures an Applier.
type Config struct {
	// REST reaches the cluster with rights to create every object listed. Required.
	REST *rest.Config
	// KindWait bounds the wait for a kind that is not served yet (default DefaultKindWait).
	KindWait time.Duration
	// FetchTimeout bounds each request to a chart repository or registry
	// (default DefaultFetchTimeout).
	FetchTimeout time.Duration
	// Log receives one line per object applied; nil discards.
	Log *slog.Logger
}

// Applier applies manifests to one cluster.
type Applier struct {
	cfg    Config
	log    *slog.Logger
	dyn    dynamic.Interface
	disc   discovery.DiscoveryInterface
	cached discovery.CachedDiscoveryInterface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

// New checks cfg and returns an Applier.
func New(cfg Config) (*Applier, error) {
	if cfg.REST == nil {
		return nil, errors.New("configure add-on apply: no API client configuration")
	}
	if cfg.KindWait == 0 {
		cfg.KindWait = DefaultKindWait
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	dyn, err := dynamic.NewForConfig(cfg.REST)
	if err != nil {
		return nil, fmt.Errorf("configure add-on apply: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg.REST)
	if err != nil {
		return nil, fmt.Errorf("configure add-on apply: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cached := memory.NewMemCacheClient(dc)
	return &Applier{cfg: cfg, log: log, dyn: dyn, disc: dc, cached: cached, mapper: restmapper.NewDeferredDiscoveryRESTMapper(cached)}, nil
}

// Action says what applying an object or a chart did (or, in a plan, would do).
type Action string

// Actions. A chart release is Created when installed, Changed when
// upgraded (a new revision) and Unchanged when the chart files and values
// are those of its deployed revision.
const (
	Created   Action = "created"
	Changed   Action = "configured"
	Unchanged Action = "unchanged"
)

// Result is one object or one chart release applied.
type Result struct {
	// Addon names the add-on (Addon.Name: the manifest path or NAMESPACE/RELEASE).
	Addon string
	// File is the manifest file and Doc the 1-based index of the object
	// among its non-empty documents; for a chart, File is the inventory
	// file of the entry and Doc is 0.
	File string
	Doc  int
	// Object is "Kind namespace/name" or "Kind name", or "release NAMESPACE/RELEASE".
	Object string
	// Action is what the apply did.
	Action Action
	// Chart is "NAME VERSION" of the chart applied (charts only).
	Chart string
	// Revision is the release's revision after the apply (charts only; in a
	// plan, the revision an apply would make).
	Revision int
	// Planned marks a result of PlanAddons: nothing was changed.
	Planned bool
	// Diff is, in a plan, a unified diff of what the apply would change
	// (secrets redacted); empty when nothing would.
	Diff string
}

// String is the line a person reads: "DaemonSet kube-system/flannel created
// (addons/flannel.yaml)", "release kueue-system/kueue configured (chart
// kueue 0.13.4, revision 2)"; a planned one says "would be created".
func (r Result) String() string {
	act := string(r.Action)
	if r.Planned && r.Action != Unchanged {
		act = "would be " + act
	}
	if r.Chart != "" {
		return fmt.Sprintf("%s %s (chart %s, revision %d)", r.Object, act, r.Chart, r.Revision)
	}
	return fmt.Sprintf("%s %s (%s)", r.Object, act, r.File)
}

// Object is one manifest document.
type Object struct {
	// File is the manifest file the object comes from.
	File string
	// Doc is the object's 1-based index among the file's non-empty documents.
	Doc int
	// Obj is the object as written.
	Obj *unstructured.Unstructured
}

// Ref returns "Kind namespace/name" or "Kind name".
func (o Object) Ref() string {
	if ns := o.Obj.GetNamespace(); ns != "" {
		return o.Obj.GetKind() + " " + ns + "/" + o.Obj.GetName()
	}
	return o.Obj.GetKind() + " " + o.Obj.GetName()
}

// Load checks every add-on that can be checked without a cluster or a
// network: it parses each manifest (returning their objects, in order),
// loads each local chart and checks its version, and parses each chart's
// values files. Remote charts are not fetched and secret references not
// read. Every problem is reported, each with the entry's position.
func Load(list []inventory.Addon) ([]Object, error) {
	var out []Object
	var errs []error
	for _, ad := range list {
		if ad.Chart == nil {
			objs, err := LoadFiles([]string{ad.Manifest})
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ad.Source, err))
			}
			out = append(out, objs...)
			continue
		}
		c := ad.Chart
		if c.Source == inventory.ChartLocal {
			f := &fetcher{timeout: DefaultFetchTimeout}
			if _, err := f.loadChart(context.Background(), c); err != nil {
				errs = append(errs, fmt.Errorf("%s: chart add-on %s: %w", ad.Source, ad.Name(), err))
			}
		}
		offline := *c
		offline.SecretValues = nil
		if _, _, err := chartValues(&offline); err != nil {
			errs = append(errs, fmt.Errorf("%s: chart add-on %s: %w", ad.Source, ad.Name(), err))
		}
	}
	return out, errors.Join(errs...)
}

// LoadFiles reads every file and splits it into objects, in order. Empty
// documents are skipped; a document that does not parse, or lacks
// apiVersion, kind or metadata.name, is an error naming file and document.
// All files are read before any error is returned so every mistake shows.
func LoadFiles(files []string) ([]Object, error) {
	var out []Object
	var errs []error
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("read add-on %s: %w", f, err))
			continue
		}
		objs, err := Parse(f, b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, objs...)
	}
	return out, errors.Join(errs...)
}

// Parse splits one manifest file's content into objects; file names it in errors.
func Parse(file string, data []byte) ([]Object, error) {
	var out []Object
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for doc := 1; ; doc++ {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parse add-on %s: document %d: %w", file, doc, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		o := Object{File: file, Doc: doc, Obj: u}
		var missing []string
		if u.GetAPIVersion() == "" {
			missing = append(missing, "apiVersion")
		}
		if u.GetKind() == "" {
			missing = append(missing, "kind")
		}
		if u.GetName() == "" {
			missing = append(missing, "metadata.name")
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("parse add-on %s: document %d (%s): missing %s", file, doc, o.Ref(), strings.Join(missing, ", "))
		}
		if strings.HasSuffix(u.GetKind(), "List") {
			return nil, fmt.Errorf("parse add-on %s: document %d (%s): lists are not supported, write one object per document", file, doc, o.Ref())
		}
		out = append(out, o)
	}
}

// ApplyFiles loads files and applies their objects in order (see Apply).
func (a *Applier) ApplyFiles(ctx context.Context, files []string) ([]Result, error) {
	objs, err := LoadFiles(files)
	if err != nil {
		return nil, err
	}
	return a.Apply(ctx, objs)
}

// ApplyWhenServing waits until the API server answers, then applies the
// add-ons (see ApplyAddons). While the server does not answer, or an
// add-on fails (a webhook not ready yet, a broken manifest, a repository
// out of reach), it tries the failed add-ons again every retry (default
// 10s), logging each distinct failure once at error level. It returns when
// every add-on is applied, or when ctx ends: then with the results so far
// and the last failures (or ctx's error if the server never answered).
func (a *Applier) ApplyWhenServing(ctx context.Context, list []inventory.Addon, retry time.Duration) ([]Result, error) {
	if retry <= 0 {
		retry = 10 * time.Second
	}
	done := make([][]Result, len(list))
	pending := make([]bool, len(list))
	for i := range pending {
		pending[i] = true
	}
	var last error
	lastMsg := ""
	for {
		var err error
		if _, err = a.disc.ServerVersion(); err == nil {
			var errs []error
			for i, ad := range list {
				if !pending[i] {
					continue
				}
				res, err := a.applyAddon(ctx, ad, false)
				done[i] = res
				if err != nil {
					errs = append(errs, &AddonError{Addon: ad, Err: err})
					continue
				}
				pending[i] = false
			}
			if err = errors.Join(errs...); err == nil {
				return flatten(done), nil
			}
			last = err
		}
		if msg := err.Error(); msg != lastMsg {
			if last == err {
				a.log.Error("add-ons not applied; retrying", "err", err)
			} else {
				a.log.Info("waiting for the API server to apply add-ons", "err", err)
			}
			lastMsg = msg
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return flatten(done), last
			}
			return nil, fmt.Errorf("apply add-ons: the API server never answered: %w", ctx.Err())
		case <-time.After(retry):
		}
	}
}

func flatten(rs [][]Result) []Result {
	var out []Result
	for _, r := range rs {
		out = append(out, r...)
	}
	return out
}

// ApplyAddons applies the inventory's add-ons in order: a manifest's
// objects with server-side apply (see Apply), a chart as one Helm release,
// installed or upgraded (see the package doc). An add-on that fails does
// not stop the others: the error names each failed add-on and the position
// of its entry (FILE:LINE:COL), and the results list everything applied.
func (a *Applier) ApplyAddons(ctx context.Context, list []inventory.Addon) ([]Result, error) {
	return a.addons(ctx, list, false)
}

// PlanAddons shows what ApplyAddons would do without changing the cluster:
// manifests go through a server-side dry-run apply, charts through a Helm
// dry run, and each Result carries a unified diff against the cluster
// (Kubernetes Secrets' values and the chart's secret values redacted).
func (a *Applier) PlanAddons(ctx context.Context, list []inventory.Addon) ([]Result, error) {
	return a.addons(ctx, list, true)
}

func (a *Applier) addons(ctx context.Context, list []inventory.Addon, dryRun bool) ([]Result, error) {
	var out []Result
	var errs []error
	for _, ad := range list {
		res, err := a.applyAddon(ctx, ad, dryRun)
		for i := range res {
			res[i].Planned = dryRun
		}
		out = append(out, res...)
		if err != nil {
			errs = append(errs, &AddonError{Addon: ad, Err: err})
		}
	}
	return out, errors.Join(errs...)
}

// AddonError is one add-on's failure. The errors of ApplyAddons,
// PlanAddons and ApplyWhenServing join one per failed add-on, so a caller
// can say which add-ons failed (see FailedAddons).
type AddonError struct {
	// Addon is the inventory entry that failed.
	Addon inventory.Addon
	// Err says why; its text starts with the entry's position.
	Err error
}

func (e *AddonError) Error() string { return e.Err.Error() }
func (e *AddonError) Unwrap() error { return e.Err }

// FailedAddons returns the add-on errors err joins, in order (none when err
// is nil or not about particular add-ons, such as an API server that never
// answered).
func FailedAddons(err error) []*AddonError {
	if ae, ok := err.(*AddonError); ok {
		return []*AddonError{ae}
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return nil
	}
	var out []*AddonError
	for _, e := range j.Unwrap() {
		if ae, ok := e.(*AddonError); ok {
			out = append(out, ae)
		}
	}
	return out
}

// applyAddon applies one add-on; its error starts with the entry's position.
func (a *Applier) applyAddon(ctx context.Context, ad inventory.Addon, dryRun bool) ([]Result, error) {
	if ad.Chart == nil {
		objs, err := LoadFiles([]string{ad.Manifest})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ad.Source, err)
		}
		res, err := a.apply(ctx, objs, dryRun)
		for i := range res {
			res[i].Addon = ad.Name()
		}
		if err != nil {
			return res, fmt.Errorf("%s: %w", ad.Source, err)
		}
		return res, nil
	}
	res, err := a.applyChart(ctx, ad, dryRun)
	if err != nil {
		verb := "apply"
		if dryRun {
			verb = "plan"
		}
		return nil, fmt.Errorf("%s: %s chart add-on %s: %w", ad.Source, verb, ad.Name(), err)
	}
	msg := "add-on chart applied"
	if dryRun {
		msg = "add-on chart planned"
	}
	a.log.Info(msg, "addon", ad.Name(), "chart", res.Chart, "revision", res.Revision, "action", string(res.Action))
	return []Result{res}, nil
}

// Apply applies each object with server-side apply (field manager
// "slipway", conflicts forced: the inventory is the source of truth), in
// order, and stops at the first failure with an error naming the file,
// document and object. A namespaced object without a namespace goes to
// "default". Applying the same objects again changes nothing.
func (a *Applier) Apply(ctx context.Context, objs []Object) ([]Result, error) {
	return a.apply(ctx, objs, false)
}

func (a *Applier) apply(ctx context.Context, objs []Object, dryRun bool) ([]Result, error) {
	var out []Result
	for _, o := range objs {
		act, diff, err := a.applyObject(ctx, o, dryRun)
		if err != nil {
			return out, fmt.Errorf("apply add-on %s: document %d (%s): %w", o.File, o.Doc, o.Ref(), err)
		}
		r := Result{File: o.File, Doc: o.Doc, Object: o.Ref(), Action: act, Diff: diff}
		if !dryRun {
			a.log.Info("add-on applied", "file", o.File, "object", r.Object, "action", string(act))
		}
		out = append(out, r)
	}
	return out, nil
}

func (a *Applier) applyObject(ctx context.Context, o Object, dryRun bool) (Action, string, error) {
	gvk := o.Obj.GroupVersionKind()
	var m *meta.RESTMapping
	var err error
	if dryRun {
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) {
			a.mapper.Reset()
			m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		}
		if meta.IsNoMatchError(err) {
			// Its CustomResourceDefinition is in the plan, not yet in the cluster.
			return Created, objectDiff(nil, o.Obj), nil
		}
		if err != nil {
			return "", "", fmt.Errorf("find resource for %s: %w", gvk, err)
		}
	} else if m, err = a.mapping(ctx, gvk); err != nil {
		return "", "", err
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := o.Obj.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
			o.Obj.SetNamespace(ns)
		}
		ri = a.dyn.Resource(m.Resource).Namespace(ns)
	} else {
		o.Obj.SetNamespace("")
	}
	before, err := ri.Get(ctx, o.Obj.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		before = nil
	case err != nil:
		return "", "", fmt.Errorf("get: %w", err)
	}
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	after, err := ri.Apply(ctx, o.Obj.GetName(), o.Obj, opts)
	if err != nil {
		if dryRun && before == nil && apierrors.IsNotFound(err) {
			// Its namespace is created by an earlier object of the plan.
			return Created, objectDiff(nil, o.Obj), nil
		}
		return "", "", err
	}
	diff := ""
	if dryRun {
		diff = objectDiff(before, after)
	}
	switch {
	case before == nil:
		return Created, diff, nil
	case before.GetResourceVersion() == after.GetResourceVersion(), sameContent(before, after):
		return Unchanged, "", nil
	}
	return Changed, diff, nil
}

// sameContent reports whether two versions of an object differ only in
// bookkeeping: the resource version and managed fields. The API server
// records managed fields on the second apply of an object whose manifest
// owns no fields (a bare Namespace); nothing a user sees changed.
func sameContent(a, b *unstructured.Unstructured) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	for _, o := range []*unstructured.Unstructured{a, b} {
		o.SetResourceVersion("")
		o.SetManagedFields(nil)
	}
	return equality.Semantic.DeepEqual(a.Object, b.Object)
}

// mapping finds the resource serving gvk, waiting up to KindWait for a kind
// that is not served yet (its CRD was applied a moment ago).
func (a *Applier) mapping(ctx context.Context, gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err == nil {
		return m, nil
	}
	if !meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("find resource for %s: %w", gvk, err)
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.KindWait)
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		a.mapper.Reset()
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil {
			return m, nil
		}
		if !meta.IsNoMatchError(err) {
			return nil, fmt.Errorf("find resource for %s: %w", gvk, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("kind %s is not served by the cluster (is its CustomResourceDefinition applied before it?): %w", gvk, err)
		case <-tick.C:
		}
	}
}
