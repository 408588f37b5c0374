// Package addons applies the cluster add-on manifests the inventory lists (a
// pod network such as Calico, Cilium or Flannel, the device plugin
// DaemonSet, anything else the site wants) with server-side apply under the
// field manager "slipway", in order and idempotently, and names the file and
// object of anything that fails.
package addons
