package kubeadm

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

// File names inside the PKI directory, the same as kubeadm's under
// /etc/kubernetes/pki so the files can be copied to a control-plane node as is.
const (
	CACertFile           = "ca.crt"
	CAKeyFile            = "ca.key"
	FrontProxyCACertFile = "front-proxy-ca.crt"
	FrontProxyCAKeyFile  = "front-proxy-ca.key"
	EtcdCACertFile       = "etcd/ca.crt"
	EtcdCAKeyFile        = "etcd/ca.key"
	SAKeyFile            = "sa.key"
	SAPubFile            = "sa.pub"
	// CertificateKeyFile holds the hex AES-256 key kubeadm's upload-certs
	// encrypts the control-plane certificates with (not a kubeadm file).
	CertificateKeyFile = "certificate-key"
)

// AdminGroup is the group of the admin client certificate; kubeadm binds it
// to cluster-admin (ClusterRoleBinding kubeadm:cluster-admins).
const AdminGroup = "kubeadm:cluster-admins"

// DefaultAdminCertValidity is how long an admin client certificate minted by
// AdminKubeconfig is valid when no validity is given.
const DefaultAdminCertValidity = time.Hour

// caSpec describes one certificate authority of the cluster.
type caSpec struct {
	cert, key, cn string
}

var caSpecs = map[Authority]caSpec{
	ClusterCA:    {CACertFile, CAKeyFile, "kubernetes"},
	FrontProxyCA: {FrontProxyCACertFile, FrontProxyCAKeyFile, "front-proxy-ca"},
	EtcdCA:       {EtcdCACertFile, EtcdCAKeyFile, "etcd-ca"},
}

// PKIConfig configures EnsurePKI.
type PKIConfig struct {
	// Dir is the PKI directory, normally STATE_DIR/pki. It is created 0700.
	Dir string
	// Log receives one line per file created; nil discards.
	Log *slog.Logger
}

// PKI is the cluster's certificate authorities and service-account key pair,
// loaded from (and kept in) one directory in kubeadm's layout.
type PKI struct {
	dir     string
	ca      *x509.Certificate
	caKey   crypto.Signer
	cas     map[Authority]authority
	certKey string
}

// Authority names one of the cluster's certificate authorities.
type Authority string

// The cluster's certificate authorities.
const (
	// ClusterCA signs API server, kubelet and client certificates.
	ClusterCA Authority = "cluster"
	// FrontProxyCA signs the aggregation layer's proxy client certificate.
	FrontProxyCA Authority = "front-proxy"
	// EtcdCA signs etcd's server, peer and client certificates.
	EtcdCA Authority = "etcd"
)

type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// EnsurePKI loads the cluster PKI from cfg.Dir, creating whatever is missing
// (cluster CA, front-proxy CA, etcd CA, service-account key pair and the
// upload-certs certificate key). An existing file is never overwritten: a
// certificate without its key, a key that does not match its certificate, a
// file readable by group or others, or an unreadable file is refused with an
// error that names the file.
func EnsurePKI(cfg PKIConfig) (*PKI, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir == "" {
		return nil, errors.New("ensure pki: no directory given")
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "etcd"), 0o700); err != nil {
		return nil, fmt.Errorf("ensure pki in %s: %w", cfg.Dir, err)
	}
	p := &PKI{dir: cfg.Dir, cas: map[Authority]authority{}}
	for _, a := range []Authority{ClusterCA, FrontProxyCA, EtcdCA} {
		s := caSpecs[a]
		c, k, created, err := ensureCA(cfg.Dir, s)
		if err != nil {
			return nil, err
		}
		if created {
			log.Info("certificate authority created", "file", filepath.Join(cfg.Dir, s.cert))
		}
		p.cas[a] = authority{c, k}
	}
	p.ca, p.caKey = p.cas[ClusterCA].cert, p.cas[ClusterCA].key
	created, err := ensureSAKey(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("service-account key pair created", "file", filepath.Join(cfg.Dir, SAKeyFile))
	}
	ck, created, err := ensureCertificateKey(filepath.Join(cfg.Dir, CertificateKeyFile))
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("certificate key created", "file", filepath.Join(cfg.Dir, CertificateKeyFile))
	}
	p.certKey = ck
	return p, nil
}

// Dir returns the PKI directory.
func (p *PKI) Dir() string { return p.dir }

// CA returns the cluster CA certificate.
func (p *PKI) CA() *x509.Certificate { return p.ca }

// CASigner returns the cluster CA's private key.
func (p *PKI) CASigner() crypto.Signer { return p.caKey }

// CACertPEM returns the cluster CA certificate, PEM encoded.
func (p *PKI) CACertPEM() []byte {
	return pem(p.ca)
}

// CertificateKey returns the hex AES-256 key kubeadm's upload-certs uses.
// It is secret: only control-plane nodes receive it.
func (p *PKI) CertificateKey() string { return p.certKey }

// DiscoveryHash returns the CA pin joining nodes check the cluster CA
// against: "sha256:" and the hex SHA-256 of the CA's SubjectPublicKeyInfo,
// the form kubeadm's discovery.bootstrapToken.caCertHashes takes.
func (p *PKI) DiscoveryHash() string { return DiscoveryHash(p.ca) }

