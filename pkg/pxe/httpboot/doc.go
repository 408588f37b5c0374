// Package httpboot is the provisioner's boot HTTP server: per-node iPXE
// scripts, kernel, initrd and image assets (range requests, sendfile), iPXE
// binaries for UEFI HTTP boot, each node's configuration behind a one-time
// token, the phone-home endpoint booted nodes report to, Prometheus metrics
// and a health check.
package httpboot
