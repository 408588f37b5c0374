// Package wire runs provisioning end to end: it connects the orchestrator of
// package provision to real BMCs (package bmc) and to the boot services
// (package pxe), the one code path behind `provisioner up`, `provisioner
// demo` and the QEMU end-to-end test of up.
//
// A Provisioner runs the boot services, feeds their events to the
// orchestrator, journals each node-config fetch before the config is served
// (JournaledRenderer), opens and closes each node's BMC (BMCOpener) and stops
// the services once every node is Ready or failed. Progress display, metrics
// serving and the final summary stay with the caller.
package wire
