// Package nodeinit is what runs on a node booted from the Slipway node image
// (images/node), as the slipway-node program: it reads the kernel command
// line, fetches the node's one-time configuration and runs it (a shell
// script, or the #cloud-config subset pkg/kubeadm renders, applied the way
// cloud-init applies it), and imports the offline image bundle into
// containerd before kubeadm runs. Every failure is printed (the systemd
// units send it to the console and the journal) and reported to the
// provisioner's phone-home endpoint when one is known.
package nodeinit
