// Package deviceplugin serves discovered devices to the kubelet over the
// device plugin API (k8s.io/kubelet deviceplugin v1beta1): one gRPC server
// and unix socket per resource, registration and re-registration when the
// kubelet restarts, ListAndWatch with health and NUMA topology,
// topology-aware GetPreferredAllocation (policy in package allocate),
// Allocate with device nodes, environment and CDI devices, and Prometheus
// metrics.
package deviceplugin
