package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/internal/testenv"
)

// The releases the Kueue example is written against: its manifests are
// checked against these releases' own CRD schemas.
const (
	kueueModule  = "sigs.k8s.io/kueue@v0.17.0"
	jobsetModule = "sigs.k8s.io/jobset@v0.11.1"
)

const kueueExample = "../../inventory/examples/kueue"

// manifests reads every object of the Kueue example's manifests, as
// kubectl does (sigs.k8s.io/yaml, YAML 1.1).
func manifests(t *testing.T) []map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(kueueExample, "manifests", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s/manifests: %v", kueueExample, err)
	}
	var objs []map[string]any
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(b, []byte("\n---\n")) {
			var o map[string]any
			if err := yaml.Unmarshal(doc, &o); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			if o != nil {
				o["__file"] = fmt.Sprintf("%s#%d", filepath.Base(f), i+1)
				objs = append(objs, o)
			}
		}
	}
	return objs
}

func get(o any, path ...string) any {
	for _, p := range path {
		m, ok := o.(map[string]any)
		if !ok {
			return nil
		}
		o = m[p]
	}
	return o
}

// The example's Topology, ResourceFlavor and job must fit the labels the
// example inventory really gives its nodes: a level no node carries, or a
// flavor that selects no node, would leave every workload pending.
func TestKueueExampleMatchesInventory(t *testing.T) {
	inv, err := Load(kueueExample)
	if err != nil {
		t.Fatalf("Load(%s):\n%v", kueueExample, err)
	}
	var levels []string
	var flavorLabels map[string]any
	var flavorTolerations []any
	var required []string
	for _, o := range manifests(t) {
		switch o["kind"] {
		case "Topology":
			for _, l := range get(o, "spec", "levels").([]any) {
				levels = append(levels, get(l, "nodeLabel").(string))
			}
		case "ResourceFlavor":
			flavorLabels, _ = get(o, "spec", "nodeLabels").(map[string]any)
			flavorTolerations, _ = get(o, "spec", "tolerations").([]any)
		case "JobSet":
			for _, rj := range get(o, "spec", "replicatedJobs").([]any) {
				if v, ok := get(rj, "template", "spec", "template", "metadata", "annotations", "kueue.x-k8s.io/podset-required-topology").(string); ok {
					required = append(required, v)
				}
			}
		}
	}
	if len(levels) == 0 || flavorLabels == nil || len(required) == 0 {
		t.Fatalf("example: Topology levels %v, flavor labels %v, required topologies %v; want all three", levels, flavorLabels, required)
	}
	selected := 0
	for _, n := range inv.Enabled() {
		labels := n.NodeLabels()
		labels["kubernetes.io/hostname"] = n.Name // the kubelet sets it
		match := true
		for k, v := range flavorLabels {
			match = match && labels[k] == v
		}
		if !match {
			continue
		}
		selected++
		for _, l := range levels {
			if labels[l] == "" {
				t.Errorf("node %s is in flavor %v but lacks topology level %s: Kueue would not place pods on it", n.Name, flavorLabels, l)
			}
		}
		for _, taint := range n.Taints {
			if !slices.ContainsFunc(flavorTolerations, func(tol any) bool {
				return get(tol, "key") == taint.Key && (get(tol, "operator") == "Exists" || get(tol, "value") == taint.Value) && get(tol, "effect") == taint.Effect
			}) {
				t.Errorf("node %s has taint %s=%s:%s that the flavor does not tolerate", n.Name, taint.Key, taint.Value, taint.Effect)
			}
		}
	}
	if selected == 0 {
		t.Errorf("the flavor's nodeLabels %v select none of the example's nodes", flavorLabels)
	}
	for _, r := range required {
		if !slices.Contains(levels, r) {
			t.Errorf("the job requires topology %q, which is not a level of the Topology %v", r, levels)
		}
	}
}

