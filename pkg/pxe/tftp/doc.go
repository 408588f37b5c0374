// Package tftp is the provisioner's read-only TFTP server for iPXE binaries:
// it serves one directory, confined with os.OpenRoot so no request can reach
// outside it, negotiates blksize and tsize, refuses every write, and reports
// each transfer as a boot event.
package tftp
