package kubeadm

import (
	"fmt"
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

// RESTConfig turns a kubeconfig into a client configuration.
func RESTConfig(kubeconfig []byte) (*rest.Config, error) {
	c, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	return c, nil
}
