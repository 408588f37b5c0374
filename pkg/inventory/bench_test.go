package inventory

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// generated returns an inventory of n nodes written one entry per node (no
// ranges), as a large site's generated file would be.
func generated(n int) []byte {
	var b strings.Builder
	b.WriteString(`apiVersion: slipway.dev/v1alpha1
kind: Inventory
cluster: {name: big, kubernetesVersion: v1.37.2}
network:
  provisioner: {interface: eth0, address: 10.64.0.1}
  subnet: 10.64.0.0/16
profiles:
  cp: {role: control-plane, boot: {kernel: k, initrd: i}, bmc: {username: u, password: "env:P"}}
  w: {role: worker, boot: {kernel: k, initrd: i}, labels: {a: b}, bmc: {username: u, password: "env:P"}}
nodes:
`)
	for i := range n {
		prof := "w"
		if i < 3 {
			prof = "cp"
		}
		fmt.Fprintf(&b, "  - name: n%04d\n    profile: %s\n    rack: r%02d\n    slot: %d\n    mac: 52:54:00:%02x:%02x:%02x\n    ip: 10.64.%d.%d\n    bmc: {url: \"redfish://10.65.%d.%d\"}\n",
			i, prof, i/40, i%40, i>>16&0xff, i>>8&0xff, i&0xff, 1+i/250, 1+i%250, 1+i/250, 1+i%250)
	}
	return []byte(b.String())
}

// BenchmarkResolve1000 measures validating a 1000-node inventory; the goal
// is well under a second. The peer in the same run is a plain yaml decode
// of the same bytes into generic maps (no validation), so the ratio shows
// what strict decoding and validation cost on top of parsing.
func BenchmarkResolve1000(b *testing.B) {
	data := generated(1000)
	if _, err := Resolve(File{Name: "gen.yaml", Data: data}); err != nil {
		b.Fatalf("generated inventory is invalid: %v", err)
	}
	var ours, peer time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := Resolve(File{Name: "gen.yaml", Data: data}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		var v map[string]any
		if err := yaml.Unmarshal(data, &v); err != nil {
			b.Fatal(err)
		}
		ours += t1.Sub(t0)
		peer += time.Since(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(ours)/1e6/n, "ms-validate-1000")
	b.ReportMetric(float64(peer)/1e6/n, "ms-yaml-decode-only")
	b.ReportMetric(float64(ours)/float64(peer), "ratio")
}
