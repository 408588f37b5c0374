package kubeadm

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/slipway-dev/slipway/internal/testenv"
)

func testNodeConfigs(t *testing.T) map[string]NodeConfig {
	t.Helper()
	cp1, _, w1 := testNodes()
	init, err := InitConfig(testCluster(), cp1, testToken(cp1.Name), testCertKey)
	if err != nil {
		t.Fatal(err)
	}
	join, err := JoinConfig(testCluster(), w1, testToken(w1.Name), testCAHash, "", JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]NodeConfig{
		"init-cp-01": {Node: cp1, Kind: KindInit, Kubeadm: init, PhoneHomeURL: "http://10.77.0.1:8080/",
			PKIFiles: []File{{Path: CACertFile, Data: []byte("CA CERT\n")}, {Path: CAKeyFile, Data: []byte("CA KEY\n"), Secret: true}},
			Install:  DefaultInstall()},
		"join-gpu-01": {Node: w1, Kind: KindWorker, Kubeadm: join, PhoneHomeURL: "http://10.77.0.1:8080",
			Install: Install{Services: []string{"containerd", "kubelet", "nvidia-persistenced"}}},
	}
}

func TestNodeConfigGolden(t *testing.T) {
	t.Parallel()
	for name, nc := range testNodeConfigs(t) {
		cc, err := nc.Render(FormatCloudConfig)
		if err != nil {
			t.Fatalf("Render(cloud-config) for %s: %v", name, err)
		}
		golden(t, name+".cloud-config.golden", cc)
		sh, err := nc.Render(FormatScript)
		if err != nil {
			t.Fatalf("Render(script) for %s: %v", name, err)
		}
		golden(t, name+".sh.golden", sh)
	}
}

// TestCloudConfigCarriesFiles decodes the cloud-config as cloud-init would
// and checks each file's path, mode and content.
func TestCloudConfigCarriesFiles(t *testing.T) {
	t.Parallel()
	nc := testNodeConfigs(t)["init-cp-01"]
	out, err := nc.CloudConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(out, []byte("#cloud-config\n")) {
		t.Fatalf("CloudConfig does not start with #cloud-config:\n%s", out)
	}
	var cc cloudConfig
	if err := yaml.UnmarshalStrict(out, &cc); err != nil {
		t.Fatalf("parse cloud-config: %v", err)
	}
	got := map[string]string{}
	for _, f := range cc.WriteFiles {
		got[f.Path+" "+f.Permissions] = f.Content
	}
	for key, want := range map[string]string{
		NodeKubeadmConfig + " 0600":       string(nc.Kubeadm),
		"/etc/kubernetes/pki/ca.crt 0644": "CA CERT\n",
		"/etc/kubernetes/pki/ca.key 0600": "CA KEY\n",
	} {
		if got[key] != want {
			t.Errorf("cloud-config file %q = %q, want %q", key, got[key], want)
		}
	}
	if len(cc.RunCmd) != 1 || cc.RunCmd[0][1] != NodeJoinScript {
		t.Errorf("runcmd = %v, want [[/bin/sh %s]]", cc.RunCmd, NodeJoinScript)
	}
}

// TestScriptRunsSteps runs the shell form under sh with kubeadm, systemctl
// and wget replaced by recorders, in a throwaway root: it must write the
// files with their modes, run the steps in order and report each one.
func TestScriptRunsSteps(t *testing.T) {
	t.Parallel()
	testenv.RequireCommands(t, "sh", "base64", "sed")
	nc := testNodeConfigs(t)["join-gpu-01"]
	nc.Install = Install{}
	// Loopback only, and curl is a stub: the test sends nothing anywhere.
	nc.PhoneHomeURL = "http://127.0.0.1:9"
	root := t.TempDir()
	bin := filepath.Join(root, "bin")
	os.MkdirAll(bin, 0o755)
	log := filepath.Join(root, "calls")
	for _, name := range []string{"kubeadm", "systemctl", "curl", "wget"} {
		stub := "#!/bin/sh\necho \"" + name + " $*\" >> " + log + "\n"
		if err := os.WriteFile(filepath.Join(bin, name), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Point the script's absolute paths into the throwaway root.
	script := strings.ReplaceAll(string(nc.Script()), "/etc/kubernetes/", root+"/etc/kubernetes/")
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("script failed: %v\n%s", err, out)
	}
	calls, _ := os.ReadFile(log)
	cfg := root + NodeKubeadmConfig
	want := strings.Join([]string{
		"curl -fsS -m 10 -X POST --data-binary step=enable-containerd status=started http://127.0.0.1:9/phone-home/gpu-01",
		"systemctl enable --now containerd",
		"curl -fsS -m 10 -X POST --data-binary step=enable-containerd status=ok http://127.0.0.1:9/phone-home/gpu-01",
		"curl -fsS -m 10 -X POST --data-binary step=enable-kubelet status=started http://127.0.0.1:9/phone-home/gpu-01",
		"systemctl enable --now kubelet",
		"curl -fsS -m 10 -X POST --data-binary step=enable-kubelet status=ok http://127.0.0.1:9/phone-home/gpu-01",
		"curl -fsS -m 10 -X POST --data-binary step=kubeadm-join status=started http://127.0.0.1:9/phone-home/gpu-01",
		"kubeadm join --config " + cfg,
		"curl -fsS -m 10 -X POST --data-binary step=kubeadm-join status=ok http://127.0.0.1:9/phone-home/gpu-01",
		"curl -fsS -m 10 -X POST --data-binary step=remove-config status=started http://127.0.0.1:9/phone-home/gpu-01",
		"curl -fsS -m 10 -X POST --data-binary step=remove-config status=ok http://127.0.0.1:9/phone-home/gpu-01",
		"curl -fsS -m 10 -X POST --data-binary step=done status=ok http://127.0.0.1:9/phone-home/gpu-01",
	}, "\n") + "\n"
	if string(calls) != want {
		t.Errorf("script calls:\n%s\nwant:\n%s", calls, want)
	}
	if _, err := os.Stat(cfg); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("kubeadm configuration %s left on the node after the join (stat: %v)", cfg, err)
	}
}

