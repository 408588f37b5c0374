package kubeadm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// DefaultTokenTTL is how long a node's bootstrap token is valid when no TTL
// is configured: bare metal boots slowly (firmware, PXE, image), so longer
// than Cluster API's 15 minutes.
const DefaultTokenTTL = 30 * time.Minute

// NodeTokenGroup is the extra group of every token minted here, the group
// kubeadm's RBAC lets post CSRs and read the join configuration.
const NodeTokenGroup = "system:bootstrappers:kubeadm:default-node-token"

// Token is a bootstrap token minted for one node. Its secret half never
// prints: String shows "ID.[redacted]".
type Token struct {
	// ID is the public half, [a-z0-9]{6}; the Secret is named bootstrap-token-ID.
	ID string
	// Secret is the private half, [a-z0-9]{16}.
	Secret inventory.Secret
	// Node is the node the token was minted for.
	Node string
	// Expires is when the API server stops accepting the token.
	Expires time.Time
	// TTL is the lifetime the token was minted with. A token carried in an
	// InitConfiguration is created by kubeadm init with this TTL, counted
	// from when init runs.
	TTL time.Duration
}

// NewToken mints a token for node from a cryptographically secure source,
// valid until now+ttl (DefaultTokenTTL when ttl is 0).
func NewToken(node string, now time.Time, ttl time.Duration) (Token, error) {
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < 0 {
		return Token{}, fmt.Errorf("mint token for %s: ttl %s is negative", node, ttl)
	}
	s, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		return Token{}, fmt.Errorf("mint token for %s: %w", node, err)
	}
	id, secret, _ := strings.Cut(s, ".")
	return Token{ID: id, Secret: inventory.NewSecret(secret), Node: node, Expires: now.Add(ttl).UTC().Truncate(time.Second), TTL: ttl}, nil
}

// Value returns the full token "ID.SECRET" to hand to kubeadm. Call it only
// where the token goes to the node.
func (t Token) Value() string { return t.ID + "." + t.Secret.Reveal() }

// String returns "ID.[redacted]".
func (t Token) String() string { return t.ID + ".[redacted]" }

// LogValue implements slog.LogValuer without the secret.
func (t Token) LogValue() slog.Value { return slog.StringValue(t.String()) }

// SecretName returns the name of the token's Secret in kube-system.
func (t Token) SecretName() string { return bootstraputil.BootstrapTokenSecretName(t.ID) }

// Description is the token Secret's description: it names the node.
func (t Token) Description() string {
	return "slipway: join credential for node " + t.Node
}

// APISecret returns the bootstrap-token Secret the API server authenticates
// the token with: usages authentication and signing (the signing usage lets
// the bootstrap signer sign cluster-info for discovery), the default node
// token group, and an expiration the token cleaner honours.
func (t Token) APISecret() *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      t.SecretName(),
			Namespace: metav1.NamespaceSystem,
			Labels:    map[string]string{"app.kubernetes.io/managed-by": "slipway", NodeLabel: t.Node},
		},
		Type: bootstrapapi.SecretTypeBootstrapToken,
		StringData: map[string]string{
			bootstrapapi.BootstrapTokenIDKey:               t.ID,
			bootstrapapi.BootstrapTokenSecretKey:           t.Secret.Reveal(),
			bootstrapapi.BootstrapTokenExpirationKey:       t.Expires.UTC().Format(time.RFC3339),
			bootstrapapi.BootstrapTokenDescriptionKey:      t.Description(),
			bootstrapapi.BootstrapTokenUsageAuthentication: "true",
			bootstrapapi.BootstrapTokenUsageSigningKey:     "true",
			bootstrapapi.BootstrapTokenExtraGroupsKey:      NodeTokenGroup,
		},
	}
}

// CreateToken stores t as a bootstrap-token Secret through the API, which
// makes it usable. The Secret already existing is an error: IDs are random,
// so a clash means the token was already handed out.
func CreateToken(ctx context.Context, c kubernetes.Interface, t Token) error {
	if _, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, t.APISecret(), metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("create bootstrap token %s for node %s: %w", t.ID, t.Node, err)
	}
	return nil
}

// DeleteToken deletes the bootstrap-token Secret with the given ID; a token
// that is already gone is not an error.
func DeleteToken(ctx context.Context, c kubernetes.Interface, id string) error {
	err := c.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, bootstraputil.BootstrapTokenSecretName(id), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete bootstrap token %s: %w", id, err)
	}
	return nil
}

// NodeLabel labels a token Secret with the node it was minted for.
const NodeLabel = "slipway.dev/node"

// FieldManager is the field manager of every object Slipway writes.
const FieldManager = "slipway"

// ErrNodeJoined is returned (wrapped) when a node's configuration is asked
// for after the node has already joined the cluster.
var ErrNodeJoined = errors.New("node has already joined the cluster")

// ExtendToken moves the expiration of the bootstrap token with the given ID
// to until, so a node that boots slowly (firmware, PXE, a large image) is
// not locked out by its token expiring before it joins.
func ExtendToken(ctx context.Context, c kubernetes.Interface, id string, until time.Time) error {
	secrets := c.CoreV1().Secrets(metav1.NamespaceSystem)
	s, err := secrets.Get(ctx, bootstraputil.BootstrapTokenSecretName(id), metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("extend bootstrap token %s: %w", id, err)
	}
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	s.Data[bootstrapapi.BootstrapTokenExpirationKey] = []byte(until.UTC().Format(time.RFC3339))
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("extend bootstrap token %s: %w", id, err)
	}
	return nil
}
