// Package redfishsim simulates Redfish BMCs over real HTTP(S) on loopback,
// for tests and for `provisioner demo`.
//
// A Sim runs any number of simulated BMCs in one process. Each BMC has its
// own listener (127.0.0.1:0 unless an address is given), so a simulated rack
// of 1000 BMCs is 1000 loopback ports, and a client reaches each one exactly
// as it would reach a real BMC: by host and port, with no routing header.
//
// Every BMC serves the part of the Redfish API that bmclib's Redfish provider
// (gofish) uses to power a server and set its next boot device: the service
// root, SessionService (POST a session for an X-Auth-Token and a Location,
// DELETE it to log out), HTTP basic auth, the Systems collection, one
// ComputerSystem with PowerState, Boot (override target, enabled and mode,
// with allowable values) and the ComputerSystem.Reset action with its
// allowable reset types, and Managers and Chassis stubs carrying
// Manufacturer, Model and SerialNumber.
//
// Faults (latency, hangs, HTTP errors, refused credentials, a session limit,
// a BMC that acknowledges power changes without making them, malformed JSON)
// and vendor quirks (a BMC that rejects BootSourceOverrideMode, one without
// PowerCycle) are set per BMC, at start or at run time with SetFaults.
//
// OnPower is called whenever the simulated server's power changes, so a test
// or the demo can attach a simulated or QEMU machine to a BMC.
package redfishsim
