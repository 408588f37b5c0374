// Package bmc controls servers through their baseboard management
// controllers: power state, power on, off, soft off, cycle and reset, the
// next boot device (PXE, disk or CD; one-time or persistent; UEFI or
// legacy) and virtual media.
//
// A Client talks to one BMC with an explicit protocol: Redfish through
// gofish's typed objects (the session, the ComputerSystem with its Boot,
// allowed reset types, inline or in the ActionInfo its Reset action names,
// @Redfish.Settings, LastResetTime and BootProgress, and VirtualMedia) for
// redfish:// and redfish+http:// URLs; IPMI through
// bmclib's ipmitool provider for ipmi:// URLs. The ComputerSystem is read
// once per connection (one command) and only what must be fresh is read
// again. The password reference is resolved when the connection opens and
// is never logged or printed. A Redfish session is opened once per Client
// and always logged out by Close, also after Ctrl-C, because BMCs such as
// iDRAC allow only about 8.
//
// Nothing a BMC says is trusted; every result is what was read back:
//   - a power change is confirmed by the power state; cycle and reset by
//     evidence of a restart (LastResetTime or BootProgress moving, off then
//     on observed). Without a native PowerCycle, or without evidence, cycle
//     is done as off, confirm off, on, confirm on; a reset without evidence
//     is reported as sent but not verifiable, never as done. A reset of a
//     node that is off fails with ErrPoweredOff on both protocols.
//   - a boot override is read back, polling because some BMCs (iLO 5)
//     apply it seconds after accepting it, and a node fails when the BMC
//     holds another device or boot mode than asked, with what to change.
//     Where the system refuses the Boot PATCH (405) and has a settings
//     object (AMI MegaRAC), the override goes there through gofish and is
//     read back from there, pending until the next power-on or reset.
//   - a BMC's refusal is understood from its answer (status, message and
//     @Message.ExtendedInfo): a 400 naming BootSourceOverrideMode, a 405, a
//     session limit. The quirk table keyed by manufacturer and model (see
//     Quirk) only saves a refused request.
//
// Run fans one sequence of steps out over many nodes with bounded
// parallelism; one dead or hanging BMC costs only its own timeout.
//
// Sibling packages: redfishsim simulates Redfish BMCs with vendor profiles,
// and ipmisim runs OpenIPMI's ipmi_sim.
package bmc
