package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/addons"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/kubeadm"
)

func testNodes() (cp1, cp2, w1 inventory.Node) {
	cp1 = inventory.Node{Name: "cp-01", Role: inventory.RoleControlPlane, IP: netip.MustParseAddr("127.0.0.1"),
		Labels: map[string]string{"node.slipway.dev/tier": "control-plane"},
		Taints: []inventory.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: "NoSchedule"}}}
	cp2 = inventory.Node{Name: "cp-02", Role: inventory.RoleControlPlane, IP: netip.MustParseAddr("127.0.0.1")}
	w1 = inventory.Node{Name: "gpu-01", Role: inventory.RoleWorker, IP: netip.MustParseAddr("127.0.0.1"),
		Labels: map[string]string{"node.slipway.dev/accelerator": "nvidia-h100", "topology.kubernetes.io/zone": "r02"},
		Taints: []inventory.Taint{{Key: "nvidia.com/gpu", Value: "present", Effect: "NoSchedule"}}}
	return
}

// TestKubeadmValidatesRenderedConfigs runs `kubeadm config validate` on the
// configuration of each role as the bootstrapper renders it.
func TestKubeadmValidatesRenderedConfigs(t *testing.T) {
	bins := requireTools(t, "kubeadm")
	dir := t.TempDir()
	pki, err := kubeadm.EnsurePKI(kubeadm.PKIConfig{Dir: filepath.Join(dir, "pki")})
	if err != nil {
		t.Fatal(err)
	}
	cp1, cp2, w1 := testNodes()
	// kubeadm refuses loopback advertise addresses; these configs are only validated.
	cp1.IP, cp2.IP, w1.IP = netip.MustParseAddr("10.77.0.10"), netip.MustParseAddr("10.77.0.11"), netip.MustParseAddr("10.77.0.21")
	inv := &inventory.Inventory{Cluster: inventory.Cluster{
		Name: "lab", KubernetesVersion: "v1.37.2", ControlPlaneEndpoint: "10.77.0.10",
		PodSubnet: netip.MustParsePrefix("10.244.0.0/16"), ServiceSubnet: netip.MustParsePrefix("10.96.0.0/12"), DNSDomain: "cluster.local",
	}, Nodes: []inventory.Node{cp1, cp2, w1}}
	b, err := kubeadm.New(kubeadm.Config{Inventory: inv, PKI: pki})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range inv.Nodes {
		kind := kubeadm.KindOf(inv, n)
		t.Run(string(kind), func(t *testing.T) {
			nc, err := b.Preview(n, kind, true)
			if err != nil {
				t.Fatalf("Preview(%s): %v", n.Name, err)
			}
			path := writeFile(t, filepath.Join(dir, n.Name+".yaml"), nc.Kubeadm)
			out, err := exec.Command(bins["kubeadm"], "config", "validate", "--config", path).CombinedOutput()
			if err != nil {
				t.Errorf("kubeadm config validate (%s, %s): %v\n%s\nconfig:\n%s", n.Name, kind, err, out, nc.Kubeadm)
			}
		})
	}
}

// TestControlPlane starts one throwaway control plane and proves the
// PKI, tokens, discovery, readiness and add-ons against it.
func TestControlPlane(t *testing.T) {
	cp := startControlPlane(t)
	t.Run("apiserver accepts our PKI and admin kubeconfig", func(t *testing.T) { testAdmin(t, cp) })
	t.Run("bootstrap token authenticates and kubeadm discovery succeeds", func(t *testing.T) { testTokenDiscovery(t, cp) })
	t.Run("control plane joins with the uploaded certificates", func(t *testing.T) { testControlPlaneJoin(t, cp) })
	t.Run("ready node is reported joined and its token deleted", func(t *testing.T) { testReady(t, cp) })
	t.Run("add-ons apply, re-apply and report broken manifests", func(t *testing.T) { testAddons(t, cp) })
	t.Run("provisioner config addons and config render", func(t *testing.T) { testCLI(t, cp) })
}

