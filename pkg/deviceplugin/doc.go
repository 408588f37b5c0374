// Package deviceplugin serves discovered devices to the kubelet over the
// device plugin API (k8s.io/kubelet deviceplugin v1beta1): one gRPC server
// and unix socket per resource, one registration per kubelet start,
// ListAndWatch with health and NUMA topology, topology-aware
// GetPreferredAllocation (policy in package allocate), Allocate with device
// nodes, environment and CDI devices, and Prometheus metrics.
//
// A Plugin is a front end of the node agent (pkg/nodeagent): Apply takes
// the node's devices.State (devices with the health the agent's ledger
// gives them, and the resource config) and advertises it; the plugin keeps
// no health of its own.
package deviceplugin
