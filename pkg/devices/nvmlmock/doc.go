// Package nvmlmock is go-nvml's mock DGX H100 server set up to match the
// pkg/devices dgx-h100 fixture tree (bus IDs, UUIDs, device minors), with
// NVML XID events injected through its event set and MIG devices created
// through the mock's own MIG API. Tests wrap it with devices.FromNVML.
package nvmlmock
