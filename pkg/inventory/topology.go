package inventory

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"go.yaml.in/yaml/v3"
)

// TopologyLabelPrefix starts the node label of every topology level:
// topology.slipway.dev/rack, topology.slipway.dev/block, ...
const TopologyLabelPrefix = "topology.slipway.dev/"

// Well-known Kubernetes topology labels that a level named zone or region
// also sets, so schedulers that know only these (the default spreading
// constraints, storage topology) see them too.
const (
	ZoneLabel   = "topology.kubernetes.io/zone"
	RegionLabel = "topology.kubernetes.io/region"
)

// TopologyLevel is one level of where a node sits in the site, such as
// block b1, rack r02 or leaf leaf-07.
type TopologyLevel struct {
	// Level is the level's name, a DNS label such as "rack".
	Level string `json:"level"`
	// Value is the node's domain at that level, a label value such as "r02".
	Value string `json:"value"`
}

// Label returns the node label key of the level.
func (l TopologyLevel) Label() string { return TopologyLabelPrefix + l.Level }

// TopologyLabels returns the node labels that say where n sits:
// topology.slipway.dev/LEVEL=VALUE for every level, plus
// topology.kubernetes.io/zone (or /region) for a level named zone (region).
func (n Node) TopologyLabels() map[string]string {
	if len(n.Topology) == 0 {
		return nil
	}
	out := make(map[string]string, len(n.Topology)+1)
	for _, l := range n.Topology {
		out[l.Label()] = l.Value
		switch l.Level {
		case "zone":
			out[ZoneLabel] = l.Value
		case "region":
			out[RegionLabel] = l.Value
		}
	}
	return out
}

// NodeLabels returns every label n registers with: its own labels and its
// topology labels (the inventory refuses a node where the two disagree).
func (n Node) NodeLabels() map[string]string {
	out := maps.Clone(n.Labels)
	if out == nil && len(n.Topology) > 0 {
		out = map[string]string{}
	}
	maps.Copy(out, n.TopologyLabels())
	return out
}

// orderedMap is a YAML mapping of names to strings whose order matters
// (topology levels, broadest first).
type orderedMap []mapItem

type mapItem struct{ Key, Value string }

func (m orderedMap) get(key string) (string, bool) {
	for _, it := range m {
		if it.Key == key {
			return it.Value, true
		}
	}
	return "", false
}

// MarshalYAML writes the mapping in its order.
func (m orderedMap) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	for _, it := range m {
		n.Content = append(n.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: it.Key},
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: it.Value})
	}
	return n, nil
}

// MarshalJSON writes the mapping as an object in its order.
func (m orderedMap) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, it := range m {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(it.Key)
		v, _ := json.Marshal(it.Value)
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// decodeOrdered decodes a mapping of names to single values, keeping order.
func (d *decoder) decodeOrdered(n *yaml.Node, path string) orderedMap {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping of level names to values (broadest level first), got %s", kindName(n))
		return nil
	}
	var m orderedMap
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		for val.Kind == yaml.AliasNode && val.Alias != nil {
			val = val.Alias
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "want a plain name as key, got %s", kindName(k))
			continue
		}
		kp := path + "[" + k.Value + "]"
		d.pos[kp] = d.at(k)
		if _, dup := m.get(k.Value); dup {
			d.errorf(k, kp, "duplicate key %q (the earlier one would be silently replaced)", k.Value)
			continue
		}
		if val.Kind != yaml.ScalarNode || val.Tag == "!!null" {
			d.errorf(val, kp, "want a single value, got %s", kindName(val))
			continue
		}
		m = append(m, mapItem{k.Value, val.Value})
	}
	return m
}

// topology checks a topology mapping as written (level names, values with
// placeholders) and returns its levels.
func (r *resolver) topology(d *doc, path string, m orderedMap) []TopologyLevel {
	var out []TopologyLevel
	for _, it := range m {
		kp := path + "[" + it.Key + "]"
		switch {
		case !isDNSLabel(it.Key) || len(TopologyLabelPrefix+it.Key) > 63+len(TopologyLabelPrefix):
			r.errorf(d, kp, "%q is not a topology level name: use lowercase letters, digits and '-' (such as block, rack or leaf)", it.Key)
			continue
		case it.Value == "":
			r.errorf(d, kp, "topology level %s has no value: name the node's %s", it.Key, it.Key)
			continue
		}
		if err := checkPlaceholders(it.Value); err != nil {
			r.errorf(d, kp, "%v", err)
			continue
		}
		if !labelValueRE.MatchString(strings.ReplaceAll(it.Value, indexPlaceholder, "0")) {
			r.errorf(d, kp, "%q is not a valid Kubernetes label value (at most 63 letters, digits, '-', '_', '.'), and each level becomes the node label %s", it.Value, TopologyLabelPrefix+it.Key)
			continue
		}
		out = append(out, TopologyLevel{Level: it.Key, Value: it.Value})
	}
	return out
}

// mergeTopology lays node levels over profile levels: a level both name
// keeps the profile's position and takes the node's value; the node's
// other levels follow in its order.
func mergeTopology(profile, node []TopologyLevel) []TopologyLevel {
	out := append([]TopologyLevel(nil), profile...)
	for _, l := range node {
		found := false
		for i := range out {
			if out[i].Level == l.Level {
				out[i].Value = l.Value
				found = true
				break
			}
		}
		if !found {
			out = append(out, l)
		}
	}
	return out
}

// topologyOrder warns once when two nodes list the same two levels in
// opposite orders: a scheduler's Topology has one order, broadest first.
type topologyOrder struct {
	first  map[[2]string]string // {a, b} -> the first node that has a before b
	warned map[[2]string]bool
}

func (o *topologyOrder) check(r *resolver, d *doc, path string, n Node) {
	if o.first == nil {
		o.first, o.warned = map[[2]string]string{}, map[[2]string]bool{}
	}
	for i, a := range n.Topology {
		for _, b := range n.Topology[i+1:] {
			rev := [2]string{b.Level, a.Level}
			if other, ok := o.first[rev]; ok && !o.warned[rev] {
				o.warned[rev] = true
				o.warned[[2]string{a.Level, b.Level}] = true
				r.warnf(d, path+".topology", "node %s lists topology level %s before %s, node %s the other way round: list levels broadest first, in the same order on every node", n.Name, a.Level, b.Level, other)
				continue
			}
			if _, ok := o.first[[2]string{a.Level, b.Level}]; !ok {
				o.first[[2]string{a.Level, b.Level}] = n.Name
			}
		}
	}
}

const indexPlaceholder = "{index}"

// checkPlaceholders refuses braces other than the one placeholder,
// {index}, so a typo such as {idx} or {index is not kept as text.
func checkPlaceholders(s string) error {
	for i := 0; i < len(s); i++ {
		if strings.HasPrefix(s[i:], indexPlaceholder) {
			i += len(indexPlaceholder) - 1
			continue
		}
		var frag string
		switch s[i] {
		case '{':
			frag = s[i:]
			if e := strings.IndexByte(frag, '}'); e >= 0 {
				frag = frag[:e+1]
			}
		case '}':
			frag = s[max(0, i-6) : i+1]
		default:
			continue
		}
		return fmt.Errorf("unknown placeholder %q in %q: the only placeholder is {index} (the node's index in its range)", frag, s)
	}
	return nil
}
