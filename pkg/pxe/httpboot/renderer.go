package httpboot

import (
	"context"
	"fmt"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// Renderer returns a node's configuration, served once per token at
// /config/{node}. pkg/kubeadm implements it with the node's join
// configuration.
type Renderer interface {
	Render(ctx context.Context, node inventory.Node) ([]byte, error)
}

// RendererFunc adapts a function to Renderer.
type RendererFunc func(ctx context.Context, node inventory.Node) ([]byte, error)

// Render calls f.
func (f RendererFunc) Render(ctx context.Context, node inventory.Node) ([]byte, error) {
	return f(ctx, node)
}

// PhoneHomeRenderer is the placeholder renderer used until a real one is
// plugged in: it returns a shell script that only reports back to the
// provisioner that the node booted and fetched its configuration.
type PhoneHomeRenderer struct {
	// BaseURL is the boot server's URL as nodes reach it, such as
	// http://10.77.0.1:8080.
	BaseURL string
}

// Render returns the phone-home script for node.
func (r PhoneHomeRenderer) Render(_ context.Context, node inventory.Node) ([]byte, error) {
	return fmt.Appendf(nil, `#!/bin/sh
# Slipway placeholder configuration for %[1]s: no cluster join yet, only report back.
wget -q -O - --post-data "config fetched" "%[2]s/phone-home/%[1]s" || true
`, node.Name, r.BaseURL), nil
}
