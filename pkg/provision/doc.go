// Package provision takes inventory nodes from whatever state they are in to
// Ready Kubernetes nodes: one explicit state machine per node (power off,
// one-time network boot, power on, DHCP, netboot, config fetched, join,
// Ready), driven only by what the provisioner observes, with a timeout per
// phase, bounded retries with backoff and per-node isolation; an append-only,
// fsync'd journal in the state directory so a killed run resumes without
// power-cycling a node that already passed netboot; a dry-run plan; progress
// output (live table, plain lines, JSON) and a final report with per-phase
// timings.
//
// The package reaches BMCs, boot services, the node-config issuer and the
// cluster only through the small interfaces declared in deps.go; package
// assemble (pkg/provision/assemble) builds the real implementations
// (pkg/bmc, pkg/pxe, pkg/kubeadm) into `provisioner up`, `demo` and the
// end-to-end tests, and unit tests use fakes (provisionfake).
package provision
