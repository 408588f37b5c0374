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
	// Log receives one line per object applied; nil discards.
	Log *slog.Logger
}

// Applier applies manifests to one cluster.
type Applier struct {
	cfg    Config
	log    *slog.Logger
	dyn    dynamic.Interface
	disc   discovery.DiscoveryInterface
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
	return &Applier{cfg: cfg, log: log, dyn: dyn, disc: dc, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

// Action says what applying an object did.
type Action string

// Actions.
const (
	Created   Action = "created"
	Changed   Action = "configured"
	Unchanged Action = "unchanged"
)

// Result is one object applied.
type Result struct {
	// File is the manifest file and Doc the 1-based index of the object
	// among its non-empty documents.
	File string
	Doc  int
	// Object is "Kind namespace/name" or "Kind name".
	Object string
	// Action is what the apply did.
	Action Action
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

// Load reads every file and splits it into objects, in order. Empty
// documents are skipped; a document that does not parse, or lacks
// apiVersion, kind or metadata.name, is an error naming file and document.
// All files are read before any error is returned so every mistake shows.
func Load(files []string) ([]Object, error) {
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
	objs, err := Load(files)
	if err != nil {
		return nil, err
	}
	return a.Apply(ctx, objs)
}

// ApplyWhenServing waits until the API server answers, then applies files
// (see ApplyFiles). While the server does not answer, or an apply fails
// (a webhook not ready yet, a broken manifest), it tries again every retry
// (default 10s), logging each distinct failure once at error level. It
// returns the results of the first apply that succeeds, or, when ctx ends
// first, the last failure (or ctx's error if the server never answered).
func (a *Applier) ApplyWhenServing(ctx context.Context, files []string, retry time.Duration) ([]Result, error) {
	if retry <= 0 {
		retry = 10 * time.Second
	}
	var last error
	lastMsg := ""
	for {
		var err error
		if _, err = a.disc.ServerVersion(); err == nil {
			var res []Result
			if res, err = a.ApplyFiles(ctx, files); err == nil {
				return res, nil
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
				return nil, last
			}
			return nil, fmt.Errorf("apply add-ons: the API server never answered: %w", ctx.Err())
		case <-time.After(retry):
		}
	}
}

// Apply applies each object with server-side apply (field manager
// "slipway", conflicts forced: the inventory is the source of truth), in
// order, and stops at the first failure with an error naming the file,
// document and object. A namespaced object without a namespace goes to
// "default". Applying the same objects again changes nothing.
func (a *Applier) Apply(ctx context.Context, objs []Object) ([]Result, error) {
	var out []Result
	for _, o := range objs {
		act, err := a.apply(ctx, o)
		if err != nil {
			return out, fmt.Errorf("apply add-on %s: document %d (%s): %w", o.File, o.Doc, o.Ref(), err)
		}
		r := Result{File: o.File, Doc: o.Doc, Object: o.Ref(), Action: act}
		a.log.Info("add-on applied", "file", o.File, "object", r.Object, "action", string(act))
		out = append(out, r)
	}
	return out, nil
}

func (a *Applier) apply(ctx context.Context, o Object) (Action, error) {
	gvk := o.Obj.GroupVersionKind()
	m, err := a.mapping(ctx, gvk)
	if err != nil {
		return "", err
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
		return "", fmt.Errorf("get: %w", err)
	}
	after, err := ri.Apply(ctx, o.Obj.GetName(), o.Obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		return "", err
	}
	switch {
	case before == nil:
		return Created, nil
	case before.GetResourceVersion() == after.GetResourceVersion(), sameContent(before, after):
		return Unchanged, nil
	}
	return Changed, nil
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
