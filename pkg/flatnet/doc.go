// Package flatnet is Slipway's built-in pod network for a flat
// provisioning network (a lab, a small rack on one L2 segment): each node
// bridges its pods (CNI bridge + host-local on the pod CIDR the
// kube-controller-manager gave its Node) and routes every other node's pod
// CIDR to that node's InternalIP. No overlay, no image, no registry: it runs
// on the node as part of the node image (slipway-node flatnet), reading Nodes
// with the kubelet's own credentials. Traffic from pods to anything outside
// the pod CIDRs is masqueraded to the node's address; pod-to-pod traffic is
// not (the Kubernetes network model).
//
// Sites with routed racks, network policies or their own CNI list that CNI
// as an inventory add-on instead; the flat network is then not started.
package flatnet