// DiscoveryHash returns "sha256:<hex>" of c's SubjectPublicKeyInfo.
func DiscoveryHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// CheckCAValidity refuses a cluster CA that is not yet valid at now or
// expires before now+within (for example the token TTL: a node that joins
// late must still be able to trust the CA it pinned).
func (p *PKI) CheckCAValidity(now time.Time, within time.Duration) error {
	file := filepath.Join(p.dir, CACertFile)
	if now.Before(p.ca.NotBefore) {
		return fmt.Errorf("check cluster ca %s: not valid before %s", file, p.ca.NotBefore.UTC().Format(time.RFC3339))
	}
	if p.ca.NotAfter.Before(now.Add(within)) {
		return fmt.Errorf("check cluster ca %s: it expires %s, within %s; renew the cluster CA before provisioning nodes",
			file, p.ca.NotAfter.UTC().Format(time.RFC3339), within)
	}
	return nil
}

// CertPEM returns the certificate of authority a, PEM encoded.
func (p *PKI) CertPEM(a Authority) []byte { return pem(p.cas[a].cert) }

// ClientCert issues a client certificate from the cluster CA with the given
// common name and groups (organizations), valid from now for validity. It
// returns the certificate and private key, both PEM encoded.
func (p *PKI) ClientCert(cn string, groups []string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	return p.Issue(ClusterCA, CertRequest{CommonName: cn, Groups: groups, Client: true}, now, validity)
}

// ServingCert issues a serving certificate from the cluster CA for the
// given DNS names and IP addresses (tests use it for a throwaway API server).
func (p *PKI) ServingCert(cn string, hosts cert.AltNames, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	return p.Issue(ClusterCA, CertRequest{CommonName: cn, Hosts: hosts, Server: true}, now, validity)
}

// CertRequest describes a certificate to issue.
type CertRequest struct {
	// CommonName is the subject's common name (the user name for clients).
	CommonName string
	// Groups are the subject's organizations (the groups for clients).
	Groups []string
	// Hosts are the DNS names and IP addresses a server certificate covers.
	Hosts cert.AltNames
	// Server and Client select the extended key usages.
	Server, Client bool
}

// Issue issues a certificate from authority a, valid from now for validity
// (never past the CA's own expiry), with a new RSA 2048 key. It returns the
// certificate and private key, both PEM encoded.
func (p *PKI) Issue(a Authority, r CertRequest, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	ca, ok := p.cas[a]
	if !ok {
		return nil, nil, fmt.Errorf("issue certificate %s: unknown authority %q", r.CommonName, a)
	}
	tmpl := x509.Certificate{
		Subject:     pkix.Name{CommonName: r.CommonName, Organization: r.Groups},
		DNSNames:    r.Hosts.DNSNames,
		IPAddresses: r.Hosts.IPs,
	}
	if r.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if r.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	return issue(ca, tmpl, now, validity)
}

func issue(ca authority, tmpl x509.Certificate, now time.Time, validity time.Duration) ([]byte, []byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate %s: generate key: %w", tmpl.Subject.CommonName, err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(math.MaxInt64))
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate %s: serial: %w", tmpl.Subject.CommonName, err)
	}
	tmpl.SerialNumber = serial
	// A little slack before now tolerates clock skew between hosts.
	tmpl.NotBefore = now.Add(-5 * time.Minute).UTC()
	tmpl.NotAfter = now.Add(validity).UTC()
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate %s: %w", tmpl.Subject.CommonName, err)
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate %s: encode key: %w", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate %s: %w", tmpl.Subject.CommonName, err)
	}
	return pem(c), keyPEM, nil
}

// File is one file a control-plane node receives: a path relative to
// /etc/kubernetes/pki and its content.
type File struct {
	// Path is relative to /etc/kubernetes/pki, such as "etcd/ca.key".
	Path string
	// Data is the file's content.
	Data []byte
	// Secret is true for private keys.
	Secret bool
}

// ControlPlaneFiles returns the files the first control-plane node needs so
// that kubeadm init uses this cluster's CAs instead of creating its own: the
// three CA certificates and keys and the service-account key pair.
func (p *PKI) ControlPlaneFiles() ([]File, error) {
	var out []File
	for _, name := range []string{CACertFile, CAKeyFile, FrontProxyCACertFile, FrontProxyCAKeyFile, EtcdCACertFile, EtcdCAKeyFile, SAKeyFile, SAPubFile} {
		b, err := readPrivate(filepath.Join(p.dir, name))
		if err != nil {
			return nil, err
		}
		secret := filepath.Ext(name) == ".key"
		out = append(out, File{Path: name, Data: b, Secret: secret})
	}
	return out, nil
}

func pem(c *x509.Certificate) []byte {
	b, _ := cert.EncodeCertificates(c) // encoding a parsed certificate cannot fail
	return b
}