// TestScriptStopsOnFailure checks that a failing kubeadm stops the script,
// is reported as failed, and leaves the configuration for a retry.
func TestScriptStopsOnFailure(t *testing.T) {
	t.Parallel()
	testenv.RequireCommands(t, "sh", "base64", "sed")
	nc := testNodeConfigs(t)["join-gpu-01"]
	nc.Install = Install{Services: []string{"kubelet"}}
	nc.PhoneHomeURL = "http://127.0.0.1:9"
	root := t.TempDir()
	bin := filepath.Join(root, "bin")
	os.MkdirAll(bin, 0o755)
	log := filepath.Join(root, "calls")
	os.WriteFile(filepath.Join(bin, "kubeadm"), []byte("#!/bin/sh\nexit 3\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "systemctl"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "curl"), []byte("#!/bin/sh\necho \"$7\" >> "+log+"\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "wget"), []byte("#!/bin/sh\nexit 1\n"), 0o755)
	script := strings.ReplaceAll(string(nc.Script()), "/etc/kubernetes/", root+"/etc/kubernetes/")
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin"}
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("script with failing kubeadm: err = %v, want exit status 3", err)
	}
	calls, _ := os.ReadFile(log)
	if !strings.HasSuffix(string(calls), "step=kubeadm-join status=failed rc=3\n") {
		t.Errorf("reports end with %q, want the kubeadm-join failure last", calls)
	}
}

func TestShQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": "''", "kubelet": "kubelet", "a b": "'a b'", "it's": `'it'\''s'`, "$(x)": "'$(x)'"} {
		if got := shQuote(in); got != want {
			t.Errorf("shQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestCloudConfigSchema checks every rendered cloud-config with cloud-init's
// own schema validator.
func TestCloudConfigSchema(t *testing.T) {
	t.Parallel()
	bins := testenv.RequireCommands(t, "cloud-init")
	dir := t.TempDir()
	for name, nc := range testNodeConfigs(t) {
		out, err := nc.CloudConfig()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		if msg, err := exec.Command(bins["cloud-init"], "schema", "--config-file", path).CombinedOutput(); err != nil {
			t.Errorf("cloud-init schema %s: %v\n%s", name, err, msg)
		}
	}
}

// TestScriptInstallsPackages runs the first control plane's script with a
// Debian and a Rocky os-release: it installs the family's packages with the
// family's tool, writes the CA files and runs kubeadm init.
func TestScriptInstallsPackages(t *testing.T) {
	t.Parallel()
	testenv.RequireCommands(t, "sh")
	for _, tc := range []struct{ osRelease, want string }{
		{"ID=debian\nVERSION_ID=12\n", "apt-get install -y -q containerd kubelet kubeadm"},
		{"ID=rocky\nID_LIKE=\"rhel centos fedora\"\n", "dnf install -y -q containerd kubelet kubeadm"},
	} {
		nc := testNodeConfigs(t)["init-cp-01"]
		nc.PhoneHomeURL = ""
		root := t.TempDir()
		bin := filepath.Join(root, "bin")
		os.MkdirAll(bin, 0o755)
		log := filepath.Join(root, "calls")
		for _, name := range []string{"kubeadm", "systemctl", "apt-get", "dnf", "curl", "wget"} {
			os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\necho \""+name+" $*\" >> "+log+"\n"), 0o755)
		}
		osr := filepath.Join(root, "os-release")
		os.WriteFile(osr, []byte(tc.osRelease), 0o644)
		script := strings.ReplaceAll(string(nc.Script()), "/etc/kubernetes/", root+"/etc/kubernetes/")
		script = strings.ReplaceAll(script, "/etc/os-release", osr)
		cmd := exec.Command("sh", "-c", script)
		cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("script (%q) failed: %v\n%s", tc.osRelease, err, out)
		}
		calls, _ := os.ReadFile(log)
		if !strings.Contains(string(calls), tc.want) || !strings.Contains(string(calls), "kubeadm init --config") {
			t.Errorf("script (%q) calls:\n%s\nwant %q and kubeadm init", tc.osRelease, calls, tc.want)
		}
		key, err := os.ReadFile(filepath.Join(root, "etc/kubernetes/pki/ca.key"))
		fi, _ := os.Stat(filepath.Join(root, "etc/kubernetes/pki/ca.key"))
		if err != nil || string(key) != "CA KEY\n" || fi.Mode().Perm() != 0o600 {
			t.Errorf("ca.key written as %q (%v), mode %v; want \"CA KEY\\n\" 0600", key, err, fi.Mode().Perm())
		}
	}
}
