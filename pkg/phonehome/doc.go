// Package phonehome is the wire format of a node's progress reports: what a
// booted node POSTs to the boot server's /phone-home/NODE after each step of
// its node configuration, one line such as
//
//	step=kubeadm-join status=ok
//	step=kubeadm-join status=failed rc=1
//
// Format and Parse live side by side here; the node configuration (the
// shell function that reports, see ShellBody), the simulated machines, the
// provisioner's orchestrator and the end-to-end tests all use them.
package phonehome
