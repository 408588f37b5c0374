// Package pxe runs the network boot services of an inventory together: the
// DHCP server, the TFTP server for iPXE binaries, the boot HTTP server and
// IPv6 router advertisements, under one errgroup, with one event bus that
// the log, the metrics and the provisioning orchestrator read.
package pxe
