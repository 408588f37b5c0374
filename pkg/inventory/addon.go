package inventory

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultChartTimeout bounds one Helm chart add-on's install or upgrade
// (hooks included) when the entry gives no timeout.
const DefaultChartTimeout = 5 * time.Minute

// Addon is one entry of the inventory's addons list, applied in list order
// once the first control-plane node's API answers: a manifest file (the
// entry is a path) or a Helm chart (the entry is a mapping with chart:).
type Addon struct {
	// Manifest is the absolute path of a manifest file; empty for a chart.
	Manifest string `json:"manifest,omitempty"`
	// Chart is the Helm chart; nil for a manifest.
	Chart *Chart `json:"chart,omitempty"`
	// Source is where the entry is written.
	Source Pos `json:"source"`
}

// Name is what messages call the add-on: the manifest path, or the chart's
// release as NAMESPACE/RELEASE.
func (a Addon) Name() string {
	if a.Chart != nil {
		return a.Chart.Namespace + "/" + a.Chart.Release
	}
	return a.Manifest
}

// String names the add-on and where it is written, for errors:
// "chart release kueue-system/kueue (inventory.yaml:42:5)".
func (a Addon) String() string {
	if a.Chart != nil {
		return fmt.Sprintf("chart release %s (%s)", a.Name(), a.Source)
	}
	return fmt.Sprintf("manifest %s (%s)", a.Manifest, a.Source)
}

// ChartSource says where a chart comes from.
type ChartSource string

// Chart sources.
const (
	// ChartLocal is a chart directory or archive (.tgz) on disk.
	ChartLocal ChartSource = "local"
	// ChartRepository is a chart name in an HTTPS chart repository (index.yaml).
	ChartRepository ChartSource = "repository"
	// ChartOCI is an oci:// reference in an OCI registry.
	ChartOCI ChartSource = "oci"
	// ChartURL is an https:// URL of a chart archive.
	ChartURL ChartSource = "url"
)

// Chart is a Helm chart add-on, installed or upgraded as one release.
type Chart struct {
	// Release is the Helm release name (at most 53 characters, DNS label).
	Release string `json:"release"`
	// Namespace is the release's namespace; it is created when missing.
	Namespace string `json:"namespace"`
	// Source says how Ref is read.
	Source ChartSource `json:"source"`
	// Ref is the chart: an absolute path (local), a chart name in Repo
	// (repository), an oci:// reference, or an https:// archive URL.
	Ref string `json:"ref"`
	// Repo is the HTTPS chart repository URL (repository charts only).
	Repo string `json:"repo,omitempty"`
	// Version is the chart version or constraint (required for repository
	// and OCI charts; for local charts and URLs it must match if given).
	Version string `json:"version,omitempty"`
	// ValuesFiles are values files (absolute paths), merged in order.
	ValuesFiles []string `json:"valuesFiles,omitempty"`
	// Values are inline values, merged over ValuesFiles.
	Values map[string]any `json:"values,omitempty"`
	// SecretValues set a value at a dotted path (a\.b escapes a dot in a
	// key) from a secret reference, merged last. The secrets are read only
	// when the chart is applied.
	SecretValues map[string]SecretRef `json:"secretValues,omitempty"`
	// CAFile is a PEM bundle that verifies the repository's or registry's
	// TLS certificate, in addition to the system's (optional).
	CAFile string `json:"caFile,omitempty"`
	// Username and Password authenticate to the repository or registry (optional).
	Username string    `json:"username,omitempty"`
	Password SecretRef `json:"password,omitzero"`
	// Timeout bounds the install or upgrade (default DefaultChartTimeout).
	Timeout time.Duration `json:"timeout"`
}

// The raw forms, as written.

// rawAddon is a manifest path (a scalar) or a chart (a mapping).
type rawAddon struct {
	manifest string
	chart    *rawChart
}

