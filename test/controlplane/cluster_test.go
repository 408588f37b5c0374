package controlplane

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/kubeadm"
)

// buildCommand is what to run when the upstream binaries are missing.
const buildCommand = "test/tools/build.sh"

// toolsBin returns the directory of the upstream binaries.
func toolsBin() string {
	if d := os.Getenv("SLIPWAY_TOOLS_BIN"); d != "" {
		return d
	}
	abs, _ := filepath.Abs(filepath.Join("..", "tools", "bin"))
	return abs
}

// requireTools returns the paths of the named upstream binaries, skipping
// (or failing under SLIPWAY_E2E=1) with the build command when one is missing.
func requireTools(t testing.TB, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		p := filepath.Join(toolsBin(), n)
		if _, err := os.Stat(p); err != nil {
			msg := fmt.Sprintf("%s is not built: run %s (a first build takes tens of minutes on two cores)", p, buildCommand)
			if testenv.E2E() {
				t.Fatalf("SLIPWAY_E2E=1 but %s", msg)
			}
			t.Skipf("skipping: %s", msg)
		}
		out[n] = p
	}
	return out
}

// controlPlane is a throwaway control plane on a loopback address of its own.
type controlPlane struct {
	dir string
	pki *kubeadm.PKI
	// endpoint is 127.X.Y.1:PORT of the API server.
	endpoint string
	// admin is a client with our admin kubeconfig (group kubeadm:cluster-admins).
	admin     kubernetes.Interface
	adminREST *rest.Config
	adminKC   []byte
	bins      map[string]string
	// proxyCert and proxyKey are the front-proxy client certificate (front-proxy CA).
	proxyCert, proxyKey []byte
}

// server returns https://endpoint.
func (cp *controlPlane) server() string { return "https://" + cp.endpoint }

// cluster returns the inventory cluster settings that point at this control plane.
func (cp *controlPlane) cluster() inventory.Cluster {
	return inventory.Cluster{
		Name: "slipway-test", KubernetesVersion: "v1.37.2", ControlPlaneEndpoint: cp.endpoint,
		PodSubnet: netip.MustParsePrefix("10.244.0.0/16"), ServiceSubnet: netip.MustParsePrefix("10.96.0.0/12"),
		DNSDomain: "cluster.local",
	}
}

// serverAddr returns a loopback address of this control plane's own,
// 127.X.Y.1 at random, and a random high port base. etcd and
// kube-apiserver bind their own sockets (a process cannot be handed one),
// so instead of probing a free port and releasing it for them (another
// process may take it meanwhile), each control plane gets an address
// nothing else on the machine uses; a server that cannot bind anyway exits
// at once, and waitHealthy reports that with its log.
func serverAddr() (net.IP, int) {
	return net.IPv4(127, byte(16+rand.IntN(224)), byte(rand.IntN(256)), 1), 20000 + 10*rand.IntN(4000)
}

// startProcess runs bin with args, logging to dir/name.log, and stops it
// when the test ends.
func startProcess(t testing.TB, dir, name, bin string, args ...string) <-chan struct{} {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
			if len(b) > 3000 {
				b = b[len(b)-3000:]
			}
			t.Logf("%s log tail:\n%s", name, b)
		}
	})
	return done
}

