// Package devices discovers the accelerators and fabric adapters of one
// compute node (NVIDIA GPUs, InfiniBand/RoCE HCAs, FPGAs) with their NUMA and
// PCIe topology and health, reading only under a root passed in.
//
// Discover reads ROOT/sys, ROOT/proc and ROOT/dev (ROOT is Config.Root,
// "/" on a host, the host's root mounted somewhere in a container) and,
// for GPUs, NVML through the narrow NVML seam (go-nvml, loaded with dlopen
// at run time; FromNVML wraps go-nvml's mock servers for tests). It returns
// one Device per GPU, HCA (one per RDMA device) and FPGA card, with the
// device nodes a container needs.
//
// ResourceConfig is the device plugin's config file: selectors that map
// devices to extended resource names (DefaultConfig without a file). A
// Topology gives the PCIe locality of two devices (same switch, same root,
// same NUMA node, across), computed once. A Monitor turns NVML XID events,
// polled HCA port states, FPGA AFU/interface IDs and device disappearance
// into HealthEvents, and brings a device back after a clean period.
package devices
