// Package addons applies the cluster add-ons the inventory lists (a pod
// network such as Calico, Cilium or Flannel, the device plugin DaemonSet,
// the research stack's Helm charts) in inventory order once the API
// answers, and names the add-on and its inventory entry (FILE:LINE:COL) in
// anything that fails; one failed add-on does not stop the others.
//
// A manifest add-on is applied object by object with server-side apply
// under the field manager "slipway"; re-applying it changes nothing.
//
// A chart add-on is one Helm release, installed or upgraded with the Helm
// SDK (v4): the chart is read from disk, from an HTTPS chart repository
// (its archive checked against the index's digest) or from an OCI
// registry, with the entry's CA file and credentials only; values are the
// entry's values files, then its inline values, then its secret values
// read from their env:/file: references at apply time. The release is
// recorded by Helm in Secrets of its namespace (values included, so a
// secret value is as safe as the cluster's Secrets) and labelled with a
// digest of the chart's files: when the deployed revision has the same
// digest and values, a re-apply does nothing and makes no new revision.
// Install and upgrade apply objects server-side and do not wait for them
// to become ready (nodes may still be joining), only for hooks; Helm
// installs a chart's crds/ directory on first install and never upgrades
// it.
//
// PlanAddons is the dry run: the same steps against the API's dry-run
// mode, each result with a unified diff of what would change.
package addons
