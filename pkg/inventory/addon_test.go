package inventory

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestAddons(t *testing.T) {
	t.Parallel()
	dir, err := filepath.Abs(filepath.Join("testdata", "addons"))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := Load(filepath.Join(dir, "base.yaml"), filepath.Join(dir, "valid.yaml"))
	if err != nil {
		t.Fatalf("Load(base.yaml, valid.yaml): %v", err)
	}
	src := func(line, col int) Pos { return Pos{File: filepath.Join(dir, "valid.yaml"), Line: line, Col: col} }
	want := []Addon{
		{Manifest: filepath.Join(dir, "cni.yaml"), Source: src(4, 5)},
		{Chart: &Chart{Release: "site", Namespace: "site-system", Source: ChartLocal, Ref: filepath.Join(dir, "charts", "site"), Timeout: DefaultChartTimeout}, Source: src(5, 5)},
		{Chart: &Chart{
			Release: "kueue", Namespace: "kueue-system", Source: ChartRepository, Ref: "kueue", Repo: "https://charts.example.org/kueue", Version: "0.13.4",
			ValuesFiles: []string{filepath.Join(dir, "values", "kueue.yaml")},
			Values: map[string]any{
				"controllerManager": map[string]any{"manager": map[string]any{"resources": map[string]any{"limits": map[string]any{"cpu": "2"}}}},
				"grafana":           map[string]any{"adminPassword": "prom-operator", "existingSecret": "grafana-admin"},
			},
			SecretValues: map[string]SecretRef{
				"redfish.password":               {Source: "env", Name: "BMC_PASSWORD"},
				`annotations.example\.org/token`: {Source: "file", Name: "/etc/slipway/token"},
			},
			Timeout: 90 * time.Second,
		}, Source: src(8, 5)},
		{Chart: &Chart{
			Release: "volcano", Namespace: "volcano-system", Source: ChartOCI, Ref: "oci://registry.example.org/charts/volcano", Version: "1.12.1",
			CAFile: filepath.Join(dir, "cni.yaml"), Username: "robot", Password: SecretRef{Source: "env", Name: "REGISTRY_PASSWORD"},
			Timeout: DefaultChartTimeout,
		}, Source: src(22, 5)},
	}
	if diff := cmp.Diff(want, inv.Addons); diff != "" {
		t.Errorf("Load(valid.yaml) addons (-want +got):\n%s", diff)
	}
	// The inline adminPassword is warned about, existingSecret is not.
	var warned []string
	for _, w := range inv.Warnings {
		if strings.Contains(w, "looks like a secret") {
			warned = append(warned, w)
		}
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "valid.yaml:17:") || !strings.Contains(warned[0], "grafana.adminPassword") {
		t.Errorf("Load(valid.yaml) secret warnings = %q, want one for grafana.adminPassword at line 17", warned)
	}
	if n := inv.Addons[0].Name(); n != filepath.Join(dir, "cni.yaml") {
		t.Errorf("manifest Name() = %q, want its path", n)
	}
	if s := inv.Addons[2].String(); s != "chart release kueue-system/kueue ("+src(8, 5).String()+")" {
		t.Errorf("chart String() = %q", s)
	}
}

func TestAddonsInvalid(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "addons")
	_, err := Load(filepath.Join(dir, "base.yaml"), filepath.Join(dir, "invalid.yaml"))
	if err == nil {
		t.Fatal("Load(invalid.yaml) = nil error, want every problem reported")
	}
	golden(t, filepath.Join("addons", "invalid"), strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")+"\n")
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Load(invalid.yaml) echoed the inline password:\n%v", err)
	}
}

func TestSplitValuePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{"a", []string{"a"}},
		{"auth.adminPassword", []string{"auth", "adminPassword"}},
		{`podAnnotations.example\.org/token`, []string{"podAnnotations", "example.org/token"}},
	}
	for _, tt := range tests {
		got, err := SplitValuePath(tt.in)
		if err != nil || !cmp.Equal(tt.want, got) {
			t.Errorf("SplitValuePath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", ".a", "a.", "a..b"} {
		if _, err := SplitValuePath(bad); err == nil {
			t.Errorf("SplitValuePath(%q) = nil error, want one", bad)
		}
	}
}

// What inventory show prints for add-ons loads again to the same add-ons.
func TestAddonsRoundTrip(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "addons")
	want, err := Load(filepath.Join(dir, "base.yaml"), filepath.Join(dir, "valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []struct {
		name string
		fn   func() ([]byte, error)
	}{{"yaml", want.EncodeYAML}, {"json", want.EncodeJSON}} {
		b, err := enc.fn()
		if err != nil {
			t.Fatalf("Encode%s: %v", enc.name, err)
		}
		got, err := Resolve(File{Name: "show." + enc.name, Data: b})
		if err != nil {
			t.Fatalf("the %s inventory show prints does not load:\n%v\n%s", enc.name, err, b)
		}
		if diff := cmp.Diff(want.Addons, got.Addons, cmpopts.IgnoreFields(Addon{}, "Source")); diff != "" {
			t.Errorf("%s round trip changed the add-ons (-loaded +reloaded):\n%s", enc.name, diff)
		}
		if enc.name == "yaml" && !strings.Contains(string(b), "password: env:REGISTRY_PASSWORD") {
			t.Errorf("EncodeYAML does not write the registry password as its reference:\n%s", b)
		}
	}
}