func writeFile(t testing.TB, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startControlPlane starts etcd, kube-apiserver and kube-controller-manager
// with the PKI pkg/kubeadm generates, then does what kubeadm init's
// bootstrap-token phase does: publish cluster-info for anonymous discovery
// and bind the admin and bootstrap groups.
func startControlPlane(t testing.TB) *controlPlane {
	t.Helper()
	bins := requireTools(t, "etcd", "kube-apiserver", "kube-controller-manager", "kubeadm")
	dir := t.TempDir()
	pki, err := kubeadm.EnsurePKI(kubeadm.PKIConfig{Dir: filepath.Join(dir, "pki")})
	if err != nil {
		t.Fatalf("EnsurePKI: %v", err)
	}
	now := time.Now()

	// etcd serves TLS with a certificate from our etcd CA and requires
	// client certificates from it; peers talk plain HTTP on loopback (one member).
	ip, base := serverAddr()
	clientPort, peerPort, port := base, base+1, base+2
	etcdURL := fmt.Sprintf("https://%s:%d", ip, clientPort)
	peerURL := fmt.Sprintf("http://%s:%d", ip, peerPort)
	loopback := certutil.AltNames{IPs: []net.IP{ip, net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
	etcdCert, etcdKey, err := pki.Issue(kubeadm.EtcdCA, kubeadm.CertRequest{CommonName: "etcd-server", Hosts: loopback, Server: true, Client: true}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	etcdCA := filepath.Join(pki.Dir(), kubeadm.EtcdCACertFile)
	etcdDone := startProcess(t, dir, "etcd", bins["etcd"], "--name=test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--cert-file="+writeFile(t, filepath.Join(dir, "etcd-server.crt"), etcdCert),
		"--key-file="+writeFile(t, filepath.Join(dir, "etcd-server.key"), etcdKey),
		"--client-cert-auth=true", "--trusted-ca-file="+etcdCA,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=test="+peerURL, "--log-level=warn")
	apiEtcdCert, apiEtcdKey, err := pki.Issue(kubeadm.EtcdCA, kubeadm.CertRequest{CommonName: "kube-apiserver-etcd-client", Client: true}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	proxyCert, proxyKey, err := pki.Issue(kubeadm.FrontProxyCA, kubeadm.CertRequest{CommonName: "front-proxy-client", Client: true}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	// kube-apiserver with a serving certificate from our cluster CA.
	srvCert, srvKey, err := pki.ServingCert("kube-apiserver", certutil.AltNames{
		IPs: []net.IP{ip, net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost", "kubernetes", "kubernetes.default"},
	}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	endpoint := net.JoinHostPort(ip.String(), strconv.Itoa(port))
	apiDone := startProcess(t, dir, "kube-apiserver", bins["kube-apiserver"],
		"--etcd-servers="+etcdURL, "--etcd-cafile="+etcdCA,
		"--etcd-certfile="+writeFile(t, filepath.Join(dir, "apiserver-etcd-client.crt"), apiEtcdCert),
		"--etcd-keyfile="+writeFile(t, filepath.Join(dir, "apiserver-etcd-client.key"), apiEtcdKey),
		"--requestheader-client-ca-file="+filepath.Join(pki.Dir(), kubeadm.FrontProxyCACertFile),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file="+writeFile(t, filepath.Join(dir, "front-proxy-client.crt"), proxyCert),
		"--proxy-client-key-file="+writeFile(t, filepath.Join(dir, "front-proxy-client.key"), proxyKey),
		"--bind-address="+ip.String(), "--advertise-address="+ip.String(), "--secure-port="+strconv.Itoa(port),
		"--tls-cert-file="+writeFile(t, filepath.Join(dir, "apiserver.crt"), srvCert),
		"--tls-private-key-file="+writeFile(t, filepath.Join(dir, "apiserver.key"), srvKey),
		"--client-ca-file="+filepath.Join(pki.Dir(), kubeadm.CACertFile),
		"--enable-bootstrap-token-auth=true",
		"--allow-privileged=true", // as kubeadm sets it: privileged DaemonSets (the DRA driver) apply
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(pki.Dir(), kubeadm.SAPubFile),
		"--service-account-signing-key-file="+filepath.Join(pki.Dir(), kubeadm.SAKeyFile),
		"--service-cluster-ip-range=10.96.0.0/12",
		"--endpoint-reconciler-type=none",
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		"--profiling=false")

	// A system:masters identity for setting the cluster up, as kubeadm
	// init's super-admin.conf; the tests themselves use the admin kubeconfig.
	suCert, suKey, err := pki.ClientCert("kubernetes-super-admin", []string{"system:masters"}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	suKC, err := kubeadm.Kubeconfig("https://"+endpoint, pki.CACertPEM(), "super-admin", suCert, suKey)
	if err != nil {
		t.Fatal(err)
	}
	suREST, err := kubeadm.RESTConfig(suKC)
	if err != nil {
		t.Fatal(err)
	}
	su := kubernetes.NewForConfigOrDie(suREST)
	waitHealthy(t, su, map[string]<-chan struct{}{"etcd": etcdDone, "kube-apiserver": apiDone})

	startProcess(t, dir, "kube-controller-manager", bins["kube-controller-manager"],
		"--kubeconfig="+writeFile(t, filepath.Join(dir, "controller-manager.conf"), suKC),
		"--controllers=bootstrapsigner,tokencleaner,garbage-collector-controller",
		"--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false",
		"--use-service-account-credentials=false")

	bootstrapRBAC(t, su, pki, endpoint)

	adminKC, err := pki.AdminKubeconfig("https://"+endpoint, now, 0)
	if err != nil {
		t.Fatalf("AdminKubeconfig: %v", err)
	}
	adminREST, err := kubeadm.RESTConfig(adminKC)
	if err != nil {
		t.Fatal(err)
	}
	return &controlPlane{dir: dir, pki: pki, endpoint: endpoint, admin: kubernetes.NewForConfigOrDie(adminREST),
		adminREST: adminREST, adminKC: adminKC, bins: bins, proxyCert: proxyCert, proxyKey: proxyKey}
}

// waitHealthy waits until the API server answers /readyz, failing at once
// when one of the processes exits (a port taken, a bad flag: its log tail
// follows).
func waitHealthy(t testing.TB, c kubernetes.Interface, procs map[string]<-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		for name, done := range procs {
			select {
			case <-done:
				t.Fatalf("%s exited while the control plane started (its log follows)", name)
			default:
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, last = c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if last == nil {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("kube-apiserver not ready after 90s: %v", last)
}

// bootstrapRBAC does what kubeadm init does for joining nodes and admins.
func bootstrapRBAC(t testing.TB, c kubernetes.Interface, pki *kubeadm.PKI, endpoint string) {
	t.Helper()
	ctx := context.Background()
	objs := []func() error{
		func() error {
			_, err := c.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:cluster-admins"},
				RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
				Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: kubeadm.AdminGroup}},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.CoreV1().ConfigMaps("kube-public").Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: "cluster-info"},
				Data:       map[string]string{"kubeconfig": string(clusterInfoKubeconfig(t, endpoint, pki.CACertPEM()))},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.RbacV1().Roles("kube-public").Create(ctx, &rbacv1.Role{
				ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:bootstrap-signer-clusterinfo"},
				Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"cluster-info"}, Verbs: []string{"get"}}},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.RbacV1().RoleBindings("kube-public").Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:bootstrap-signer-clusterinfo"},
				RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "kubeadm:bootstrap-signer-clusterinfo"},
				Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "system:anonymous"}},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:kubelet-bootstrap"},
				RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:node-bootstrapper"},
				Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: kubeadm.NodeTokenGroup}},
			}, metav1.CreateOptions{})
			return err
		},
	}
	// kubeadm-config as kubeadm init uploads it, readable by joining nodes.
	clusterCfg := clusterConfiguration(t, endpoint)
	objs = append(objs,
		func() error {
			_, err := c.CoreV1().ConfigMaps("kube-system").Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: "kubeadm-config"},
				Data:       map[string]string{"ClusterConfiguration": clusterCfg},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.RbacV1().Roles("kube-system").Create(ctx, &rbacv1.Role{
				ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:nodes-kubeadm-config"},
				Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"kubeadm-config"}, Verbs: []string{"get"}}},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.RbacV1().RoleBindings("kube-system").Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:nodes-kubeadm-config"},
				RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "kubeadm:nodes-kubeadm-config"},
				Subjects: []rbacv1.Subject{
					{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: kubeadm.NodeTokenGroup},
					{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "system:nodes"},
				},
			}, metav1.CreateOptions{})
			return err
		},
	)
	for i, f := range objs {
		if err := f(); err != nil {
			t.Fatalf("bootstrap object %d: %v", i, err)
		}
	}
}

