package kubeadm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// Config configures a Bootstrapper.
type Config struct {
	// Inventory supplies the cluster settings and the nodes. Required.
	Inventory *inventory.Inventory
	// PKI is the cluster PKI from EnsurePKI. Required.
	PKI *PKI
	// Client reaches the cluster's API with admin rights. It may be nil
	// until the first control-plane node's API answers; then only the first
	// control-plane node can be issued credentials (its token travels in its
	// InitConfiguration).
	Client kubernetes.Interface
	// TokenTTL is how long a node's token is valid (default DefaultTokenTTL).
	TokenTTL time.Duration
	// Format is the node configuration format (default FormatCloudConfig).
	Format Format
	// PhoneHomeURL is the boot server's base URL as nodes of the
	// provisioner's own network reach it, such as http://10.77.0.1:8080
	// (empty: nodes do not report their steps). A node of a routed network
	// reports to its network's provisioner address instead.
	PhoneHomeURL string
	// Install is what each node installs before kubeadm runs, by profile
	// name; a profile not listed installs nothing.
	Install map[string]Install
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log receives one line per token issued or revoked; nil discards.
	// Tokens are logged by ID only.
	Log *slog.Logger
}

// Bootstrapper issues each node its join credentials, serves its node
// configuration and withdraws the credentials once the node joined. It fits
// the orchestrator's issuer (Issue, Revoke), the boot server's renderer
// (Render) and readiness (Ready).
type Bootstrapper struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	client kubernetes.Interface
	issued map[string]issued
}

type issued struct {
	kind  Kind
	token Token
}