type rawChart struct {
	Chart        string            `yaml:"chart" json:"chart"`
	Repo         string            `yaml:"repo,omitempty" json:"repo,omitempty"`
	Version      string            `yaml:"version,omitempty" json:"version,omitempty"`
	Release      string            `yaml:"release" json:"release"`
	Namespace    string            `yaml:"namespace" json:"namespace"`
	ValuesFiles  []string          `yaml:"valuesFiles,omitempty" json:"valuesFiles,omitempty"`
	Values       rawValues         `yaml:"values,omitempty" json:"values,omitzero"`
	SecretValues map[string]string `yaml:"secretValues,omitempty" json:"secretValues,omitempty"`
	CAFile       string            `yaml:"caFile,omitempty" json:"caFile,omitempty"`
	Username     string            `yaml:"username,omitempty" json:"username,omitempty"`
	Password     string            `yaml:"password,omitempty" json:"password,omitempty"`
	Timeout      string            `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// rawValues keeps the values mapping as a YAML node: its keys are the
// chart's, not ours, so it is not decoded strictly. When encoding, vals
// holds the resolved values instead.
type rawValues struct {
	node *yaml.Node
	vals map[string]any
}

// IsZero reports whether there are no values (for omitempty).
func (v rawValues) IsZero() bool { return v.node == nil && len(v.vals) == 0 }

// MarshalYAML writes the values mapping.
func (v rawValues) MarshalYAML() (any, error) {
	if v.node != nil {
		return v.node, nil
	}
	return v.vals, nil
}

// MarshalJSON writes the values mapping.
func (v rawValues) MarshalJSON() ([]byte, error) {
	if v.node != nil {
		var m map[string]any
		if err := v.node.Decode(&m); err != nil {
			return nil, err
		}
		return json.Marshal(m)
	}
	return json.Marshal(v.vals)
}

// MarshalYAML writes a manifest entry as its path, a chart as a mapping.
func (a rawAddon) MarshalYAML() (any, error) {
	if a.chart != nil {
		return a.chart, nil
	}
	return a.manifest, nil
}

// MarshalJSON writes a manifest entry as its path, a chart as an object.
func (a rawAddon) MarshalJSON() ([]byte, error) {
	if a.chart != nil {
		return json.Marshal(a.chart)
	}
	return json.Marshal(a.manifest)
}

// rawAddons writes resolved add-ons back in the schema Load reads: paths
// absolute, the timeout explicit, secrets as references.
func rawAddons(as []Addon) []rawAddon {
	var out []rawAddon
	for _, a := range as {
		if a.Chart == nil {
			out = append(out, rawAddon{manifest: a.Manifest})
			continue
		}
		c := a.Chart
		rc := &rawChart{Chart: c.Ref, Repo: c.Repo, Version: c.Version, Release: c.Release, Namespace: c.Namespace,
			ValuesFiles: c.ValuesFiles, Values: rawValues{vals: c.Values}, CAFile: c.CAFile, Username: c.Username,
			Password: c.Password.String(), Timeout: c.Timeout.String()}
		for k, ref := range c.SecretValues {
			if rc.SecretValues == nil {
				rc.SecretValues = map[string]string{}
			}
			rc.SecretValues[k] = ref.String()
		}
		out = append(out, rawAddon{chart: rc})
	}
	return out
}

// selfDecoder is a raw type that decodes its own YAML node.
type selfDecoder interface {
	decodeYAML(d *decoder, n *yaml.Node, path string)
}

// addrOf returns a pointer to v when v is addressable, else nil.
func addrOf(v reflect.Value) any {
	if !v.CanAddr() {
		return nil
	}
	return v.Addr().Interface()
}

func (a *rawAddon) decodeYAML(d *decoder, n *yaml.Node, path string) {
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag != "!!null" && n.Value != "":
		a.manifest = n.Value
	case n.Kind == yaml.MappingNode:
		a.chart = &rawChart{}
		d.decodeStruct(n, reflect.ValueOf(a.chart).Elem(), path)
	default:
		d.errorf(n, path, "want a manifest path, or a Helm chart mapping (chart:, version:, release:, namespace:), got %s", kindName(n))
	}
}

func (v *rawValues) decodeYAML(d *decoder, n *yaml.Node, path string) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping of chart values, got %s", kindName(n))
		return
	}
	v.node = n
}

// Helm refuses release names longer than 53 characters (the name goes into
// labels with a suffix).
var releaseNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$`)

// addons resolves every document's addons list, in file then entry order.
func (r *resolver) addons(docs []*doc) {
	releases := map[string]Pos{}
	for _, d := range docs {
		for i, ra := range d.raw.Addons {
			path := fmt.Sprintf("addons[%d]", i)
			a := Addon{Source: d.at(path)}
			if ra.chart == nil {
				if ra.manifest == "" {
					continue // reported while decoding
				}
				p, ok := r.addonFile(d, path, ra.manifest, "add-on manifest")
				if !ok {
					continue
				}
				a.Manifest = p
				r.inv.Addons = append(r.inv.Addons, a)
				continue
			}
			c, ok := r.chart(d, path, ra.chart)
			if !ok {
				continue
			}
			key := c.Namespace + "/" + c.Release
			if prev, dup := releases[key]; dup {
				r.errorf(d, path+".release", "release %s is already an add-on at %s: give each chart its own release name", key, prev)
				continue
			}
			releases[key] = a.Source
			a.Chart = c
			r.inv.Addons = append(r.inv.Addons, a)
		}
	}
}

