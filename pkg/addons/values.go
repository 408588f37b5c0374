package addons

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"helm.sh/helm/v4/pkg/chart/v2/loader"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// chartValues merges c's values files (in order), then its inline values,
// then its secret values (read now from their references). It returns the
// values in JSON form (as Helm stores them) and the secret strings, which
// nothing may print.
func chartValues(c *inventory.Chart) (map[string]any, []string, error) {
	vals := map[string]any{}
	for _, f := range c.ValuesFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("read values file: %w", err)
		}
		v, err := loader.LoadValues(bytes.NewReader(b))
		if err != nil {
			return nil, nil, fmt.Errorf("values file %s: %w", f, err)
		}
		vals = loader.MergeMaps(vals, v)
	}
	if len(c.Values) > 0 {
		inline, err := jsonForm(c.Values)
		if err != nil {
			return nil, nil, fmt.Errorf("inline values: %w", err)
		}
		vals = loader.MergeMaps(vals, inline)
	}
	keys := make([]string, 0, len(c.SecretValues))
	for k := range c.SecretValues {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var secrets []string
	for _, k := range keys {
		s, err := c.SecretValues[k].Resolve()
		if err != nil {
			return nil, nil, fmt.Errorf("secret value %s: %w", k, err)
		}
		path, err := inventory.SplitValuePath(k)
		if err != nil {
			return nil, nil, err
		}
		if err := setPath(vals, path, s.Reveal()); err != nil {
			return nil, nil, fmt.Errorf("secret value %s: %w", k, err)
		}
		secrets = append(secrets, s.Reveal())
	}
	out, err := jsonForm(vals)
	if err != nil {
		return nil, nil, err
	}
	return out, secrets, nil
}

// setPath sets m[path[0]]...[path[n-1]] = v, creating mappings on the way.
func setPath(m map[string]any, path []string, v any) error {
	for i, k := range path[:len(path)-1] {
		next, ok := m[k]
		if !ok || next == nil {
			n := map[string]any{}
			m[k] = n
			m = n
			continue
		}
		n, ok := next.(map[string]any)
		if !ok {
			return fmt.Errorf("%s is a %T in the other values, not a mapping", strings.Join(path[:i+1], "."), next)
		}
		m = n
	}
	m[path[len(path)-1]] = v
	return nil
}

// jsonForm returns v as encoding/json decodes it (numbers float64, maps
// map[string]any), the form Helm stores values in, so that values read
// from YAML and values read back from a release compare equal.
func jsonForm(v map[string]any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// sameValues reports whether two values trees are equal in JSON form.
func sameValues(a, b map[string]any) bool {
	ja, err1 := jsonForm(a)
	jb, err2 := jsonForm(b)
	if err1 != nil || err2 != nil {
		return false
	}
	if len(ja) == 0 && len(jb) == 0 {
		return true
	}
	return reflect.DeepEqual(ja, jb)
}

// redactor replaces secret strings in text with [redacted].
type redactor []string

func (r redactor) text(s string) string {
	for _, sec := range r {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

// err returns err with every secret replaced; errors.Is and As still see
// the original.
func (r redactor) err(err error) error {
	if err == nil || len(r) == 0 {
		return err
	}
	msg := r.text(err.Error())
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
