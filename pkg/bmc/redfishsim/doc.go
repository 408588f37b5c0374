// Package redfishsim simulates Redfish BMCs over real HTTP(S) on loopback,
// for tests and for `provisioner demo`.
//
// A Sim runs any number of simulated BMCs in one process. Each BMC has its
// own listener (127.0.0.1:0 unless an address is given), so a simulated rack
// of 1000 BMCs is 1000 loopback ports, and a client reaches each one exactly
// as it would reach a real BMC: by host and port, with no routing header.
//
// Every BMC serves the part of the Redfish API a provisioner uses: the
// service root, SessionService (POST a session for an X-Auth-Token and a
// Location, DELETE it to log out), HTTP basic auth, the Systems collection,
// one ComputerSystem with PowerState, Boot (override target, enabled and
// mode, with allowable values), LastResetTime and BootProgress, the
// ComputerSystem.Reset action with its allowable reset types (inline, or in
// a ResetActionInfo resource named by @Redfish.ActionInfo), optionally a
// @Redfish.Settings object (.../SD, with ETag and If-Match), a virtual CD
// (VirtualMedia with InsertMedia, which fetches the image from its URL as a
// BMC does, and EjectMedia) on the manager or the system, and Managers and
// Chassis carrying Manufacturer, Model and SerialNumber.
//
// Vendor behaviours are BMCConfig fields, and Profiles names the
// combinations real BMCs show: generic, ilo5 (asynchronous boot override),
// idrac8 (400 on BootSourceOverrideMode, Legacy BIOS, ExtendedInfo
// messages, 8 sessions), megarac (boot only through @Redfish.Settings),
// lazy (acknowledges restarts and does nothing), minimal (no reboot
// evidence) and openbmc (reset types only through @Redfish.ActionInfo,
// as bmcweb). Faults (latency, hangs, HTTP errors, refused credentials, a
// session limit, ignored power changes, malformed JSON) are set per BMC, at
// start or at run time with SetFaults.
//
// The simulated host's boots are recorded (Booted: device, mode, image) so
// a test can check what a host really booted against what a client said;
// OnPower is called whenever the simulated server's power changes, so a
// test or the demo can attach a simulated or QEMU machine to a BMC.
package redfishsim
