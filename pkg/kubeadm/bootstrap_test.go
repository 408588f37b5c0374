package kubeadm

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/pxe/httpboot"
)

func testInventory() *inventory.Inventory {
	cp1, cp2, w1 := testNodes()
	off := w1
	off.Name, off.Disabled = "gpu-02", true
	return &inventory.Inventory{Cluster: testCluster(), Nodes: []inventory.Node{cp1, cp2, w1, off}}
}

func newTestBootstrapper(t *testing.T, client *fake.Clientset, log *bytes.Buffer) (*Bootstrapper, *PKI) {
	t.Helper()
	p := newTestPKI(t)
	now := time.Now().Add(time.Minute).Truncate(time.Second)
	cfg := Config{Inventory: testInventory(), PKI: p, PhoneHomeURL: "http://10.77.0.1:8080",
		Now: func() time.Time { return now }}
	if client != nil {
		cfg.Client = client
	}
	if log != nil {
		cfg.Log = slog.New(slog.NewTextHandler(log, nil))
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b, p
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	inv := testInventory()
	inv.Cluster.KubernetesVersion = "v1.30.0"
	_, err := New(Config{Inventory: inv, TokenTTL: -time.Minute, Format: "ignition"})
	for _, want := range []string{"no pki", "negative", "ignition", "v1.30.0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(bad config) = %v, want it to mention %q", err, want)
		}
	}
}

func TestIssueCreatesTokenSecret(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	var log bytes.Buffer
	b, _ := newTestBootstrapper(t, client, &log)
	clock := new(time.Time)
	*clock = time.Now().Add(time.Minute).Truncate(time.Second)
	b.cfg.Now = func() time.Time { return *clock }
	inv := testInventory()
	w1, _ := inv.Node("gpu-01")
	ctx := context.Background()
	if err := b.Issue(ctx, w1, KindWorker); err != nil {
		t.Fatalf("Issue(gpu-01): %v", err)
	}
	tok, ok := b.Token("gpu-01")
	if !ok {
		t.Fatal("Token(gpu-01) after Issue: none")
	}
	s, err := client.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-"+tok.ID, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("token Secret not created: %v", err)
	}
	want := map[string]string{
		"token-id": tok.ID, "token-secret": tok.Secret.Reveal(), "expiration": tok.Expires.Format(time.RFC3339),
		"description": "slipway: join credential for node gpu-01", "usage-bootstrap-authentication": "true",
		"usage-bootstrap-signing": "true", "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
	}
	if diff := cmp.Diff(want, s.StringData); diff != "" {
		t.Errorf("token Secret data (-want +got):\n%s", diff)
	}
	if got := time.Until(tok.Expires); got < DefaultTokenTTL || got > DefaultTokenTTL+2*time.Minute {
		t.Errorf("token expires in %s, want the default TTL %s", got, DefaultTokenTTL)
	}
	if s.Type != "bootstrap.kubernetes.io/token" {
		t.Errorf("token Secret type = %q", s.Type)
	}
	if len(tok.ID) != 6 || len(tok.Secret.Reveal()) != 16 {
		t.Errorf("token %s has the wrong shape", tok)
	}
	if strings.Contains(log.String(), tok.Secret.Reveal()) {
		t.Errorf("log carries the token secret:\n%s", log.String())
	}
	if !strings.Contains(log.String(), tok.ID) {
		t.Errorf("log does not name token %s:\n%s", tok.ID, log.String())
	}

	// Issuing again while the token is fresh keeps it (the node may be
	// booting with it already).
	if err := b.Issue(ctx, w1, KindWorker); err != nil {
		t.Fatalf("Issue(gpu-01) again: %v", err)
	}
	if again, _ := b.Token("gpu-01"); again.ID != tok.ID {
		t.Errorf("Issue(gpu-01) again replaced fresh token %s with %s", tok.ID, again.ID)
	}
	// Past half its TTL, issuing again replaces it and deletes the old one.
	*clock = clock.Add(DefaultTokenTTL/2 + time.Minute)
	if err := b.Issue(ctx, w1, KindWorker); err != nil {
		t.Fatalf("Issue(gpu-01) after half the TTL: %v", err)
	}
	if again, _ := b.Token("gpu-01"); again.ID == tok.ID {
		t.Errorf("Issue(gpu-01) after half the TTL kept token %s", tok.ID)
	}
	if _, err := client.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-"+tok.ID, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("old token Secret after re-issue: err = %v, want not found", err)
	}

	cfg, err := b.Render(ctx, w1)
	if err != nil {
		t.Fatalf("Render(gpu-01): %v", err)
	}
	tok2, _ := b.Token("gpu-01")
	if !bytes.Contains(cfg, []byte("#cloud-config")) {
		t.Errorf("Render(gpu-01) is not a cloud-config:\n%s", cfg)
	}
	if err := b.Revoke(ctx, w1); err != nil {
		t.Fatalf("Revoke(gpu-01): %v", err)
	}
	if _, err := client.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-"+tok2.ID, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("token Secret after Revoke: err = %v, want not found", err)
	}
	if _, err := b.Render(ctx, w1); err == nil {
		t.Errorf("Render(gpu-01) after Revoke = nil error, want a refusal")
	}
}

