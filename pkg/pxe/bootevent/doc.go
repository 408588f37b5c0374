// Package bootevent is the stream of network-boot events (DHCP offers, TFTP
// transfers, iPXE scripts, kernel and initrd downloads, config fetches and
// phone-homes) that the boot services publish and the provisioning
// orchestrator, the log and the metrics consume.
package bootevent
