package kubeadm

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
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

// ReadyList answers whether nodes are Ready from one LIST of the cluster's
// Node objects, refreshed at most every MaxAge, instead of one GET per
// joining node per poll: a rack of 1000 joining nodes costs the API server
// one request per MaxAge, not a thousand. Build it with NewReadyList.
type ReadyList struct {
	client kubernetes.Interface
	maxAge time.Duration

	mu      sync.Mutex
	fetched time.Time
	ready   map[string]bool
	err     error
}

// NewReadyList returns a ReadyList on client; maxAge 0 means one second.
func NewReadyList(client kubernetes.Interface, maxAge time.Duration) *ReadyList {
	if maxAge <= 0 {
		maxAge = time.Second
	}
	return &ReadyList{client: client, maxAge: maxAge}
}

// Ready reports whether node exists and has Ready=True (NodeReady). A node
// that does not exist yet is not Ready and not an error.
func (l *ReadyList) Ready(ctx context.Context, node string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ready == nil || time.Since(l.fetched) >= l.maxAge {
		l.fetched = time.Now()
		list, err := l.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			l.ready, l.err = map[string]bool{}, fmt.Errorf("list nodes: %w", err)
		} else {
			l.ready, l.err = make(map[string]bool, len(list.Items)), nil
			for i := range list.Items {
				l.ready[list.Items[i].Name] = NodeReady(&list.Items[i])
			}
		}
	}
	return l.ready[node], l.err
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
	if err := waitReady(ctx, c, node); err != nil {
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

// waitReady lists the node, then watches it from that list's resource
// version until it is Ready; a watch the server closes is restarted.
func waitReady(ctx context.Context, c kubernetes.Interface, node string) error {
	sel := fields.OneTermEqualSelector("metadata.name", node).String()
	for {
		list, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		for i := range list.Items {
			if NodeReady(&list.Items[i]) {
				return nil
			}
		}
		w, err := c.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: list.ResourceVersion})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		ready, err := watchReady(ctx, w)
		w.Stop()
		if ready || err != nil {
			return err
		}
	}
}

// watchReady reads w until the node is Ready (true), the watch ends (false)
// or ctx is done.
func watchReady(ctx context.Context, w watch.Interface) (bool, error) {
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false, nil
			}
			if n, isNode := ev.Object.(*corev1.Node); isNode && ev.Type != watch.Deleted && NodeReady(n) {
				return true, nil
			}
		}
	}
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
