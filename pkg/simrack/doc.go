// Package simrack is a simulated rack for `provisioner demo` and tests: one
// Redfish simulator (pkg/bmc/redfishsim) per node on loopback, each attached
// through its power hook to a simulated machine. When a machine is powered
// on with a one-time PXE boot set, its "firmware" really speaks the
// protocols a server would: DHCP (through a relay address, so the exchange
// works on loopback without broadcasts), TFTP for the iPXE binary, DHCP again
// as iPXE, then HTTP for its iPXE script, kernel and initrd, all from the
// node's own loopback address so the boot services can tell nodes apart. Its
// "OS" then fetches the node config named on the kernel command line and
// phones home the kubeadm step, after which the machine counts as a Ready
// node (there is no Kubernetes API in the simulation: Rack.Ready stands in
// for the Node object's Ready condition).
//
// Boot times are configurable per machine, and failures can be injected: a
// machine that never PXE-boots, one that hangs in its OS, one whose BMC is
// dead.
package simrack
