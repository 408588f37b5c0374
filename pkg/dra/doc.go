// Package dra is the node agent's Dynamic Resource Allocation front end: a
// DRA kubelet plugin (driver slipway.dev) that publishes the node's GPUs,
// HCAs and FPGAs from pkg/devices as ResourceSlices and prepares the claims
// the scheduler allocated from them.
//
// It is built on k8s.io/dynamic-resource-allocation/kubeletplugin, pinned to
// the minor of k8s.io/api (that library's API changes between minors).
//
//   - Slices: one pool named after the node, one device per GPU, HCA and
//     FPGA, with the standard resource.kubernetes.io/pcieRoot, pciBusID and
//     numaNode attributes (computed by the library's deviceattribute helpers
//     under the host root), slipway.dev attributes and capacities, and a
//     slipway.dev/unhealthy taint on unhealthy devices. Nothing is published
//     before a discovery has succeeded.
//   - Prepare: one CDI spec per claim (device nodes and environment), written
//     atomically, and a checkpoint of prepared claims (with their specs) on
//     persistent storage, written atomically and synced, so that unprepare
//     works after a plugin restart or a node reboot, a missing or damaged
//     spec is written again at start, and a claim the driver no longer knows
//     unprepares successfully.
//   - Health: taints in the slices steer the scheduler; the kubelet's
//     dra-health stream gets a full report at once, on every change and
//     again well within its timeout.
//
// Driver is a front end of the node agent (pkg/nodeagent): the agent
// discovers, follows health, hot-plug and config changes and calls Apply
// with the whole state on every change; Run serves the kubelet.
package dra
