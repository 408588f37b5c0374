package inventory

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decoder decodes a YAML node tree into the raw schema structs strictly: an
// unknown field, a duplicate key or a wrong type is recorded as an error with
// its position, and decoding goes on so every mistake is reported at once.
type decoder struct {
	file    string
	pos     map[string]Pos // field path -> position of its value
	errs    *errorList
	structs map[reflect.Type]*structFields
}

// structFields are a struct type's YAML field names, computed once per
// type rather than once per node.
type structFields struct {
	index map[string]int
	names []string
}

func (d *decoder) fieldsOf(t reflect.Type) *structFields {
	if f, ok := d.structs[t]; ok {
		return f
	}
	f := &structFields{index: make(map[string]int, t.NumField())}
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			f.index[name] = i
			f.names = append(f.names, name)
		}
	}
	if d.structs == nil {
		d.structs = map[reflect.Type]*structFields{}
	}
	d.structs[t] = f
	return f
}

func (d *decoder) at(n *yaml.Node) Pos { return Pos{File: d.file, Line: n.Line, Col: n.Column} }

func (d *decoder) errorf(n *yaml.Node, path, format string, a ...any) {
	d.errs.add(d.at(n), path, fmt.Sprintf(format, a...))
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing (null)"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlName returns the field's YAML name from its tag.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	d.pos[path] = d.at(n)
	if v.Type() == orderedMapType {
		v.Set(reflect.ValueOf(d.decodeOrdered(n, path)))
		return
	}
	if sd, ok := addrOf(v).(selfDecoder); ok {
		sd.decodeYAML(d, n, path)
		return
	}
	isNull := n.Kind == yaml.ScalarNode && n.Tag == "!!null"
	switch v.Kind() {
	case reflect.Pointer:
		if isNull {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		if isNull {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "want a mapping of names to values, got %s", kindName(n))
			return
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				d.errorf(k, path, "want a plain name as key, got %s", kindName(k))
				continue
			}
			kp := path + "[" + k.Value + "]"
			if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				d.errorf(k, kp, "duplicate key %q (the earlier one would be silently replaced)", k.Value)
				continue
			}
			e := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, e, kp)
			m.SetMapIndex(reflect.ValueOf(k.Value), e)
		}
		v.Set(m)
	case reflect.Slice:
		if isNull {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "want a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String:
		if isNull {
			return
		}
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, path, "want a single value, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || (n.Value != "true" && n.Value != "false") {
			d.errorf(n, path, "want true or false, got %s", kindName(n))
			return
		}
		v.SetBool(n.Value == "true")
	case reflect.Int:
		i, err := strconv.Atoi(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil {
			d.errorf(n, path, "want a whole number, got %s", kindName(n))
			return
		}
		v.SetInt(int64(i))
	default:
		d.errorf(n, path, "internal error: cannot decode into %s", v.Type())
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping of fields, got %s", kindName(n))
		return
	}
	sf := d.fieldsOf(v.Type())
	fields, names := sf.index, sf.names
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		kp := joinPath(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "want a field name as key, got %s", kindName(k))
			continue
		}
		idx, ok := fields[k.Value]
		if !ok {
			d.errorf(k, kp, "%s", unknownFieldMessage(k.Value, names))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, kp, "field %q is given twice (the earlier one would be silently replaced)", k.Value)
			continue
		}
		seen[k.Value] = true
		d.decode(val, v.Field(idx), kp)
	}
}

// unknownFieldMessage explains an unknown field, suggesting the nearest
// known name and steering secret-looking fields to references.
func unknownFieldMessage(name string, known []string) string {
	if secretLike(name) {
		return fmt.Sprintf("unknown field %q: secrets never go in the inventory; give the BMC password as a reference, password: env:VARIABLE or password: file:/path", name)
	}
	msg := fmt.Sprintf("unknown field %q", name)
	if s := closest(name, known); s != "" {
		msg += fmt.Sprintf(", did you mean %q?", s)
	} else {
		sorted := append([]string(nil), known...)
		sort.Strings(sorted)
		msg += "; known fields here: " + strings.Join(sorted, ", ")
	}
	return msg
}

// closest returns the known name nearest to name when it is a plausible typo.
func closest(name string, known []string) string {
	best, bestD := "", 1<<30
	for _, k := range known {
		if len(name) >= 3 && strings.HasPrefix(strings.ToLower(k), strings.ToLower(name)) {
			return k
		}
		dist := editDistance(strings.ToLower(name), strings.ToLower(k))
		if dist < bestD {
			best, bestD = k, dist
		}
	}
	limit := max(1, (len(name)+1)/3)
	if bestD <= limit {
		return best
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// secretLike reports whether a field name looks like it holds a secret.
func secretLike(name string) bool {
	lower := strings.ToLower(name)
	for _, w := range []string{"pass", "secret", "token", "credential", "apikey", "api_key", "privatekey"} {
		if strings.Contains(lower, w) {
			return true
		}
	}
	return false
}

func reflectValue(p any) reflect.Value { return reflect.ValueOf(p).Elem() }

var orderedMapType = reflect.TypeFor[orderedMap]()
