// Command slipway-node runs on nodes booted from the Slipway node image
// (images/node): `slipway-node images` imports the offline image bundle,
// `slipway-node config` fetches and runs the node's one-time configuration,
// `slipway-node flatnet` keeps the flat pod network of the node in step
// with the cluster. systemd units of the image start each of them.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
