package controlplane

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// cliInventory points a one-node inventory at the throwaway control plane
// and lists the add-on fixtures.
const cliInventory = `apiVersion: slipway.dev/v1alpha1
kind: Inventory
cluster:
  name: cptest
  kubernetesVersion: v1.37.2
  controlPlaneEndpoint: %s
network:
  provisioner:
    interface: lo
    address: 10.77.0.1
  subnet: 10.77.0.0/24
profiles:
  lab:
    boot:
      kernel: vmlinuz
      initrd: initrd.img
    bmc:
      username: admin
      password: env:LAB_BMC_PASSWORD
nodes:
  - name: cp-01
    profile: lab
    role: control-plane
    mac: 52:54:00:99:00:11
    ip: 10.77.0.10
    bmc:
      url: ipmi://127.0.0.1:9623
addons:
%s`

// buildProvisioner compiles cmd/provisioner into dir.
func buildProvisioner(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "provisioner")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/provisioner").CombinedOutput()
	if err != nil {
		t.Fatalf("go build cmd/provisioner: %v\n%s", err, out)
	}
	return bin
}

// testCLI runs `provisioner config addons` and `config render` against the
// control plane, with the state directory holding the PKI the control plane
// was started from.
func testCLI(t *testing.T, cp *controlPlane) {
	dir := t.TempDir()
	bin := buildProvisioner(t, dir)
	files, _ := filepath.Glob(filepath.Join("testdata", "addons", "*.yaml"))
	var list strings.Builder
	for _, f := range files {
		abs, _ := filepath.Abs(f)
		fmt.Fprintf(&list, "  - %s\n", abs)
	}
	inv := writeFile(t, filepath.Join(dir, "inventory.yaml"), []byte(fmt.Sprintf(cliInventory, cp.endpoint, list.String())))
	run := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append(args, "-f", inv, "--state-dir", cp.dir)...)
		cmd.Env = append(os.Environ(), "LAB_BMC_PASSWORD=unused")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("config", "addons")
	if err != nil {
		t.Fatalf("provisioner config addons: %v\n%s", err, out)
	}
	for _, want := range []string{"DaemonSet slipway-addons/node-agent", "BatchQueue slipway-addons/gpu"} {
		if !strings.Contains(out, want) {
			t.Errorf("provisioner config addons output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, " created ") || strings.Contains(out, " configured ") {
		t.Errorf("provisioner config addons after the library applied the same manifests changed something:\n%s", out)
	}
	if _, err := cp.admin.CoreV1().ConfigMaps("slipway-addons").Get(context.Background(), "site-settings", metav1.GetOptions{}); err != nil {
		t.Errorf("ConfigMap from the add-ons not in the cluster: %v", err)
	}

	out, err = run("config", "render", "cp-01")
	if err != nil {
		t.Fatalf("provisioner config render cp-01: %v\n%s", err, out)
	}
	caLine := strings.Split(string(cp.pki.CACertPEM()), "\n")[1]
	if !strings.Contains(out, "kind: InitConfiguration") || !strings.Contains(out, caLine) {
		t.Errorf("config render cp-01 lacks the InitConfiguration or the state directory's CA:\n%s", out)
	}
	if strings.Contains(out, cp.pki.CertificateKey()) {
		t.Errorf("config render without --show-secrets printed the certificate key")
	}
	if strings.Contains(out, "throwaway CA") {
		t.Errorf("config render used a throwaway CA although the state directory holds the PKI:\n%s", out)
	}
}
