// Package controlplane holds the tests that prove pkg/kubeadm and
// pkg/addons against real upstream components: a throwaway control plane on
// 127.0.0.1 (etcd, kube-apiserver with bootstrap-token authentication,
// kube-controller-manager running only the bootstrap signer, the token
// cleaner and the garbage collector) built from the cluster PKI pkg/kubeadm generates, and kubeadm
// itself. The binaries come from test/tools/build.sh; without them the tests
// skip (and fail under SLIPWAY_E2E=1).
package controlplane
