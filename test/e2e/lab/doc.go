//go:build e2e

// Package lab is the end-to-end PXE lab: a network namespace with a bridge
// and one tap per virtual machine, QEMU virtual machines that network-boot
// with real firmware (SeaBIOS with QEMU's iPXE ROM, OVMF with the iPXE EFI
// ROM, or OVMF's own PXE stack), a busybox node image built from Debian's
// kernel package, a dnsmasq peer, and serial console capture.
//
// Everything the lab creates lives inside a namespace it creates
// (slipway-e2e-<random>) and is removed again: the bridge, the taps and every
// process, which is killed by PID. A test binary that runs Go servers the VMs
// must reach calls [Main] from TestMain, which re-executes the binary inside
// a fresh namespace so that every socket the servers open is on the lab's
// bridge and nowhere else.
//
// The package is built only with the e2e build tag.
package lab