// The example's objects must be valid for the Kueue and JobSet releases
// they are written for: each is checked against the CRD schema in that
// release's source (from the Go module proxy), the way the API server
// checks fields (unknown fields, types, enums, required fields).
func TestKueueExampleSchemas(t *testing.T) {
	dirs := downloadModules(t, kueueModule, jobsetModule)
	crds := map[string]map[string]any{} // kind/apiVersion -> schema
	for _, mod := range []string{kueueModule, jobsetModule} {
		files, _ := filepath.Glob(filepath.Join(dirs[mod], "config", "components", "crd", "bases", "*.yaml"))
		if len(files) == 0 {
			t.Fatalf("no CRDs in %s", dirs[mod])
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var crd map[string]any
			if err := yaml.Unmarshal(b, &crd); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			group, kind := get(crd, "spec", "group").(string), get(crd, "spec", "names", "kind").(string)
			for _, v := range get(crd, "spec", "versions").([]any) {
				if s, ok := get(v, "schema", "openAPIV3Schema").(map[string]any); ok && get(v, "served") == true {
					crds[kind+"/"+group+"/"+get(v, "name").(string)] = s
				}
			}
		}
	}
	checked := 0
	for _, o := range manifests(t) {
		file := o["__file"].(string)
		delete(o, "__file")
		key := fmt.Sprintf("%s/%s", o["kind"], o["apiVersion"])
		if o["kind"] == "Namespace" && o["apiVersion"] == "v1" {
			continue
		}
		schema, ok := crds[key]
		if !ok {
			t.Errorf("%s: %s is not served by %s or %s", file, key, kueueModule, jobsetModule)
			continue
		}
		for _, problem := range validate("", o, schema) {
			t.Errorf("%s (%s): %s", file, key, problem)
		}
		checked++
	}
	if checked < 5 {
		t.Errorf("checked %d objects, want the Topology, ResourceFlavor, ClusterQueue, LocalQueue and JobSet", checked)
	}
}

// downloadModules fetches modules (module@version) through the Go module
// proxy into the module cache and returns their directories.
func downloadModules(t *testing.T, mods ...string) map[string]string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"mod", "download", "-json"}, mods...)...)
	cmd.Dir = t.TempDir() // outside this module: its go.mod is not touched
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GO111MODULE=on")
	out, err := cmd.Output()
	dirs := map[string]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var m struct{ Path, Version, Dir, Error string }
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			break
		}
		if m.Error == "" && m.Dir != "" {
			dirs[m.Path+"@"+m.Version] = m.Dir
		}
	}
	for _, mod := range mods {
		if dirs[mod] == "" {
			msg := fmt.Sprintf("go mod download %s: %v (%s): the CRD schemas come from the Go module proxy", mod, err, strings.TrimSpace(string(out)))
			if testenv.E2E() {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return dirs
}

// validate checks v against an OpenAPI v3 schema as a CRD's structural
// schema is applied by the API server with strict field validation: unknown
// fields, types, enums and required fields. CEL rules and formats are not
// checked.
func validate(path string, v any, s map[string]any) []string {
	if s["x-kubernetes-preserve-unknown-fields"] == true && s["properties"] == nil {
		return nil
	}
	if s["x-kubernetes-int-or-string"] == true {
		switch v.(type) {
		case string, float64:
			return nil
		}
		return []string{fmt.Sprintf("%s: want an integer or a string, got %T", path, v)}
	}
	where := path
	if where == "" {
		where = "(top)"
	}
	var problems []string
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		problems = append(problems, fmt.Sprintf("%s: %v is not one of %v", where, v, enum))
	}
	switch s["type"] {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return append(problems, fmt.Sprintf("%s: want an object, got %T", where, v))
		}
		props, _ := s["properties"].(map[string]any)
		extra, _ := s["additionalProperties"].(map[string]any)
		if props == nil && extra == nil {
			return problems // metadata and other opaque objects
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := strings.TrimPrefix(path+"."+k, ".")
			switch ps, ok := props[k].(map[string]any); {
			case ok:
				problems = append(problems, validate(p, m[k], ps)...)
			case extra != nil:
				problems = append(problems, validate(p, m[k], extra)...)
			case s["x-kubernetes-preserve-unknown-fields"] == true:
			default:
				problems = append(problems, fmt.Sprintf("%s: unknown field", p))
			}
		}
		for _, r := range asStrings(s["required"]) {
			if _, ok := m[r]; !ok {
				problems = append(problems, fmt.Sprintf("%s: required field %s is missing", where, r))
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return append(problems, fmt.Sprintf("%s: want a list, got %T", where, v))
		}
		items, _ := s["items"].(map[string]any)
		for i, e := range a {
			if items != nil {
				problems = append(problems, validate(fmt.Sprintf("%s[%d]", path, i), e, items)...)
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			problems = append(problems, fmt.Sprintf("%s: want a string, got %T (%v)", where, v, v))
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != math.Trunc(f) {
			problems = append(problems, fmt.Sprintf("%s: want an integer, got %T (%v)", where, v, v))
		}
	case "number":
		if _, ok := v.(float64); !ok {
			problems = append(problems, fmt.Sprintf("%s: want a number, got %T", where, v))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			problems = append(problems, fmt.Sprintf("%s: want true or false, got %T (%v)", where, v, v))
		}
	}
	return problems
}

func asStrings(v any) []string {
	var out []string
	if a, ok := v.([]any); ok {
		for _, e := range a {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}
