// Command provisioner turns racked servers into Kubernetes nodes: it drives
// their BMCs, serves their network boot and follows them until they join.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// main turns Ctrl-C, SIGTERM and a closed terminal (SIGHUP) into a
// cancelled context, so every command ends by returning: its deferred
// cleanups (the demo's temporary directory, BMC sessions) run.
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
