package kubeadm

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// AdminUser is the common name of the admin client certificate.
const AdminUser = "slipway-admin"

// AdminKubeconfig mints a kubeconfig for the provisioner's own API access:
// a client certificate from the cluster CA in group kubeadm:cluster-admins
// (which kubeadm init binds to cluster-admin), valid from now for validity
// (DefaultAdminCertValidity when 0), for the API server at server
// ("https://host:port"). The result holds a private key: keep it 0600 or in
// memory.
func (p *PKI) AdminKubeconfig(server string, now time.Time, validity time.Duration) ([]byte, error) {
	if validity == 0 {
		validity = DefaultAdminCertValidity
	}
	certPEM, keyPEM, err := p.ClientCert(AdminUser, []string{AdminGroup}, now, validity)
	if err != nil {
		return nil, fmt.Errorf("mint admin kubeconfig for %s: %w", server, err)
	}
	return Kubeconfig(server, p.CACertPEM(), AdminUser, certPEM, keyPEM)
}

// Kubeconfig builds a kubeconfig for server with one user authenticating by
// client certificate.
func Kubeconfig(server string, caPEM []byte, user string, certPEM, keyPEM []byte) ([]byte, error) {
	const name = "slipway"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user}
	cfg.CurrentContext = name
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("write kubeconfig for %s: %w", server, err)
	}
	return b, nil
}

// Client-side rate limits of the configurations returned here. client-go's
// defaults (5 requests/s, bursts of 10) would throttle issuing tokens for a
// rack of nodes to a few nodes per second; the API server's priority and
// fairness still protects itself.
const (
	ClientQPS   = 50
	ClientBurst = 100
)

// RESTConfig turns a kubeconfig into a client configuration (rate limits
// ClientQPS and ClientBurst).
func RESTConfig(kubeconfig []byte) (*rest.Config, error) {
	c, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	c.QPS, c.Burst = ClientQPS, ClientBurst
	return c, nil
}

// AdminRESTConfig returns a client configuration for the API server at
// server ("https://host:port") that authenticates as the admin (group
// kubeadm:cluster-admins) with client certificates minted from the cluster
// CA on demand: each lives for validity (DefaultAdminCertValidity when 0)
// and a fresh one is minted for new connections once the current one is
// past half its life, so a long-running provisioner never holds a
// long-lived admin credential and never runs into an expired one.
func (p *PKI) AdminRESTConfig(server string, validity time.Duration) *rest.Config {
	if validity == 0 {
		validity = DefaultAdminCertValidity
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.ca)
	m := &certMinter{pki: p, validity: validity}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
		TLSClientConfig: &tls.Config{
			RootCAs:              roots,
			MinVersion:           tls.VersionTLS12,
			GetClientCertificate: m.get,
		},
	}
	return &rest.Config{Host: server, Transport: tr, QPS: ClientQPS, Burst: ClientBurst}
}

// certMinter hands out the current admin client certificate, minting a new
// one when the current one is past half its life.
type certMinter struct {
	pki      *PKI
	validity time.Duration

	mu      sync.Mutex
	cur     *tls.Certificate
	renewAt time.Time
}

func (m *certMinter) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if m.cur != nil && now.Before(m.renewAt) {
		return m.cur, nil
	}
	certPEM, keyPEM, err := m.pki.ClientCert(AdminUser, []string{AdminGroup}, now, m.validity)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("mint admin certificate: %w", err)
	}
	m.cur, m.renewAt = &pair, now.Add(m.validity/2)
	return m.cur, nil
}
