// Package bmc controls servers through their baseboard management controllers:
// power state, power on, off, soft off, cycle and reset, and the next boot
// device (PXE or disk, one-time or persistent, UEFI or legacy).
//
// A Client talks to one BMC through bmclib v2 with an explicit provider:
// Redfish (bmclib's gofish provider) for redfish:// and redfish+http:// URLs,
// ipmitool for ipmi:// URLs, never bmclib's try-every-provider default. The
// password reference is resolved when the connection opens and is never
// logged or printed. A Redfish session is opened once per Client and always
// logged out by Close, because BMCs such as iDRAC allow only about 8.
//
// Nothing a BMC says is trusted: after a power change the Client polls the
// power state with backoff until it matches, and after setting the boot
// device it reads the override back where the protocol allows. Known vendor
// deviations are handled through a quirk table keyed by the Redfish
// Manufacturer and Model (see Quirk).
//
// Run fans one sequence of steps out over many nodes with bounded
// parallelism; one dead or hanging BMC costs only its own timeout.
//
// Sibling packages: redfishsim simulates Redfish BMCs, ipmisim runs
// OpenIPMI's ipmi_sim, and bmcfake is an in-memory Controller for tests.
package bmc
