// Package bootiso builds the bootable CD image a node gets through its
// BMC's virtual media when it cannot network-boot (a routed BMC network, no
// DHCP on the node's segment): an iPXE CD that configures the node's
// address statically and chains to the node's iPXE script on the
// provisioner's boot HTTP server.
//
// The image reuses, unmodified, the boot loader and iPXE of Debian's ipxe
// package (/usr/lib/ipxe/ipxe.iso: ISOLINUX, its ldlinux.c32 and
// ipxe.lkrn); the node's script goes in as the initrd that ISOLINUX hands
// iPXE, which runs it. The ISO 9660 file system and El Torito boot catalog
// are written here (no mkisofs or xorriso needed).
//
// Only BIOS (legacy) boot runs the node's script: Debian 12's iPXE (2019)
// has no way to take a script on UEFI from a CD (autoexec.ipxe arrived in
// iPXE 1.21), so Build refuses a UEFI node rather than produce a CD that
// would silently DHCP-autoboot.
package bootiso