// New checks cfg and returns a Bootstrapper.
func New(cfg Config) (*Bootstrapper, error) {
	var errs []error
	if cfg.Inventory == nil {
		errs = append(errs, errors.New("no inventory"))
	}
	if cfg.PKI == nil {
		errs = append(errs, errors.New("no pki"))
	}
	if cfg.TokenTTL < 0 {
		errs = append(errs, fmt.Errorf("token ttl %s is negative", cfg.TokenTTL))
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	f, err := ParseFormat(string(cfg.Format))
	if err != nil {
		errs = append(errs, err)
	}
	cfg.Format = f
	if cfg.Inventory != nil {
		if err := CheckKubernetesVersion(cfg.Inventory.Cluster.KubernetesVersion); err != nil {
			errs = append(errs, err)
		}
		if err := checkSubnets(cfg.Inventory.Cluster); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configure kubeadm bootstrap: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Bootstrapper{cfg: cfg, log: log, client: cfg.Client, issued: map[string]issued{}}, nil
}

// SetClient sets the admin client once the first control-plane node's API
// answers (Config.Client may be nil before).
func (b *Bootstrapper) SetClient(c kubernetes.Interface) {
	b.mu.Lock()
	b.client = c
	b.mu.Unlock()
}

func (b *Bootstrapper) apiClient() kubernetes.Interface {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.client
}

// Endpoint returns host:port of the cluster's control-plane endpoint (port
// 6443 when the inventory gives none).
func (b *Bootstrapper) Endpoint() string { return endpoint(b.cfg.Inventory.Cluster) }

// FirstControlPlane returns the first enabled control-plane node in
// inventory order: the node that runs kubeadm init.
func FirstControlPlane(inv *inventory.Inventory) (inventory.Node, bool) {
	for _, n := range inv.Nodes {
		if !n.Disabled && n.Role == inventory.RoleControlPlane {
			return n, true
		}
	}
	return inventory.Node{}, false
}

// KindOf returns how n enters the cluster: init for the first control-plane
// node, join-control-plane for the others, join-worker for workers.
func KindOf(inv *inventory.Inventory, n inventory.Node) Kind {
	if n.Role == inventory.RoleControlPlane {
		if first, ok := FirstControlPlane(inv); ok && first.Name == n.Name {
			return KindInit
		}
		return KindControlPlane
	}
	return KindWorker
}

// Issue mints n's bootstrap token. For a joining node (kind
// join-control-plane or join-worker) the token is created in the cluster
// now; for the first control-plane node (init) it travels in the node's
// InitConfiguration and kubeadm creates it. For a further control-plane
// node the control-plane certificates are uploaded (UploadCerts), owned by
// its token, so they leave the cluster when the token is revoked.
//
// Issue is idempotent: issuing again for the same kind while the node's
// token has more than half its TTL left keeps that token (a node may
// already be booting with it); later, a new token replaces the old one,
// which is deleted. A disabled node, a node that has already joined and a
// cluster CA that expires within the token TTL are refused.
func (b *Bootstrapper) Issue(ctx context.Context, n inventory.Node, kind Kind) error {
	if err := b.check(ctx, n, kind); err != nil {
		return err
	}
	now := b.cfg.Now()
	b.mu.Lock()
	prev, had := b.issued[n.Name]
	b.mu.Unlock()
	if had && prev.kind == kind && prev.token.Expires.After(now.Add(b.cfg.TokenTTL/2)) {
		b.log.Debug("bootstrap token kept", "node", n.Name, "token_id", prev.token.ID, "expires", prev.token.Expires)
		return nil
	}
	if err := b.cfg.PKI.CheckCAValidity(now, b.cfg.TokenTTL); err != nil {
		return fmt.Errorf("issue join credentials for %s: %w", n.Name, err)
	}
	tok, err := NewToken(n.Name, now, b.cfg.TokenTTL)
	if err != nil {
		return err
	}
	client := b.apiClient()
	if kind != KindInit {
		if err := CreateToken(ctx, client, tok); err != nil {
			return err
		}
	}
	if kind == KindControlPlane {
		// Fresh uploads, owned by this node's token: kubeadm init's own
		// upload expires after two hours.
		if err := UploadCerts(ctx, client, b.cfg.PKI, tok.ID); err != nil {
			// The token is useless without the certificates; it expires
			// anyway, deleting it now is tidier.
			if derr := DeleteToken(ctx, client, tok.ID); derr != nil {
				err = errors.Join(err, derr)
			}
			return fmt.Errorf("issue join credentials for %s: %w", n.Name, err)
		}
	}
	b.mu.Lock()
	old, had := b.issued[n.Name]
	b.issued[n.Name] = issued{kind: kind, token: tok}
	b.mu.Unlock()
	if had && old.kind != KindInit && client != nil {
		if err := DeleteToken(ctx, client, old.token.ID); err != nil {
			return fmt.Errorf("issue join credentials for %s: replace previous token: %w", n.Name, err)
		}
	}
	b.log.Info("bootstrap token issued", "node", n.Name, "phase", string(kind), "token_id", tok.ID, "expires", tok.Expires)
	return nil
}

// check refuses a node that must not receive credentials.
func (b *Bootstrapper) check(ctx context.Context, n inventory.Node, kind Kind) error {
	if n.Disabled {
		return fmt.Errorf("issue join credentials for %s: node is disabled in the inventory (%s)", n.Name, n.Source)
	}
	switch kind {
	case KindInit, KindControlPlane:
		if n.Role != inventory.RoleControlPlane {
			return fmt.Errorf("issue join credentials for %s: %s needs a control-plane node, the node's role is %s", n.Name, kind, n.Role)
		}
	case KindWorker:
	default:
		return fmt.Errorf("issue join credentials for %s: unknown kind %q", n.Name, kind)
	}
	client := b.apiClient()
	if kind == KindInit {
		return b.checkNoCluster(ctx, client, n)
	}
	if client == nil {
		return fmt.Errorf("issue join credentials for %s: the cluster API is not reachable yet; the first control-plane node must be up before nodes join", n.Name)
	}
	_, err := client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	switch {
	case err == nil:
		return fmt.Errorf("issue join credentials for %s: %w (delete the Node object first to re-provision it)", n.Name, ErrNodeJoined)
	case apierrors.IsNotFound(err):
		return nil
	}
	return fmt.Errorf("issue join credentials for %s: look up node: %w", n.Name, err)
}

// checkNoCluster refuses kubeadm init when the cluster's API already
// answers: a second init would build a second cluster. An API that does not
// answer (no cluster yet) lets init go ahead.
func (b *Bootstrapper) checkNoCluster(ctx context.Context, client kubernetes.Interface, n inventory.Node) error {
	if client == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	var status apierrors.APIStatus
	switch {
	case err == nil:
		return fmt.Errorf("issue join credentials for %s: %w (delete the Node object first to re-provision it)", n.Name, ErrNodeJoined)
	case errors.As(err, &status):
		return fmt.Errorf("issue init credentials for %s: the cluster API at %s already answers (%v); a second kubeadm init would build a second cluster", n.Name, endpoint(b.cfg.Inventory.Cluster), err)
	}
	b.log.Debug("cluster api not answering, init allowed", "node", n.Name, "err", err)
	return nil
}

// Token returns the token issued for node, if any.
func (b *Bootstrapper) Token(node string) (Token, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	is, ok := b.issued[node]
	return is.token, ok
}

// Render returns n's node configuration with its real credentials, in the
// configured format. Credentials must have been issued first; a disabled
// node or one that has already joined is refused.
func (b *Bootstrapper) Render(ctx context.Context, n inventory.Node) ([]byte, error) {
	b.mu.Lock()
	is, ok := b.issued[n.Name]
	b.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("render node configuration for %s: no join credentials issued for it", n.Name)
	}
	if err := b.check(ctx, n, is.kind); err != nil {
		return nil, err
	}
	// The node fetches its config right before it joins. A token minted
	// before a slow POST or a power cycle may be near its end by now: give
	// it a full TTL from here. A failure is not fatal: the token may still
	// last, and the join says so plainly if it does not.
	if is.kind != KindInit && b.cfg.Now().Add(b.cfg.TokenTTL/2).After(is.token.Expires) {
		if err := b.Extend(ctx, n); err != nil {
			b.log.Warn("bootstrap token not extended at config fetch", "node", n.Name, "err", err)
		}
	}
	nc, err := b.NodeConfig(n, is.kind, is.token, true)
	if err != nil {
		return nil, err
	}
	return nc.Render(b.Format(n))
}

// Format returns the form n's configuration is served in: its inventory's
// boot.configFormat, else the configured default.
func (b *Bootstrapper) Format(n inventory.Node) Format {
	if n.Boot.ConfigFormat != "" {
		return Format(n.Boot.ConfigFormat)
	}
	return b.cfg.Format
}

// Preview returns the configuration n would receive as kind, with a token
// minted for the preview only (never created in the cluster). Secrets (the
// token's secret half, the certificate key, CA and service-account keys)
// are replaced by "[redacted]" unless reveal is true.
func (b *Bootstrapper) Preview(n inventory.Node, kind Kind, reveal bool) (NodeConfig, error) {
	if n.Disabled {
		return NodeConfig{}, fmt.Errorf("render node configuration for %s: node is disabled in the inventory (%s)", n.Name, n.Source)
	}
	tok, err := NewToken(n.Name, b.cfg.Now(), b.cfg.TokenTTL)
	if err != nil {
		return NodeConfig{}, err
	}
	return b.NodeConfig(n, kind, tok, reveal)
}

// Redacted replaces a secret in previews.
const Redacted = "[redacted]"

// NodeConfig assembles what n receives as kind with token tok; with reveal
// false every secret is replaced by Redacted.
func (b *Bootstrapper) NodeConfig(n inventory.Node, kind Kind, tok Token, reveal bool) (NodeConfig, error) {
	c := b.cfg.Inventory.Cluster
	certKey := b.cfg.PKI.CertificateKey()
	if !reveal {
		tok.Secret = inventory.NewSecret(Redacted)
		certKey = Redacted
	}
	nc := NodeConfig{Node: n, Kind: kind, Install: b.cfg.Install[n.Profile], PhoneHomeURL: b.cfg.PhoneHomeURL}
	if nc.PhoneHomeURL != "" {
		nc.PhoneHomeURL = b.cfg.Inventory.NodeBootURL(n, nc.PhoneHomeURL)
	}
	if len(b.cfg.Inventory.Addons) == 0 {
		// No add-ons, so no pod network of the site's: the node image's own.
		nc.PodNetwork = PodNetworkFlat
	}
	var err error
	switch kind {
	case KindInit:
		nc.Kubeadm, err = InitConfig(c, n, tok, certKey)
		if err != nil {
			return NodeConfig{}, err
		}
		nc.PKIFiles, err = b.cfg.PKI.ControlPlaneFiles()
		if err != nil {
			return NodeConfig{}, err
		}
		if !reveal {
			for i := range nc.PKIFiles {
				if nc.PKIFiles[i].Secret {
					nc.PKIFiles[i].Data = []byte(Redacted + "\n")
				}
			}
		}
	case KindControlPlane:
		nc.Kubeadm, err = JoinConfig(c, n, tok, b.cfg.PKI.DiscoveryHash(), certKey, JoinOptions{})
	case KindWorker:
		// A worker never receives the certificate key.
		nc.Kubeadm, err = JoinConfig(c, n, tok, b.cfg.PKI.DiscoveryHash(), "", JoinOptions{})
	default:
		err = fmt.Errorf("render node configuration for %s: unknown kind %q", n.Name, kind)
	}
	if err != nil {
		return NodeConfig{}, err
	}
	return nc, nil
}

// Extend pushes the expiry of n's token to now+TokenTTL, for a node that is
// still booting when its token is about to expire (call it while the node
// has not joined, for example every TokenTTL/3). A node without a token is
// an error.
func (b *Bootstrapper) Extend(ctx context.Context, n inventory.Node) error {
	b.mu.Lock()
	is, ok := b.issued[n.Name]
	b.mu.Unlock()
	if !ok {
		return fmt.Errorf("extend token of node %s: no token issued", n.Name)
	}
	client := b.apiClient()
	if client == nil {
		return fmt.Errorf("extend token %s of node %s: the cluster API is not reachable", is.token.ID, n.Name)
	}
	until := b.cfg.Now().Add(b.cfg.TokenTTL).UTC().Truncate(time.Second)
	if err := b.cfg.PKI.CheckCAValidity(b.cfg.Now(), b.cfg.TokenTTL); err != nil {
		return fmt.Errorf("extend token of node %s: %w", n.Name, err)
	}
	if err := ExtendToken(ctx, client, is.token.ID, until); err != nil {
		return fmt.Errorf("extend token of node %s: %w", n.Name, err)
	}
	b.mu.Lock()
	if cur, ok := b.issued[n.Name]; ok && cur.token.ID == is.token.ID {
		cur.token.Expires = until
		b.issued[n.Name] = cur
	}
	b.mu.Unlock()
	b.log.Info("bootstrap token extended", "node", n.Name, "token_id", is.token.ID, "expires", until)
	return nil
}

// Revoke deletes n's token from the cluster (it is no longer needed once
// the node is Ready), and any other token labelled for n (issued by an
// earlier run), and forgets it. Revoking a node without a token is not an
// error.
func (b *Bootstrapper) Revoke(ctx context.Context, n inventory.Node) error {
	b.mu.Lock()
	is, ok := b.issued[n.Name]
	b.mu.Unlock()
	client := b.apiClient()
	if client == nil {
		if !ok {
			return nil
		}
		return fmt.Errorf("revoke token %s of node %s: the cluster API is not reachable", is.token.ID, n.Name)
	}
	var ids []string
	if ok {
		ids = append(ids, is.token.ID)
	}
	// Tokens issued by an earlier run of the provisioner carry the node's
	// label; revoke those too, so Revoke is idempotent across restarts.
	list, err := client.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: NodeLabel + "=" + n.Name})
	if err != nil {
		return fmt.Errorf("revoke tokens of node %s: list: %w", n.Name, err)
	}
	for _, s := range list.Items {
		if s.Type == bootstrapapi.SecretTypeBootstrapToken {
			if id, ok := strings.CutPrefix(s.Name, bootstrapapi.BootstrapTokenSecretPrefix); ok && (len(ids) == 0 || id != ids[0]) {
				ids = append(ids, id)
			}
		}
	}
	for _, id := range ids {
		if err := DeleteToken(ctx, client, id); err != nil {
			return fmt.Errorf("revoke token of node %s: %w", n.Name, err)
		}
		b.log.Info("bootstrap token revoked", "node", n.Name, "token_id", id)
	}
	if ok {
		b.mu.Lock()
		if cur, ok := b.issued[n.Name]; ok && cur.token.ID == is.token.ID {
			delete(b.issued, n.Name)
		}
		b.mu.Unlock()
	}
	return nil
}