func TestIssueInitNeedsNoCluster(t *testing.T) {
	t.Parallel()
	b, p := newTestBootstrapper(t, nil, nil)
	inv := testInventory()
	cp1, _ := FirstControlPlane(inv)
	if k := KindOf(inv, cp1); k != KindInit {
		t.Fatalf("KindOf(%s) = %s, want init", cp1.Name, k)
	}
	ctx := context.Background()
	if err := b.Issue(ctx, cp1, KindInit); err != nil {
		t.Fatalf("Issue(cp-01, init) without a cluster: %v", err)
	}
	out, err := b.Render(ctx, cp1)
	if err != nil {
		t.Fatalf("Render(cp-01): %v", err)
	}
	tok, _ := b.Token(cp1.Name)
	caKey, _ := os.ReadFile(filepath.Join(p.Dir(), CAKeyFile))
	nc, err := b.NodeConfig(cp1, KindInit, tok, true)
	if err != nil {
		t.Fatal(err)
	}
	var gotKey bool
	for _, f := range nc.PKIFiles {
		if f.Path == CAKeyFile && bytes.Equal(f.Data, caKey) {
			gotKey = true
		}
	}
	if !gotKey || !bytes.Contains(nc.Kubeadm, []byte(tok.Value())) || !bytes.Contains(nc.Kubeadm, []byte(p.CertificateKey())) {
		t.Errorf("first control plane's config lacks the CA key, its token or the certificate key")
	}
	if len(out) == 0 {
		t.Error("Render(cp-01) is empty")
	}
	_, _, w1 := testNodes()
	if err := b.Issue(ctx, w1, KindWorker); err == nil || !strings.Contains(err.Error(), "not reachable") {
		t.Errorf("Issue(worker) without a cluster = %v, want an error saying the API is not reachable", err)
	}
}

func TestIssueRefuses(t *testing.T) {
	t.Parallel()
	inv := testInventory()
	off, _ := inv.Node("gpu-02")
	w1, _ := inv.Node("gpu-01")
	joined := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gpu-01"}}
	tests := []struct {
		name string
		node inventory.Node
		kind Kind
		objs []*corev1.Node
		want string
		is   error
	}{
		{"disabled node", off, KindWorker, nil, "disabled", nil},
		{"joined node", w1, KindWorker, []*corev1.Node{joined}, "already joined", ErrNodeJoined},
		{"worker as control plane", w1, KindControlPlane, nil, "needs a control-plane node", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := fake.NewClientset()
			for _, n := range tt.objs {
				client.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{})
			}
			b, _ := newTestBootstrapper(t, client, nil)
			err := b.Issue(context.Background(), tt.node, tt.kind)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Issue(%s) = %v, want an error containing %q", tt.node.Name, err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Issue(%s) = %v, want errors.Is %v", tt.node.Name, err, tt.is)
			}
			secrets, _ := client.CoreV1().Secrets("kube-system").List(context.Background(), metav1.ListOptions{})
			if len(secrets.Items) != 0 {
				t.Errorf("Issue(%s) refused but created %d token Secrets", tt.node.Name, len(secrets.Items))
			}
		})
	}
}

func TestRenderRefusesJoinedNode(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	b, _ := newTestBootstrapper(t, client, nil)
	inv := testInventory()
	w1, _ := inv.Node("gpu-01")
	ctx := context.Background()
	if err := b.Issue(ctx, w1, KindWorker); err != nil {
		t.Fatal(err)
	}
	client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gpu-01"}}, metav1.CreateOptions{})
	if _, err := b.Render(ctx, w1); !errors.Is(err, ErrNodeJoined) {
		t.Errorf("Render(gpu-01) after it joined = %v, want ErrNodeJoined", err)
	}
}

