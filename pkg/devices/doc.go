// Package devices discovers the accelerators and fabric adapters of one
// compute node (NVIDIA GPUs, InfiniBand/RoCE HCAs, FPGAs) with their NUMA and
// PCIe topology and health, reading only under a root passed in.
package devices
