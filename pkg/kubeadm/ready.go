package kubeadm

import (
	"context"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// NodeReady reports whether node has the condition Ready=True.
func NodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Ready reports whether the Node called node exists and is Ready; a node
// that does not exist yet is not Ready and not an error.
func (b *Bootstrapper) Ready(ctx context.Context, node string) (bool, error) {
	client := b.apiClient()
	if client == nil {
		return false, nil
	}
	return Ready(ctx, client, node)
}

// Ready reports whether the Node called node exists and is Ready.
func Ready(ctx context.Context, c kubernetes.Interface, node string) (bool, error) {
	n, err := c.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get node %s: %w", node, err)
	}
	return NodeReady(n), nil
}

// WaitJoined watches the Node called node (it need not exist yet) until it is
// Ready, then deletes the bootstrap token tokenID the node joined with (""
// deletes nothing) and logs the node as joined. It returns when that is
// done, or with ctx's error.
func WaitJoined(ctx context.Context, c kubernetes.Interface, node, tokenID string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sel := fields.OneTermEqualSelector("metadata.name", node).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return c.CoreV1().Nodes().List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return c.CoreV1().Nodes().Watch(ctx, o)
		},
	}
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Node{}, nil, func(ev watch.Event) (bool, error) {
		n, ok := ev.Object.(*corev1.Node)
		return ok && ev.Type != watch.Deleted && NodeReady(n), nil
	})
	if err != nil {
		return fmt.Errorf("wait for node %s to be ready: %w", node, err)
	}
	log.Info("node joined", "node", node)
	if tokenID == "" {
		return nil
	}
	if err := DeleteToken(ctx, c, tokenID); err != nil {
		return fmt.Errorf("node %s joined: %w", node, err)
	}
	log.Info("bootstrap token deleted", "node", node, "token_id", tokenID)
	return nil
}

// WaitJoined waits until n is Ready, then revokes its token (see the
// package-level WaitJoined).
func (b *Bootstrapper) WaitJoined(ctx context.Context, node string) error {
	client := b.apiClient()
	if client == nil {
		return fmt.Errorf("wait for node %s to be ready: the cluster API is not reachable", node)
	}
	tok, _ := b.Token(node)
	if err := WaitJoined(ctx, client, node, tok.ID, b.log); err != nil {
		return err
	}
	b.mu.Lock()
	if cur, ok := b.issued[node]; ok && cur.token.ID == tok.ID {
		delete(b.issued, node)
	}
	b.mu.Unlock()
	return nil
}