// ensureCA loads the CA described by s, or creates it when neither file
// exists.
func ensureCA(dir string, s caSpec) (*x509.Certificate, crypto.Signer, bool, error) {
	certPath, keyPath := filepath.Join(dir, s.cert), filepath.Join(dir, s.key)
	certOK, keyOK := exists(certPath), exists(keyPath)
	switch {
	case certOK && keyOK:
		c, k, err := loadCA(certPath, keyPath)
		return c, k, false, err
	case certOK:
		return nil, nil, false, fmt.Errorf("load %s: its key %s is missing; restore it from backup or move both away to create a new CA", certPath, keyPath)
	case keyOK:
		return nil, nil, false, fmt.Errorf("load %s: its certificate %s is missing; restore it from backup or move both away to create a new CA", keyPath, certPath)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, false, fmt.Errorf("create %s: generate key: %w", keyPath, err)
	}
	c, err := cert.NewSelfSignedCACert(cert.Config{CommonName: s.cn}, key)
	if err != nil {
		return nil, nil, false, fmt.Errorf("create %s: %w", certPath, err)
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, nil, false, fmt.Errorf("create %s: encode key: %w", keyPath, err)
	}
	if err := writeNew(keyPath, keyPEM); err != nil {
		return nil, nil, false, err
	}
	if err := writeNew(certPath, pem(c)); err != nil {
		return nil, nil, false, err
	}
	return c, key, true, nil
}

func loadCA(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	cb, err := readPrivate(certPath)
	if err != nil {
		return nil, nil, err
	}
	certs, err := cert.ParseCertsPEM(cb)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", certPath, err)
	}
	c := certs[0]
	if !c.IsCA {
		return nil, nil, fmt.Errorf("load %s: not a CA certificate", certPath)
	}
	kb, err := readPrivate(keyPath)
	if err != nil {
		return nil, nil, err
	}
	k, err := keyutil.ParsePrivateKeyPEM(kb)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", keyPath, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("load %s: key type %T cannot sign", keyPath, k)
	}
	if err := samePublicKey(c.PublicKey, signer.Public()); err != nil {
		return nil, nil, fmt.Errorf("load %s: key does not match certificate %s: %w", keyPath, certPath, err)
	}
	return c, signer, nil
}

func samePublicKey(a, b crypto.PublicKey) error {
	ab, err := x509.MarshalPKIXPublicKey(a)
	if err != nil {
		return err
	}
	bb, err := x509.MarshalPKIXPublicKey(b)
	if err != nil {
		return err
	}
	if !bytes.Equal(ab, bb) {
		return errors.New("public keys differ")
	}
	return nil
}

func ensureSAKey(dir string) (bool, error) {
	keyPath, pubPath := filepath.Join(dir, SAKeyFile), filepath.Join(dir, SAPubFile)
	keyOK, pubOK := exists(keyPath), exists(pubPath)
	switch {
	case keyOK && pubOK:
		kb, err := readPrivate(keyPath)
		if err != nil {
			return false, err
		}
		k, err := keyutil.ParsePrivateKeyPEM(kb)
		if err != nil {
			return false, fmt.Errorf("load %s: %w", keyPath, err)
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			return false, fmt.Errorf("load %s: key type %T cannot sign", keyPath, k)
		}
		pb, err := readPrivate(pubPath)
		if err != nil {
			return false, err
		}
		pubs, err := keyutil.ParsePublicKeysPEM(pb)
		if err != nil {
			return false, fmt.Errorf("load %s: %w", pubPath, err)
		}
		if err := samePublicKey(pubs[0], signer.Public()); err != nil {
			return false, fmt.Errorf("load %s: key does not match %s: %w", keyPath, pubPath, err)
		}
		return false, nil
	case keyOK || pubOK:
		return false, fmt.Errorf("load service-account key pair in %s: only one of %s and %s exists; restore the other from backup", dir, SAKeyFile, SAPubFile)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return false, fmt.Errorf("create %s: generate key: %w", keyPath, err)
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return false, fmt.Errorf("create %s: encode key: %w", keyPath, err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return false, fmt.Errorf("create %s: encode key: %w", pubPath, err)
	}
	if err := writeNew(keyPath, keyPEM); err != nil {
		return false, err
	}
	if err := writeNew(pubPath, pemBlock("PUBLIC KEY", pubDER)); err != nil {
		return false, err
	}
	return true, nil
}

func ensureCertificateKey(path string) (string, bool, error) {
	if exists(path) {
		b, err := readPrivate(path)
		if err != nil {
			return "", false, err
		}
		k := string(bytes.TrimSpace(b))
		if raw, err := hex.DecodeString(k); err != nil || len(raw) != 32 {
			return "", false, fmt.Errorf("load %s: want 64 hex digits (an AES-256 key)", path)
		}
		return k, false, nil
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", false, fmt.Errorf("create %s: %w", path, err)
	}
	k := hex.EncodeToString(raw)
	if err := writeNew(path, []byte(k+"\n")); err != nil {
		return "", false, err
	}
	return k, true, nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// readPrivate reads a PKI file after checking that only its owner can read
// or write it.
func readPrivate(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("load %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("load %s: permissions %04o let group or others read it; run chmod 600 %s", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return b, nil
}

// writeNew writes a new 0600 file; it never replaces an existing one.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: already exists, refusing to overwrite", path)
		}
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}
