// Package kubeadm gives each node exactly what it needs to become part of the
// cluster: it creates the cluster's certificate authorities once in the state
// directory (EnsurePKI), mints a bootstrap token per joining node (Token,
// CreateToken), renders kubeadm.k8s.io/v1beta4 configurations (InitConfig,
// JoinConfig) and the node configuration that runs kubeadm (NodeConfig, as
// cloud-config or shell script), and follows a node until it is Ready, then
// deletes its token (WaitJoined). Bootstrapper ties these together for the
// provisioner: Issue and Revoke for the orchestrator, Render for the boot
// server's one-time config endpoint, Ready for readiness.
//
// Only control-plane nodes ever receive CA keys or the certificate key; a
// worker receives a token minted for it alone and the hash that pins the
// cluster CA.
package kubeadm
