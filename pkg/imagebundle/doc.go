// Package imagebundle builds and reads Slipway's offline image bundle: the
// container images kubeadm needs (`kubeadm config images list` of the
// cluster's version: kube-apiserver, kube-controller-manager,
// kube-scheduler, kube-proxy, CoreDNS, pause, etcd) plus any extra images,
// each as an OCI image layout archive, with index files that say which
// nodes need which image. The provisioner serves the bundle from its boot
// HTTP server; the node image imports it into containerd's k8s.io
// namespace before kubeadm runs, so no registry is contacted.
//
// A bundle is built either from a registry on a connected machine (Pull)
// or from locally built binaries, one small image per binary (FromFiles),
// which is what the tests use. Images are written with
// github.com/google/go-containerregistry.
package imagebundle
