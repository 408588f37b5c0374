package kubeadm

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	encpem "encoding/pem"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/util/keyutil"

	"github.com/slipway-dev/slipway/internal/testenv"
)

func newTestPKI(t *testing.T) *PKI {
	t.Helper()
	p, err := EnsurePKI(PKIConfig{Dir: filepath.Join(t.TempDir(), "pki")})
	if err != nil {
		t.Fatalf("EnsurePKI: %v", err)
	}
	return p
}

func TestEnsurePKICreatesKubeadmLayoutOnce(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t)
	files := []string{CACertFile, CAKeyFile, FrontProxyCACertFile, FrontProxyCAKeyFile, EtcdCACertFile, EtcdCAKeyFile, SAKeyFile, SAPubFile, CertificateKeyFile}
	before := map[string]string{}
	for _, f := range files {
		path := filepath.Join(p.Dir(), f)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatalf("EnsurePKI did not create %s: %v", f, err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode = %04o, want 0600", f, got)
		}
		b, _ := os.ReadFile(path)
		before[f] = string(b)
	}
	if fi, _ := os.Stat(p.Dir()); fi.Mode().Perm() != 0o700 {
		t.Errorf("pki dir mode = %04o, want 0700", fi.Mode().Perm())
	}
	again, err := EnsurePKI(PKIConfig{Dir: p.Dir()})
	if err != nil {
		t.Fatalf("EnsurePKI on existing PKI: %v", err)
	}
	for _, f := range files {
		b, _ := os.ReadFile(filepath.Join(p.Dir(), f))
		if string(b) != before[f] {
			t.Errorf("second EnsurePKI rewrote %s", f)
		}
	}
	if again.DiscoveryHash() != p.DiscoveryHash() {
		t.Errorf("DiscoveryHash changed across loads: %s then %s", p.DiscoveryHash(), again.DiscoveryHash())
	}
	if again.CertificateKey() != p.CertificateKey() || len(p.CertificateKey()) != 64 {
		t.Errorf("CertificateKey = %q then %q, want the same 64 hex digits", p.CertificateKey(), again.CertificateKey())
	}
	for name, cn := range map[string]string{CACertFile: "kubernetes", FrontProxyCACertFile: "front-proxy-ca", EtcdCACertFile: "etcd-ca"} {
		c := readCert(t, filepath.Join(p.Dir(), name))
		if !c.IsCA || c.Subject.CommonName != cn {
			t.Errorf("%s: IsCA=%v CN=%q, want a CA named %q", name, c.IsCA, c.Subject.CommonName, cn)
		}
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := pemDecode(b)
	c, err := x509.ParseCertificate(p)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return c
}

// TestDiscoveryHashMatchesOpenSSL checks the pin against the recipe in the
// kubeadm documentation, computed by openssl rather than by our code.
func TestDiscoveryHashMatchesOpenSSL(t *testing.T) {
	t.Parallel()
	testenv.RequireCommands(t, "openssl", "sh")
	p := newTestPKI(t)
	out, err := exec.Command("sh", "-c", "openssl x509 -pubkey -in \"$1\" | openssl pkey -pubin -outform der | openssl dgst -sha256 -hex | sed 's/^.* //'", "sh", filepath.Join(p.Dir(), CACertFile)).Output()
	if err != nil {
		t.Fatalf("openssl: %v", err)
	}
	want := "sha256:" + strings.TrimSpace(string(out))
	if got := p.DiscoveryHash(); got != want {
		t.Errorf("DiscoveryHash() = %s, want %s (openssl)", got, want)
	}
}

func TestEnsurePKIRefusesBadFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		breakIt  func(t *testing.T, dir string)
		wantFile string
		wantText string
	}{
		{"key readable by others", func(t *testing.T, dir string) {
			os.Chmod(filepath.Join(dir, CAKeyFile), 0o644)
		}, CAKeyFile, "chmod 600"},
		{"cert readable by group", func(t *testing.T, dir string) {
			os.Chmod(filepath.Join(dir, EtcdCACertFile), 0o640)
		}, EtcdCACertFile, "permissions 0640"},
		{"key of another CA", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, EtcdCAKeyFile))
			os.WriteFile(filepath.Join(dir, CAKeyFile), b, 0o600)
		}, CAKeyFile, "does not match"},
		{"missing key", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, FrontProxyCAKeyFile))
		}, FrontProxyCAKeyFile, "missing"},
		{"service-account key pair mismatch", func(t *testing.T, dir string) {
			k, _ := rsa.GenerateKey(rand.Reader, 1024)
			b, _ := keyutil.MarshalPrivateKeyToPEM(k)
			os.WriteFile(filepath.Join(dir, SAKeyFile), b, 0o600)
		}, SAKeyFile, "does not match"},
		{"short certificate key", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, CertificateKeyFile), []byte("abcd\n"), 0o600)
		}, CertificateKeyFile, "64 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newTestPKI(t)
			tt.breakIt(t, p.Dir())
			_, err := EnsurePKI(PKIConfig{Dir: p.Dir()})
			if err == nil {
				t.Fatalf("EnsurePKI with %s = nil error, want a refusal", tt.name)
			}
			if !strings.Contains(err.Error(), filepath.Join(p.Dir(), tt.wantFile)) || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("EnsurePKI with %s = %q, want it to name %s and say %q", tt.name, err, tt.wantFile, tt.wantText)
			}
		})
	}
}