// clusterConfiguration is the ClusterConfiguration document pkg/kubeadm
// renders for a cluster whose endpoint is this control plane.
func clusterConfiguration(t testing.TB, endpoint string) string {
	t.Helper()
	cp := (&controlPlane{endpoint: endpoint}).cluster()
	n := inventory.Node{Name: "cp-01", Role: inventory.RoleControlPlane, IP: netip.MustParseAddr("10.77.0.10")}
	tok, err := kubeadm.NewToken(n.Name, time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := kubeadm.InitConfig(cp, n, tok, strings.Repeat("0", 64))
	if err != nil {
		t.Fatal(err)
	}
	_, cc, ok := strings.Cut(string(cfg), "---\n")
	if !ok {
		t.Fatalf("InitConfig has no ClusterConfiguration document:\n%s", cfg)
	}
	return cc
}

// clusterInfoKubeconfig is the kubeconfig kubeadm publishes in cluster-info:
// the cluster's server and CA, no credentials.
func clusterInfoKubeconfig(t testing.TB, endpoint string, ca []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    server: https://%s\n    certificate-authority-data: %s\ncontexts: null\ncurrent-context: \"\"\npreferences: {}\nusers: null\n",
		endpoint, base64.StdEncoding.EncodeToString(ca))
	return b.Bytes()
}