// addonFile resolves p relative to the inventory file and checks it is a
// readable file.
func (r *resolver) addonFile(d *doc, path, p, what string) (string, bool) {
	abs := p
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(filepath.Dir(d.file), abs)
	}
	if a, err := filepath.Abs(abs); err == nil {
		abs = a
	}
	if fi, err := os.Stat(abs); err != nil || fi.IsDir() {
		r.errorf(d, path, "%s %s is not a readable file: paths are relative to this inventory file", what, p)
		return "", false
	}
	return abs, true
}

func (r *resolver) chart(d *doc, path string, rc *rawChart) (*Chart, bool) {
	nerr := len(r.errs.errs)
	c := &Chart{Release: rc.Release, Namespace: rc.Namespace, Repo: rc.Repo, Version: rc.Version, Username: rc.Username, Timeout: DefaultChartTimeout}
	switch {
	case rc.Release == "":
		r.errorf(d, path, "release is missing: name the Helm release (for example release: kueue)")
	case !releaseNameRE.MatchString(rc.Release):
		r.errorf(d, path+".release", "%q is not a valid release name: lowercase letters, digits and '-', at most 53 characters", rc.Release)
	}
	switch {
	case rc.Namespace == "":
		r.errorf(d, path, "namespace is missing: name the namespace the release goes to (it is created when missing)")
	case !isDNSLabel(rc.Namespace):
		r.errorf(d, path+".namespace", "%q is not a valid namespace name: lowercase letters, digits and '-', at most 63 characters", rc.Namespace)
	}
	ref := rc.Chart
	switch {
	case ref == "":
		r.errorf(d, path, "chart is missing: give a chart path, a chart name with repo:, an oci:// reference or an https:// archive URL (a manifest is written as the path alone)")
	case rc.Repo != "":
		c.Source, c.Ref = ChartRepository, ref
		if u, err := url.Parse(rc.Repo); err != nil || u.Scheme != "https" || u.Host == "" {
			r.errorf(d, path+".repo", "repo %q is not an https:// URL of a chart repository (plain HTTP is refused: charts could be altered on the way; for an OCI registry write chart: oci://HOST/PATH instead)", rc.Repo)
		}
		if strings.Contains(ref, "/") || strings.Contains(ref, ":") {
			r.errorf(d, path+".chart", "with repo:, chart is the chart's name in that repository, got %q", ref)
		}
		if rc.Version == "" {
			r.errorf(d, path, "version is missing: pin the chart version (for example version: 1.2.3) so the inventory says what gets installed")
		}
	case strings.HasPrefix(ref, "oci://"):
		c.Source, c.Ref = ChartOCI, ref
		rest := strings.TrimPrefix(ref, "oci://")
		host, repoPath, _ := strings.Cut(rest, "/")
		last := repoPath[strings.LastIndex(repoPath, "/")+1:]
		switch {
		case host == "" || repoPath == "":
			r.errorf(d, path+".chart", "%q is not an OCI chart reference: write oci://HOST/PATH/NAME", ref)
		case strings.ContainsAny(last, ":@"):
			r.errorf(d, path+".chart", "%q carries a tag or digest: write the reference without it and the chart version in version:", ref)
		}
		if rc.Version == "" {
			r.errorf(d, path, "version is missing: pin the chart version (for example version: 1.2.3) so the inventory says what gets installed")
		}
	case strings.HasPrefix(ref, "https://"):
		c.Source, c.Ref = ChartURL, ref
		if u, err := url.Parse(ref); err != nil || u.Host == "" {
			r.errorf(d, path+".chart", "%q is not a URL", ref)
		}
	case strings.Contains(ref, "://"):
		r.errorf(d, path+".chart", "%q: only oci:// references and https:// archive URLs are fetched (for a chart repository write repo: https://... and the chart's name)", ref)
	default:
		c.Source = ChartLocal
		abs := ref
		if !filepath.IsAbs(abs) {
			abs = filepath.Join(filepath.Dir(d.file), abs)
		}
		abs, _ = filepath.Abs(abs)
		c.Ref = abs
		fi, err := os.Stat(abs)
		switch {
		case err != nil:
			r.errorf(d, path+".chart", "chart %s is not there (paths are relative to this inventory file; for a chart repository add repo:)", ref)
		case fi.IsDir():
			if _, err := os.Stat(filepath.Join(abs, "Chart.yaml")); err != nil {
				r.errorf(d, path+".chart", "chart directory %s has no Chart.yaml", ref)
			}
		case !strings.HasSuffix(abs, ".tgz") && !strings.HasSuffix(abs, ".tar.gz"):
			r.errorf(d, path+".chart", "chart %s is neither a chart directory nor a chart archive (.tgz)", ref)
		}
	}
	for i, f := range rc.ValuesFiles {
		if p, ok := r.addonFile(d, fmt.Sprintf("%s.valuesFiles[%d]", path, i), f, "values file"); ok {
			c.ValuesFiles = append(c.ValuesFiles, p)
		}
	}
	if n := rc.Values.node; n != nil {
		var m map[string]any
		if err := n.Decode(&m); err != nil {
			r.errorf(d, path+".values", "values do not decode: %v", err)
		} else {
			c.Values = m
			r.checkValues(d, path+".values", n)
		}
	}
	keys := make([]string, 0, len(rc.SecretValues))
	for k := range rc.SecretValues {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kp := path + ".secretValues[" + k + "]"
		if _, err := SplitValuePath(k); err != nil {
			r.errorf(d, kp, "%v", err)
			continue
		}
		ref, err := ParseSecretRef(rc.SecretValues[k])
		if err != nil {
			r.errorf(d, kp, "%v", err)
			continue
		}
		if c.SecretValues == nil {
			c.SecretValues = map[string]SecretRef{}
		}
		c.SecretValues[k] = ref
	}
	if rc.CAFile != "" {
		if p, ok := r.addonFile(d, path+".caFile", rc.CAFile, "CA file"); ok {
			c.CAFile = p
		}
	}
	if rc.Password != "" {
		ref, err := ParseSecretRef(rc.Password)
		if err != nil {
			r.errorf(d, path+".password", "%v", err)
		} else {
			c.Password = ref
		}
		if rc.Username == "" {
			r.errorf(d, path+".password", "password without username: give the repository's username too")
		}
	}
	if (rc.Username != "" || rc.Password != "") && c.Source == ChartLocal {
		r.errorf(d, path+".username", "a local chart is read from disk: username and password are for repositories and registries")
	}
	if rc.Timeout != "" {
		t, err := time.ParseDuration(rc.Timeout)
		switch {
		case err != nil:
			r.errorf(d, path+".timeout", "%q is not a duration (want for example 5m or 90s)", rc.Timeout)
		case t <= 0:
			r.errorf(d, path+".timeout", "timeout %s is not positive", t)
		default:
			c.Timeout = t
		}
	}
	return c, len(r.errs.errs) == nerr
}

