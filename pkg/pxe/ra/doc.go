// Package ra sends IPv6 router advertisements on the provisioning
// interface. The provisioner is not a router (router lifetime 0): the
// advertisements exist because iPXE waits about 16 s for IPv6
// autoconfiguration on a segment without one.
package ra