func testAdmin(t *testing.T, cp *controlPlane) {
	ctx := context.Background()
	ssr, err := cp.admin.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview with the admin kubeconfig: %v", err)
	}
	if u := ssr.Status.UserInfo; u.Username != kubeadm.AdminUser || !contains(u.Groups, kubeadm.AdminGroup) {
		t.Errorf("admin identity = %s %v, want %s in %s", u.Username, u.Groups, kubeadm.AdminUser, kubeadm.AdminGroup)
	}
	// cluster-admin through the kubeadm:cluster-admins binding.
	if _, err := cp.admin.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list secrets as admin: %v", err)
	}
	// A self-renewing admin client keeps working after its first
	// certificate expired: new connections get a fresh certificate.
	rc := cp.pki.AdminRESTConfig(cp.server(), 2*time.Second)
	renewing := kubernetes.NewForConfigOrDie(rc)
	if _, err := renewing.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list namespaces with AdminRESTConfig: %v", err)
	}
	// The contrast: a static admin kubeconfig of the same lifetime expires.
	staticKC, err := cp.pki.AdminKubeconfig(cp.server(), time.Now(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	staticREST, _ := kubeadm.RESTConfig(staticKC)
	static := kubernetes.NewForConfigOrDie(staticREST)
	time.Sleep(3 * time.Second)
	rc.Transport.(*http.Transport).CloseIdleConnections()
	if _, err := renewing.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list namespaces with AdminRESTConfig after its first certificate expired: %v", err)
	}
	if _, err := static.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("list namespaces with an expired static admin certificate: err = %v, want 401", err)
	}

	// The front-proxy CA: a request carrying the proxy's client certificate
	// is authenticated as the user named in its X-Remote-User header.
	pair, err := tls.X509KeyPair(cp.proxyCert, cp.proxyKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(cp.pki.CACertPEM())
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, cp.server()+"/apis/authentication.k8s.io/v1/selfsubjectreviews",
		strings.NewReader(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Remote-User", "alice")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("request through the front-proxy identity: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"username":"alice"`) {
		t.Errorf("SelfSubjectReview as front proxy for alice = %d %s, want 201 naming alice", resp.StatusCode, body)
	}

	// The service-account key pair: a token the API server signs with sa.key
	// authenticates through sa.pub.
	if _, err := cp.admin.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "probe"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service account: %v", err)
	}
	tr, err := cp.admin.CoreV1().ServiceAccounts("default").CreateToken(ctx, "probe", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	ssr, err = tokenClient(cp, tr.Status.Token).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || ssr.Status.UserInfo.Username != "system:serviceaccount:default:probe" {
		t.Errorf("SelfSubjectReview with a service-account token = %v, %v; want system:serviceaccount:default:probe", ssr, err)
	}

	// A certificate from another CA is refused.
	other, err := kubeadm.EnsurePKI(kubeadm.PKIConfig{Dir: filepath.Join(t.TempDir(), "pki")})
	if err != nil {
		t.Fatal(err)
	}
	kc, err := other.AdminKubeconfig(cp.server(), time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := kubeadm.RESTConfig(kc)
	foreign.TLSClientConfig.CAData = cp.pki.CACertPEM()
	_, err = kubernetes.NewForConfigOrDie(foreign).CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if !apierrors.IsUnauthorized(err) {
		t.Errorf("list namespaces with a foreign CA's admin certificate: err = %v, want 401 Unauthorized", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// tokenClient returns a client that authenticates with a bearer token.
func tokenClient(cp *controlPlane, token string) kubernetes.Interface {
	return kubernetes.NewForConfigOrDie(&rest.Config{Host: cp.server(), BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.pki.CACertPEM()}})
}

func testTokenDiscovery(t *testing.T, cp *controlPlane) {
	ctx := context.Background()
	cp1, _, w1 := testNodes()
	inv := &inventory.Inventory{Cluster: cp.cluster(), Nodes: []inventory.Node{cp1, w1}}
	b, err := kubeadm.New(kubeadm.Config{Inventory: inv, PKI: cp.pki, Client: cp.admin})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Issue(ctx, w1, kubeadm.KindWorker); err != nil {
		t.Fatalf("Issue(%s): %v", w1.Name, err)
	}
	tok, _ := b.Token(w1.Name)

	ssr, err := tokenClient(cp, tok.Value()).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview with bootstrap token %s: %v", tok, err)
	}
	if u := ssr.Status.UserInfo; u.Username != "system:bootstrap:"+tok.ID || !contains(u.Groups, kubeadm.NodeTokenGroup) {
		t.Errorf("token identity = %s %v, want system:bootstrap:%s in %s", u.Username, u.Groups, tok.ID, kubeadm.NodeTokenGroup)
	}

	join := func(t *testing.T, tok kubeadm.Token, hash string) (string, error) {
		t.Helper()
		cfg, err := kubeadm.JoinConfig(cp.cluster(), w1, tok, hash, "", kubeadm.JoinOptions{DiscoveryTimeout: 12 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return dryRunJoin(t, cp, cfg)
	}

	t.Run("good token and CA hash", func(t *testing.T) {
		// A real node polls until the bootstrap signer has signed
		// cluster-info for its token; kubeadm's dry run instead swaps in a
		// fake token when the signature is missing, so wait for it here.
		waitSigned(t, cp, tok.ID, true)
		out, err := join(t, tok, cp.pki.DiscoveryHash())
		if err != nil {
			t.Fatalf("kubeadm join --dry-run with our worker JoinConfiguration: %v\n%s", err, out)
		}
		if !strings.Contains(out, "validates against pinned roots") {
			t.Errorf("kubeadm join --dry-run did not report pinned-CA discovery:\n%s", out)
		}
	})
	t.Run("wrong CA hash", func(t *testing.T) {
		other, err := kubeadm.EnsurePKI(kubeadm.PKIConfig{Dir: filepath.Join(t.TempDir(), "pki")})
		if err != nil {
			t.Fatal(err)
		}
		out, err := join(t, tok, other.DiscoveryHash())
		if err == nil || !strings.Contains(out, "none of the public keys") {
			t.Errorf("kubeadm join --dry-run with a wrong CA hash: err = %v, want a pinning failure\n%s", err, out)
		}
	})
	t.Run("deleted token", func(t *testing.T) {
		if err := b.Revoke(ctx, w1); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		waitSigned(t, cp, tok.ID, false)
		// The authenticator reads tokens through an informer: allow it to catch up.
		var err error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if _, err = tokenClient(cp, tok.Value()).CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); apierrors.IsUnauthorized(err) {
				break
			}
		}
		if !apierrors.IsUnauthorized(err) {
			t.Errorf("API request with deleted token 30s after deletion: err = %v, want 401", err)
		}
		out, err := join(t, tok, cp.pki.DiscoveryHash())
		if err == nil || !strings.Contains(out, "JWS signature") {
			t.Errorf("kubeadm join --dry-run with a deleted token: err = %v, want a missing-signature failure\n%s", err, out)
		}
	})
	t.Run("extended token outlives its first expiry", func(t *testing.T) {
		short, err := kubeadm.NewToken(w1.Name, time.Now(), 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := kubeadm.CreateToken(ctx, cp.admin, short); err != nil {
			t.Fatal(err)
		}
		if err := kubeadm.ExtendToken(ctx, cp.admin, short.ID, time.Now().Add(time.Hour)); err != nil {
			t.Fatalf("ExtendToken: %v", err)
		}
		time.Sleep(4 * time.Second)
		var err2 error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if _, err2 = tokenClient(cp, short.Value()).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{}); err2 == nil {
				break
			}
		}
		if err2 != nil {
			t.Errorf("extended token after its original expiry: %v, want it accepted", err2)
		}
		kubeadm.DeleteToken(ctx, cp.admin, short.ID)
	})
	t.Run("expired token", func(t *testing.T) {
		old, err := kubeadm.NewToken(w1.Name, time.Now().Add(-time.Hour), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := kubeadm.CreateToken(ctx, cp.admin, old); err != nil {
			t.Fatalf("CreateToken(expired): %v", err)
		}
		_, err = tokenClient(cp, old.Value()).CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if !apierrors.IsUnauthorized(err) {
			t.Errorf("API request with an expired token: err = %v, want 401", err)
		}
		out, err := join(t, old, cp.pki.DiscoveryHash())
		if err == nil {
			t.Errorf("kubeadm join --dry-run with an expired token succeeded\n%s", out)
		}
	})
}

// waitSigned waits until cluster-info carries the bootstrap signer's
// signature for token id (signed true) or no longer does (signed false).
func waitSigned(t *testing.T, cp *controlPlane, id string, signed bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		cm, err := cp.admin.CoreV1().ConfigMaps("kube-public").Get(context.Background(), "cluster-info", metav1.GetOptions{})
		if err == nil {
			if _, ok := cm.Data["jws-kubeconfig-"+id]; ok == signed {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("cluster-info signature for token %s: want present=%v, still not after 30s", id, signed)
}

// dryRunJoin runs `kubeadm join --dry-run` with cfg (see runKubeadm).
func dryRunJoin(t *testing.T, cp *controlPlane, cfg []byte, extra ...string) (string, error) {
	t.Helper()
	path := writeFile(t, filepath.Join(t.TempDir(), "join.yaml"), cfg)
	args := append([]string{"join", "--config", path, "--dry-run", "--skip-phases=preflight", "-v=1"}, extra...)
	return runKubeadm(t, cp, args...)
}

// runKubeadm runs kubeadm in a private mount namespace whose root file
// system is read-only, so it can write nothing to the host; its dry-run
// directories are on a tmpfs.
func runKubeadm(t *testing.T, cp *controlPlane, args ...string) (string, error) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "unshare", "mount", "sh")
	scratch := filepath.Join(t.TempDir(), "scratch")
	if err := os.Mkdir(scratch, 0o700); err != nil {
		t.Fatal(err)
	}
	script := `set -e
mount -t tmpfs -o size=64m tmpfs "$SCRATCH"
mkdir "$SCRATCH/dryrun"
mount -o remount,bind,ro /
exec "$@"`
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", cp.bins["kubeadm"]}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + scratch, "SCRATCH=" + scratch,
		"KUBEADM_JOIN_DRYRUN_DIR=" + filepath.Join(scratch, "dryrun"), "KUBEADM_INIT_DRYRUN_DIR=" + filepath.Join(scratch, "dryrun")}
	out, err := cmd.CombinedOutput()
	if _, serr := os.Stat("/etc/kubernetes/tmp"); serr == nil {
		t.Errorf("kubeadm %s left /etc/kubernetes/tmp on the host", args[0])
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run kubeadm %s: %v", args[0], err)
	}
	return string(out), err
}

func testReady(t *testing.T, cp *controlPlane) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, _, w1 := testNodes()
	w1.Name = "gpu-02"
	inv := &inventory.Inventory{Cluster: cp.cluster(), Nodes: []inventory.Node{w1}}
	b, err := kubeadm.New(kubeadm.Config{Inventory: inv, PKI: cp.pki, Client: cp.admin})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Issue(ctx, w1, kubeadm.KindWorker); err != nil {
		t.Fatalf("Issue: %v", err)
	}
	tok, _ := b.Token(w1.Name)
	done := make(chan error, 1)
	go func() { done <- b.WaitJoined(ctx, w1.Name) }()

	node, err := cp.admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: w1.Name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node: %v", err)
	}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if node, err = cp.admin.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("mark node NotReady: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("WaitJoined returned %v while the node is NotReady", err)
	case <-time.After(time.Second):
	}
	if _, err := cp.admin.CoreV1().Secrets("kube-system").Get(ctx, tok.SecretName(), metav1.GetOptions{}); err != nil {
		t.Fatalf("token Secret gone before the node was Ready: %v", err)
	}
	node.Status.Conditions[0].Status = corev1.ConditionTrue
	node.Status.Conditions[0].Reason = "KubeletReady"
	if _, err := cp.admin.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("mark node Ready: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitJoined: %v", err)
	}
	if _, err := cp.admin.CoreV1().Secrets("kube-system").Get(ctx, tok.SecretName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("token Secret after the node joined: err = %v, want not found", err)
	}
	if ready, err := b.Ready(ctx, w1.Name); !ready || err != nil {
		t.Errorf("Ready(%s) = %v, %v, want true", w1.Name, ready, err)
	}
	// A joined node gets no new credentials.
	if err := b.Issue(ctx, w1, kubeadm.KindWorker); !errors.Is(err, kubeadm.ErrNodeJoined) {
		t.Errorf("Issue(%s) after it joined = %v, want ErrNodeJoined", w1.Name, err)
	}
}

func testAddons(t *testing.T, cp *controlPlane) {
	ctx := context.Background()
	a, err := addons.New(addons.Config{REST: cp.adminREST, KindWait: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "addons", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no add-on fixtures")
	}
	res, err := a.ApplyFiles(ctx, files)
	if err != nil {
		t.Fatalf("ApplyFiles: %v", err)
	}
	kinds := map[string]bool{}
	for _, r := range res {
		kinds[strings.Fields(r.Object)[0]] = true
		if r.Action != addons.Created {
			t.Errorf("first apply of %s: %s, want created", r.Object, r.Action)
		}
	}
	for _, k := range []string{"Namespace", "ConfigMap", "CustomResourceDefinition", "BatchQueue", "Deployment", "DaemonSet"} {
		if !kinds[k] {
			t.Errorf("first apply did not apply a %s (applied %v)", k, res)
		}
	}
	again, err := a.ApplyFiles(ctx, files)
	if err != nil {
		t.Fatalf("ApplyFiles again: %v", err)
	}
	for _, r := range again {
		if r.Action != addons.Unchanged {
			t.Errorf("second apply of %s: %s, want unchanged", r.Object, r.Action)
		}
	}
	ds, err := cp.admin.AppsV1().DaemonSets("slipway-addons").Get(ctx, "node-agent", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("DaemonSet not in the cluster: %v", err)
	}
	managed := false
	for _, mf := range ds.ManagedFields {
		if mf.Manager == addons.FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply {
			managed = true
		}
	}
	if !managed {
		t.Errorf("DaemonSet managed fields %v lack an Apply by %q", ds.ManagedFields, addons.FieldManager)
	}

	for _, tc := range []struct{ file, want string }{
		{"syntax.yaml", "document 2"},
		{"invalid-object.yaml", "Deployment slipway-addons/broken"},
		{"unknown-kind.yaml", "Frobnicator"},
	} {
		path := filepath.Join("testdata", "broken", tc.file)
		quick, err := addons.New(addons.Config{REST: cp.adminREST, KindWait: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		_, err = quick.ApplyFiles(ctx, []string{path})
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ApplyFiles(%s) = %v, want an error naming the file and %q", path, err, tc.want)
		}
	}
}

// testControlPlaneJoin uploads the control-plane certificates as kubeadm
// init --upload-certs does on the first control-plane node, then dry-runs a
// further control-plane node's join with our JoinConfiguration: discovery,
// then downloading and decrypting the certificates with the certificate key.
func testControlPlaneJoin(t *testing.T, cp *controlPlane) {
	ctx := context.Background()
	cp1, cp2, _ := testNodes()
	// kubeadm refuses loopback advertise addresses. The etcd member join
	// (control-plane-join) is skipped, so nothing dials these addresses.
	cp1.IP, cp2.IP = netip.MustParseAddr("10.77.0.10"), netip.MustParseAddr("10.77.0.11")
	inv := &inventory.Inventory{Cluster: cp.cluster(), Nodes: []inventory.Node{cp1, cp2}}
	b, err := kubeadm.New(kubeadm.Config{Inventory: inv, PKI: cp.pki, Client: cp.admin})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tok0, _ := kubeadm.NewToken(cp1.Name, time.Now(), 0)
	initCfg, err := kubeadm.InitConfig(cp.cluster(), cp1, tok0, cp.pki.CertificateKey())
	if err != nil {
		t.Fatal(err)
	}
	// On the node the certificates are in /etc/kubernetes/pki; here they are
	// in the PKI directory.
	initCfg = append(initCfg, []byte("certificatesDir: "+cp.pki.Dir()+"\n")...)
	initPath := writeFile(t, filepath.Join(dir, "init.yaml"), initCfg)
	adminPath := writeFile(t, filepath.Join(dir, "admin.conf"), cp.adminKC)
	out, err := runKubeadm(t, cp, "init", "phase", "upload-certs", "--upload-certs", "--config", initPath, "--kubeconfig", adminPath)
	if err != nil {
		t.Fatalf("kubeadm init phase upload-certs: %v\n%s", err, out)
	}

	// 1. kubeadm's own upload, with a token created directly (Issue would
	// replace the upload with ours).
	tok1, _ := kubeadm.NewToken(cp2.Name, time.Now(), 0)
	if err := kubeadm.CreateToken(ctx, cp.admin, tok1); err != nil {
		t.Fatal(err)
	}
	waitSigned(t, cp, tok1.ID, true)
	cfg1, err := kubeadm.JoinConfig(cp.cluster(), cp2, tok1, cp.pki.DiscoveryHash(), cp.pki.CertificateKey(), kubeadm.JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err = dryRunJoin(t, cp, cfg1, "--skip-phases=preflight,control-plane-join")
	if err != nil || !strings.Contains(out, "[download-certs] Saving the certificates") {
		t.Fatalf("kubeadm join --dry-run of control plane %s after kubeadm's upload: %v, want the certificates downloaded\n%s", cp2.Name, err, out)
	}
	kubeadm.DeleteToken(ctx, cp.admin, tok1.ID)

	// 2. Our upload, done by Issue and owned by the node's token.
	if err := cp.admin.CoreV1().Secrets("kube-system").Delete(ctx, kubeadm.CertsSecret, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete kubeadm's upload: %v", err)
	}
	if err := b.Issue(ctx, cp2, kubeadm.KindControlPlane); err != nil {
		t.Fatalf("Issue(%s, control plane): %v", cp2.Name, err)
	}
	tok, _ := b.Token(cp2.Name)
	waitSigned(t, cp, tok.ID, true)
	nc, err := b.NodeConfig(cp2, kubeadm.KindControlPlane, tok, true)
	if err != nil {
		t.Fatal(err)
	}
	out, err = dryRunJoin(t, cp, nc.Kubeadm, "--skip-phases=preflight,control-plane-join")
	if err != nil || !strings.Contains(out, "[download-certs] Saving the certificates") {
		t.Fatalf("kubeadm join --dry-run of control plane %s after our upload: %v, want the certificates downloaded\n%s", cp2.Name, err, out)
	}

	wrong := strings.Replace(string(nc.Kubeadm), cp.pki.CertificateKey(), strings.Repeat("ab", 32), 1)
	out, err = dryRunJoin(t, cp, []byte(wrong), "--skip-phases=preflight,control-plane-join")
	if err == nil || !strings.Contains(out, "error decoding secret data with provided key") {
		t.Errorf("kubeadm join --dry-run with a wrong certificate key: err = %v, want a decryption failure\n%s", err, out)
	}

	// 3. Revoking the node's token takes the uploaded CA keys with it.
	if err := b.Revoke(ctx, cp2); err != nil {
		t.Fatalf("Revoke(%s): %v", cp2.Name, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := cp.admin.CoreV1().Secrets("kube-system").Get(ctx, kubeadm.CertsSecret, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubeadm-certs still in the cluster 60s after its owner token was revoked (err %v)", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
