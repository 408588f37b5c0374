// Package testenv decides whether a test that needs a system program (qemu,
// ipmi_sim, dnsmasq) or root privileges runs, skips, or fails: on a laptop
// without the program it skips with the reason, and under SLIPWAY_E2E=1 (as
// .ci/run sets) a missing dependency fails the test instead of hiding it.
package testenv
