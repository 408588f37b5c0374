package addons

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

func TestChartValues(t *testing.T) {
	dir := t.TempDir()
	f1 := filepath.Join(dir, "base.yaml")
	f2 := filepath.Join(dir, "site.yaml")
	os.WriteFile(f1, []byte("replicas: 1\nimage: {repo: r, tag: \"1.0\"}\nauth: {user: admin}\n"), 0o644)
	os.WriteFile(f2, []byte("image: {tag: \"1.1\"}\nnodeSelector: {rack: r01}\n"), 0o644)
	secret := filepath.Join(dir, "token")
	os.WriteFile(secret, []byte("s3cr3t-value\n"), 0o600)
	t.Setenv("SLIPWAY_TEST_PASSWORD", "pw-from-env")
	c := &inventory.Chart{
		ValuesFiles: []string{f1, f2},
		Values:      map[string]any{"replicas": 3, "nodeSelector": map[string]any{"gpu": "h100"}},
		SecretValues: map[string]inventory.SecretRef{
			"auth.password":                     {Source: "env", Name: "SLIPWAY_TEST_PASSWORD"},
			`podAnnotations.example\.org/token`: {Source: "file", Name: secret},
		},
	}
	vals, secrets, err := chartValues(c)
	if err != nil {
		t.Fatalf("chartValues: %v", err)
	}
	want := map[string]any{
		"replicas":       float64(3),
		"image":          map[string]any{"repo": "r", "tag": "1.1"},
		"nodeSelector":   map[string]any{"rack": "r01", "gpu": "h100"},
		"auth":           map[string]any{"user": "admin", "password": "pw-from-env"},
		"podAnnotations": map[string]any{"example.org/token": "s3cr3t-value"},
	}
	if diff := cmp.Diff(want, vals); diff != "" {
		t.Errorf("chartValues (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"pw-from-env", "s3cr3t-value"}, secrets); diff != "" {
		t.Errorf("chartValues secrets (-want +got):\n%s", diff)
	}
}

func TestChartValuesErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("a: [\n"), 0o644)
	tests := []struct {
		name string
		c    inventory.Chart
		want string
	}{
		{"unparsable values file", inventory.Chart{ValuesFiles: []string{bad}}, "values file " + bad},
		{"unset secret", inventory.Chart{SecretValues: map[string]inventory.SecretRef{"a": {Source: "env", Name: "SLIPWAY_TEST_UNSET_VARIABLE"}}}, "environment variable SLIPWAY_TEST_UNSET_VARIABLE is not set"},
		{"secret under a scalar", inventory.Chart{Values: map[string]any{"auth": "x"}, SecretValues: map[string]inventory.SecretRef{"auth.password": {Source: "file", Name: "/etc/hostname"}}}, "auth is a string in the other values, not a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := chartValues(&tt.c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("chartValues(%+v) = %v, want an error containing %q", tt.c, err, tt.want)
			}
		})
	}
}

func TestSameValues(t *testing.T) {
	t.Parallel()
	// Values as decoded from YAML (ints) equal the same values read back
	// from a release (JSON numbers); nil and empty are the same.
	if !sameValues(map[string]any{"n": 3, "m": map[string]any{"k": []any{1, "x"}}}, map[string]any{"n": float64(3), "m": map[string]any{"k": []any{float64(1), "x"}}}) {
		t.Error("sameValues(ints, float64s) = false, want true")
	}
	if !sameValues(nil, map[string]any{}) {
		t.Error("sameValues(nil, {}) = false, want true")
	}
	if sameValues(map[string]any{"n": 3}, map[string]any{"n": 4}) {
		t.Error("sameValues(3, 4) = true, want false")
	}
}

func TestRedactor(t *testing.T) {
	t.Parallel()
	r := redactor{"hunter2"}
	base := errors.New("template: x: value hunter2 is not an integer")
	err := r.err(base)
	if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("redactor.err = %q, want the secret replaced", err)
	}
	if !errors.Is(err, base) {
		t.Error("redactor.err hides the original from errors.Is")
	}
	if other := errors.New("no secret here"); r.err(other) != other {
		t.Error("redactor.err wrapped an error without a secret")
	}
}
