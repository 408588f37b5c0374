// Package assemble builds `provisioner up` from one Options value and runs
// it: the one code path behind `provisioner up`, `provisioner demo` and the
// end-to-end tests, and the only package that imports bmc, pxe, kubeadm and
// provision together.
//
// New builds, in this order, with no setter and no cycle:
//
//  1. the inventory's enabled nodes and the boot URL nodes reach (the boot
//     HTTP port is decided once, by pxe.Config.ServedHTTPPort);
//  2. credentials: the cluster PKI in the state directory and the kubeadm
//     bootstrapper with its API client (JoinKubeadm), or nothing
//     (JoinReportOnly: the demo and the QEMU lab have no Kubernetes API);
//  3. the node-config renderer: kubeadm's configs, or a report-only script;
//  4. readiness: the cluster's Node objects, or the node's own join report;
//  5. the orchestrator (package provision), with the BMCs (package bmc);
//  6. the renderer the boot server calls, which journals each config fetch
//     through the orchestrator before the config is served;
//  7. the boot services (package pxe) with one metrics registry, served
//     with /healthz on the boot HTTP listener;
//  8. the add-ons, applied once the API answers.
//
// Run runs the boot services, the event bridge from the boot services to
// the orchestrator, the add-ons and the caller's Beside functions under
// one errgroup until every node is Ready or failed.
package assemble
