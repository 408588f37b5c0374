// Package bmcfake is an in-memory bmc.Controller for tests of code that
// drives BMCs (the provisioning orchestrator): it records calls, holds a
// power state and boot override, and fails on request.
package bmcfake