// checkValues refuses keys that are not plain strings (Helm values are JSON
// objects) and warns about inline values whose key names a secret.
func (r *resolver) checkValues(d *doc, path string, n *yaml.Node) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			kp := path + "." + k.Value
			if k.Kind != yaml.ScalarNode || (k.Tag != "!!str" && k.Tag != "!!merge") {
				r.errs.add(Pos{File: d.file, Line: k.Line, Col: k.Column}, kp, fmt.Sprintf("chart values need string keys, got %s: quote it", kindName(k)))
				continue
			}
			if v.Kind == yaml.ScalarNode && v.Tag == "!!str" && v.Value != "" && secretValueKey(k.Value) {
				r.errs.warn(Pos{File: d.file, Line: k.Line, Col: k.Column}, kp,
					fmt.Sprintf("%q looks like a secret written inline: if it is one, remove it and set it by reference, secretValues: {%q: env:VARIABLE} (or file:/path)", k.Value, strings.TrimPrefix(kp[len(path):], ".")))
			}
			r.checkValues(d, kp, v)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			r.checkValues(d, fmt.Sprintf("%s[%d]", path, i), c)
		}
	}
}

// secretValueKey reports whether a chart value's key names a secret value
// itself (adminPassword, apiKey, clientSecret) rather than where one is
// kept (existingSecret, passwordSecretName, tokenTTL).
func secretValueKey(k string) bool {
	l := strings.ToLower(k)
	for _, m := range []string{"existingsecret", "secretname", "secretref", "keyref", "passwordkey", "passwordsecretkey", "tokenkey", "file", "path", "ttl", "length", "enabled"} {
		if strings.Contains(l, m) {
			return false
		}
	}
	for _, w := range []string{"password", "passwd", "apikey", "api_key", "privatekey", "private_key", "clientsecret", "client_secret", "secretkey", "secret_key", "token"} {
		if strings.Contains(l, w) {
			return true
		}
	}
	return false
}

// SplitValuePath splits a dotted values path ("auth.admin\.password" is
// auth, then "admin.password") into its keys.
func SplitValuePath(p string) ([]string, error) {
	var keys []string
	var cur strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p) && p[i+1] == '.':
			cur.WriteByte('.')
			i++
		case p[i] == '.':
			keys = append(keys, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(p[i])
		}
	}
	keys = append(keys, cur.String())
	for _, k := range keys {
		if k == "" {
			return nil, fmt.Errorf("%q is not a values path: write keys separated by dots, for example auth.adminPassword", p)
		}
	}
	return keys, nil
}
