// Package allocate is the device plugin's preferred-allocation policy: given
// the devices the kubelet offers, it picks the set that is closest on the
// PCIe tree (same switch, then same root complex, then same NUMA node, then
// across), from pairwise distances computed once when the devices are
// discovered, with a bounded search so that a request answers in
// milliseconds.
package allocate