// writeShortLivedCA replaces the cluster CA with one valid until notAfter.
func writeShortLivedCA(t *testing.T, dir string, notAfter time.Time) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: notAfter.Add(-24 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := keyutil.MarshalPrivateKeyToPEM(key)
	for path, b := range map[string][]byte{CACertFile: pemBlock("CERTIFICATE", der), CAKeyFile: kb} {
		if err := os.WriteFile(filepath.Join(dir, path), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheckCAValidity(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	os.MkdirAll(dir, 0o700)
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	writeShortLivedCA(t, dir, now.Add(20*time.Minute))
	p, err := EnsurePKI(PKIConfig{Dir: dir})
	if err != nil {
		t.Fatalf("EnsurePKI: %v", err)
	}
	if err := p.CheckCAValidity(now, 10*time.Minute); err != nil {
		t.Errorf("CheckCAValidity(ttl 10m, CA expires in 20m) = %v, want nil", err)
	}
	err = p.CheckCAValidity(now, DefaultTokenTTL)
	if err == nil || !strings.Contains(err.Error(), "expires") || !strings.Contains(err.Error(), CACertFile) {
		t.Errorf("CheckCAValidity(ttl 30m, CA expires in 20m) = %v, want an error naming %s and its expiry", err, CACertFile)
	}
}

func TestAdminKubeconfig(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t)
	now := time.Now()
	kc, err := p.AdminKubeconfig("https://127.0.0.1:6443", now, 0)
	if err != nil {
		t.Fatalf("AdminKubeconfig: %v", err)
	}
	rc, err := RESTConfig(kc)
	if err != nil {
		t.Fatalf("RESTConfig: %v", err)
	}
	der, _ := pemDecode(rc.CertData)
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckSignatureFrom(p.CA()); err != nil {
		t.Errorf("admin certificate not signed by the cluster CA: %v", err)
	}
	if got := c.Subject.Organization; len(got) != 1 || got[0] != AdminGroup {
		t.Errorf("admin certificate groups = %v, want [%s]", got, AdminGroup)
	}
	if life := c.NotAfter.Sub(now); life > DefaultAdminCertValidity+time.Second || life < DefaultAdminCertValidity-time.Minute {
		t.Errorf("admin certificate lives %s, want about %s", life, DefaultAdminCertValidity)
	}
	if rc.Host != "https://127.0.0.1:6443" {
		t.Errorf("kubeconfig server = %q", rc.Host)
	}
	if rc.QPS != ClientQPS || rc.Burst != ClientBurst {
		t.Errorf("RESTConfig rate limits = %v/%d, want %v/%d (client-go's 5/10 throttles a rack)", rc.QPS, rc.Burst, ClientQPS, ClientBurst)
	}
}

// pemDecode returns the first PEM block's bytes.
func pemDecode(b []byte) ([]byte, string) {
	blk, _ := encpem.Decode(b)
	if blk == nil {
		return nil, ""
	}
	return blk.Bytes, blk.Type
}

func TestAdminRESTConfigRenewsCertificate(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t)
	rc := p.AdminRESTConfig("https://127.0.0.1:6443", time.Minute)
	get := rc.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate
	first, err := get(nil)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := get(nil)
	if first != again {
		t.Error("GetClientCertificate minted a new certificate while the current one is fresh")
	}
	leaf, err := x509.ParseCertificate(first.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.Organization[0] != AdminGroup || leaf.CheckSignatureFrom(p.CA()) != nil {
		t.Errorf("admin certificate %v not in %s or not from the cluster CA", leaf.Subject, AdminGroup)
	}
	if life := time.Until(leaf.NotAfter); life > time.Minute || life < 50*time.Second {
		t.Errorf("admin certificate lives %s, want 1m", life)
	}
}
