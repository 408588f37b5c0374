// Package kubeadm gives each node exactly what it needs to become part of the
// cluster: it creates the cluster's certificate authorities once in the state
// directory (PKI), mints a bootstrap token per joining node (Token, Tokens),
// renders kubeadm.k8s.io/v1beta4 configurations and the node configuration
// that runs kubeadm (Renderer), and follows a node until it is Ready, then
// deletes its token (WaitJoined).
//
// Only control-plane nodes ever receive CA keys or the certificate key; a
// worker receives a token minted for it alone and the hash that pins the
// cluster CA.
package kubeadm
