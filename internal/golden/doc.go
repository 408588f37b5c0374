// Package golden compares a test's rendered output (iPXE scripts, DHCP
// replies, kubeadm configs, Allocate responses, tables) with a reviewed file
// under testdata/, and rewrites that file instead when the test binary runs
// with -update, so a change of output is reviewed as a diff.
package golden