func TestPreviewRedactsSecrets(t *testing.T) {
	t.Parallel()
	b, p := newTestBootstrapper(t, nil, nil)
	inv := testInventory()
	var keys [][]byte
	for _, f := range []string{CAKeyFile, FrontProxyCAKeyFile, EtcdCAKeyFile, SAKeyFile} {
		k, _ := os.ReadFile(filepath.Join(p.Dir(), f))
		keys = append(keys, bytes.TrimSpace(k))
	}
	for _, name := range []string{"cp-01", "cp-02", "gpu-01"} {
		n, _ := inv.Node(name)
		kind := KindOf(inv, n)
		for _, reveal := range []bool{false, true} {
			nc, err := b.Preview(n, kind, reveal)
			if err != nil {
				t.Fatalf("Preview(%s): %v", name, err)
			}
			var all []byte
			for _, f := range []Format{FormatCloudConfig, FormatScript} {
				out, err := nc.Render(f)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, out...)
			}
			all = append(all, nc.Kubeadm...)
			for _, f := range nc.PKIFiles {
				all = append(all, f.Data...)
			}
			hasCertKey := bytes.Contains(all, []byte(p.CertificateKey()))
			hasCAKey := false
			for _, k := range keys {
				if bytes.Contains(all, k) {
					hasCAKey = true
				}
			}
			tokenRedacted := bytes.Contains(nc.Kubeadm, []byte(".[redacted]"))
			switch {
			case !reveal && (hasCertKey || hasCAKey || !tokenRedacted):
				t.Errorf("Preview(%s, redacted) leaks: certificate key %v, CA key %v, token secret %v", name, hasCertKey, hasCAKey, !tokenRedacted)
			case reveal && kind == KindWorker && (hasCertKey || hasCAKey):
				t.Errorf("worker %s receives the certificate key (%v) or a CA key (%v)", name, hasCertKey, hasCAKey)
			case reveal && kind == KindControlPlane && (!hasCertKey || hasCAKey):
				t.Errorf("control plane %s: certificate key %v (want true), CA key %v (want false)", name, hasCertKey, hasCAKey)
			case reveal && kind == KindInit && (!hasCertKey || !hasCAKey):
				t.Errorf("first control plane %s: certificate key %v, CA key %v, want both", name, hasCertKey, hasCAKey)
			}
		}
	}
	off, _ := inv.Node("gpu-02")
	if _, err := b.Preview(off, KindWorker, false); err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("Preview(disabled gpu-02) = %v, want a refusal", err)
	}
}

func TestTokenNeverPrintsSecret(t *testing.T) {
	t.Parallel()
	tok, err := NewToken("gpu-01", time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "token", tok)
	for _, s := range []string{tok.String(), buf.String()} {
		if strings.Contains(s, tok.Secret.Reveal()) {
			t.Errorf("%q carries the token secret", s)
		}
	}
	if got := time.Until(tok.Expires); got > DefaultTokenTTL || got < DefaultTokenTTL-time.Minute {
		t.Errorf("NewToken ttl 0 expires in %s, want %s", got, DefaultTokenTTL)
	}
}

