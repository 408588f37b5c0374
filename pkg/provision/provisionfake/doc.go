// Package provisionfake is a fake rack for testing pkg/provision: machines
// whose fake BMCs start a simulated boot that reports provisioning events
// (DHCP, kernel, initrd, config, join) through a delivery function, with
// failure injection and a record of every power operation. It also serves
// its BMCs and readiness over HTTP so a provisioner in another process (the
// crash test) can drive it. pkg/simrack is the real-protocol counterpart.
package provisionfake