func TestWaitJoinedDeletesToken(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	b, _ := newTestBootstrapper(t, client, nil)
	inv := testInventory()
	w1, _ := inv.Node("gpu-01")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Issue(ctx, w1, KindWorker); err != nil {
		t.Fatal(err)
	}
	tok, _ := b.Token("gpu-01")
	done := make(chan error, 1)
	go func() { done <- b.WaitJoined(ctx, "gpu-01") }()

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gpu-01"}}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse}}
	client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	select {
	case err := <-done:
		t.Fatalf("WaitJoined returned %v while the node is NotReady", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := client.CoreV1().Secrets("kube-system").Get(ctx, tok.SecretName(), metav1.GetOptions{}); err != nil {
		t.Fatalf("token deleted before the node was Ready: %v", err)
	}
	node.Status.Conditions[0].Status = corev1.ConditionTrue
	client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	if err := <-done; err != nil {
		t.Fatalf("WaitJoined: %v", err)
	}
	if _, err := client.CoreV1().Secrets("kube-system").Get(ctx, tok.SecretName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("token Secret after the node joined: err = %v, want not found", err)
	}
	if ready, err := b.Ready(ctx, "gpu-01"); !ready || err != nil {
		t.Errorf("Ready(gpu-01) = %v, %v, want true", ready, err)
	}
}

func TestIssueRefusesCAExpiringWithinTTL(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	os.MkdirAll(dir, 0o700)
	now := time.Now()
	writeShortLivedCA(t, dir, now.Add(10*time.Minute))
	p, err := EnsurePKI(PKIConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	b, err := New(Config{Inventory: testInventory(), PKI: p, Client: client, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	w1, _ := testInventory().Node("gpu-01")
	err = b.Issue(context.Background(), w1, KindWorker)
	if err == nil || !strings.Contains(err.Error(), "expires") || !strings.Contains(err.Error(), "gpu-01") {
		t.Fatalf("Issue with a CA expiring in 10m (ttl 30m) = %v, want a refusal naming the node and the expiry", err)
	}
	secrets, _ := client.CoreV1().Secrets("kube-system").List(context.Background(), metav1.ListOptions{})
	if len(secrets.Items) != 0 {
		t.Errorf("Issue refused but created %d token Secrets", len(secrets.Items))
	}
}

func TestIssueInitRefusedWhenClusterAnswers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inv := testInventory()
	cp1, _ := FirstControlPlane(inv)

	client := fake.NewClientset()
	b, _ := newTestBootstrapper(t, client, nil)
	if err := b.Issue(ctx, cp1, KindInit); err == nil || !strings.Contains(err.Error(), "already answers") {
		t.Errorf("Issue(init) with a cluster API answering = %v, want a refusal", err)
	}
	client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: cp1.Name}}, metav1.CreateOptions{})
	if err := b.Issue(ctx, cp1, KindInit); !errors.Is(err, ErrNodeJoined) {
		t.Errorf("Issue(init) for a joined first control plane = %v, want ErrNodeJoined", err)
	}

	// An API that does not answer: init goes ahead.
	down, _ := newTestBootstrapper(t, nil, nil)
	rc := &rest.Config{Host: "https://127.0.0.1:1", Timeout: time.Second}
	down.SetClient(kubernetes.NewForConfigOrDie(rc))
	if err := down.Issue(ctx, cp1, KindInit); err != nil {
		t.Errorf("Issue(init) with no cluster answering = %v, want nil", err)
	}
}

// The Bootstrapper is the boot server's renderer and the orchestrator's
// readiness source as they are (its Issue takes Kind, which cmd adapts).
var (
	_ httpboot.Renderer   = (*Bootstrapper)(nil)
	_ provision.Readiness = (*Bootstrapper)(nil)
)

func TestIssueControlPlaneUploadsCerts(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	b, p := newTestBootstrapper(t, client, nil)
	cp2, _ := testInventory().Node("cp-02")
	ctx := context.Background()
	if err := b.Issue(ctx, cp2, KindControlPlane); err != nil {
		t.Fatalf("Issue(cp-02, control plane): %v", err)
	}
	tok, _ := b.Token("cp-02")
	s, err := client.CoreV1().Secrets("kube-system").Get(ctx, CertsSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kubeadm-certs not uploaded: %v", err)
	}
	if refs := s.OwnerReferences; len(refs) != 1 || refs[0].Name != tok.SecretName() || refs[0].Kind != "Secret" {
		t.Errorf("kubeadm-certs owners = %v, want the token Secret %s", refs, tok.SecretName())
	}
	key, _ := hex.DecodeString(p.CertificateKey())
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	files, _ := p.ControlPlaneFiles()
	for _, f := range files {
		enc := s.Data[strings.ReplaceAll(f.Path, "/", "-")]
		if len(enc) < gcm.NonceSize() {
			t.Errorf("kubeadm-certs lacks %s", f.Path)
			continue
		}
		plain, err := gcm.Open(nil, enc[:gcm.NonceSize()], enc[gcm.NonceSize():], nil)
		if err != nil || !bytes.Equal(plain, f.Data) {
			t.Errorf("kubeadm-certs %s does not decrypt to the PKI file (err %v)", f.Path, err)
		}
	}
	if _, err := client.RbacV1().RoleBindings("kube-system").Get(ctx, "kubeadm:kubeadm-certs", metav1.GetOptions{}); err != nil {
		t.Errorf("role binding for kubeadm-certs: %v", err)
	}
	// A second control plane joining side by side: the upload stays until
	// both tokens are gone.
	cp3 := cp2
	cp3.Name = "cp-03"
	if err := b.Issue(ctx, cp3, KindControlPlane); err != nil {
		t.Fatalf("Issue(cp-03, control plane): %v", err)
	}
	tok3, _ := b.Token("cp-03")
	s, _ = client.CoreV1().Secrets("kube-system").Get(ctx, CertsSecret, metav1.GetOptions{})
	var owners []string
	for _, r := range s.OwnerReferences {
		owners = append(owners, r.Name)
	}
	if diff := cmp.Diff([]string{tok3.SecretName(), tok.SecretName()}, owners); diff != "" {
		t.Errorf("kubeadm-certs owners after a second upload (-want +got):\n%s", diff)
	}

	// Workers never cause an upload.
	client2 := fake.NewClientset()
	b2, _ := newTestBootstrapper(t, client2, nil)
	w1, _ := testInventory().Node("gpu-01")
	if err := b2.Issue(ctx, w1, KindWorker); err != nil {
		t.Fatal(err)
	}
	if _, err := client2.CoreV1().Secrets("kube-system").Get(ctx, CertsSecret, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("issuing a worker uploaded kubeadm-certs (err %v)", err)
	}
}

func TestExtendToken(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	p := newTestPKI(t)
	now := time.Now().Add(time.Minute).Truncate(time.Second)
	b, err := New(Config{Inventory: testInventory(), PKI: p, Client: client, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	w1, _ := testInventory().Node("gpu-01")
	ctx := context.Background()
	if err := b.Extend(ctx, w1); err == nil {
		t.Error("Extend before Issue = nil error, want one")
	}
	if err := b.Issue(ctx, w1, KindWorker); err != nil {
		t.Fatal(err)
	}
	now = now.Add(20 * time.Minute)
	if err := b.Extend(ctx, w1); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	tok, _ := b.Token("gpu-01")
	s, _ := client.CoreV1().Secrets("kube-system").Get(ctx, tok.SecretName(), metav1.GetOptions{})
	want := now.Add(DefaultTokenTTL).UTC().Format(time.RFC3339)
	if got := string(s.Data["expiration"]); got != want {
		t.Errorf("token expiration after Extend = %q, want %q", got, want)
	}
	if !tok.Expires.Equal(now.Add(DefaultTokenTTL)) {
		t.Errorf("Token().Expires = %s, want %s", tok.Expires, now.Add(DefaultTokenTTL))
	}
}

func TestRevokeAfterRestart(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	ctx := context.Background()
	w1, _ := testInventory().Node("gpu-01")
	first, p := newTestBootstrapper(t, client, nil)
	if err := first.Issue(ctx, w1, KindWorker); err != nil {
		t.Fatal(err)
	}
	tok, _ := first.Token("gpu-01")
	// An unrelated token of another node stays.
	other, _ := NewToken("gpu-09", time.Now(), 0)
	CreateToken(ctx, client, other)

	// A new process knows nothing of the first token.
	second, err := New(Config{Inventory: testInventory(), PKI: p, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Revoke(ctx, w1); err != nil {
		t.Fatalf("Revoke after restart: %v", err)
	}
	if _, err := client.CoreV1().Secrets("kube-system").Get(ctx, tok.SecretName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("token of gpu-01 from the earlier run after Revoke: err = %v, want not found", err)
	}
	if _, err := client.CoreV1().Secrets("kube-system").Get(ctx, other.SecretName(), metav1.GetOptions{}); err != nil {
		t.Errorf("Revoke(gpu-01) deleted gpu-09's token: %v", err)
	}
}

// Two control planes issued side by side: the other upload creates the
// Secret between this one's Get and Create. The loser starts again from a
// fresh Get instead of failing the node.
func TestUploadCertsLosesTheCreateRace(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	b, p := newTestBootstrapper(t, client, nil)
	ctx := context.Background()
	cp2, _ := testInventory().Node("cp-02")
	if err := b.Issue(ctx, cp2, KindControlPlane); err != nil {
		t.Fatalf("Issue(cp-02, control plane): %v", err)
	}
	first, err := client.CoreV1().Secrets("kube-system").Get(ctx, CertsSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Secrets("kube-system").Delete(ctx, CertsSecret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The racing upload lands just before this one's Create.
	raced := false
	client.PrependReactor("create", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s := a.(k8stesting.CreateAction).GetObject().(*corev1.Secret)
		if s.Name != CertsSecret || raced {
			return false, nil, nil
		}
		raced = true
		if err := client.Tracker().Add(first.DeepCopy()); err != nil {
			t.Error(err)
		}
		return true, nil, apierrors.NewAlreadyExists(corev1.Resource("secrets"), CertsSecret)
	})
	tok, _ := b.Token("cp-02")
	if err := UploadCerts(ctx, client, p, tok.ID); err != nil {
		t.Fatalf("UploadCerts after losing the create race: %v", err)
	}
	if !raced {
		t.Fatal("the race was not staged: no create of kubeadm-certs")
	}
	if _, err := client.CoreV1().Secrets("kube-system").Get(ctx, CertsSecret, metav1.GetOptions{}); err != nil {
		t.Errorf("kubeadm-certs after the race: %v", err)
	}
}

// A worker whose token was minted long before it fetched its config (slow
// POST, a power cycle) gets a full TTL from the fetch, so it does not join
// with an expired token.
func TestRenderExtendsAnAgingToken(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	pki := newTestPKI(t)
	// After the CA exists: on a slow machine a clock read before it falls
	// before the CA's NotBefore.
	now := time.Now().Truncate(time.Second).Add(time.Second)
	b, err := New(Config{Inventory: testInventory(), PKI: pki, Client: client,
		PhoneHomeURL: "http://10.77.0.1:8080", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w1, _ := testInventory().Node("gpu-01")
	if err := b.Issue(ctx, w1, KindWorker); err != nil {
		t.Fatal(err)
	}
	tok, _ := b.Token("gpu-01")
	expiry := func() time.Time {
		t.Helper()
		s, err := client.CoreV1().Secrets("kube-system").Get(ctx, tok.SecretName(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The fake client keeps StringData as written; the API server
		// would have folded it into Data, where ExtendToken writes.
		v := string(s.Data["expiration"])
		if v == "" {
			v = s.StringData["expiration"]
		}
		e, err := time.Parse(time.RFC3339, v)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	if got, want := expiry(), now.Add(DefaultTokenTTL); !got.Equal(want) {
		t.Fatalf("token expiry after Issue = %v, want %v", got, want)
	}
	now = now.Add(5 * time.Minute) // a fresh token is left alone
	if _, err := b.Render(ctx, w1); err != nil {
		t.Fatal(err)
	}
	if got, want := expiry(), now.Add(-5*time.Minute).Add(DefaultTokenTTL); !got.Equal(want) {
		t.Errorf("token expiry after a render 5 min in = %v, want it unchanged at %v", got, want)
	}
	now = now.Add(20 * time.Minute)
	if _, err := b.Render(ctx, w1); err != nil {
		t.Fatal(err)
	}
	if got, want := expiry(), now.Add(DefaultTokenTTL); !got.Equal(want) {
		t.Errorf("token expiry after a render 25 min in = %v, want a full TTL from then, %v", got, want)
	}
}

// TestRenderFormatPerNode: a node's boot.configFormat picks its form over
// the bootstrapper's default; nodes without one get the default.
func TestRenderFormatPerNode(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	b, _ := newTestBootstrapper(t, client, nil)
	ctx := context.Background()
	w1, _ := testInventory().Node("gpu-01")
	if err := b.Issue(ctx, w1, KindWorker); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		format inventory.ConfigFormat
		want   string
	}{
		{"", "#cloud-config\n"},
		{inventory.ConfigFormatScript, "#!/bin/sh"},
		{inventory.ConfigFormatCloudConfig, "#cloud-config\n"},
	} {
		n := w1
		n.Boot.ConfigFormat = tt.format
		out, err := b.Render(ctx, n)
		if err != nil {
			t.Fatalf("Render(gpu-01, configFormat %q): %v", tt.format, err)
		}
		if !bytes.HasPrefix(out, []byte(tt.want)) {
			t.Errorf("Render(gpu-01, configFormat %q) starts %q, want %q", tt.format, out[:min(len(out), 20)], tt.want)
		}
	}
}
