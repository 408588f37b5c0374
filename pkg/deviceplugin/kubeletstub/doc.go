// Package kubeletstub is a kubelet stand-in for device plugin tests: a
// Registration gRPC server on kubelet.sock in a directory, which, like the
// kubelet, dials every plugin that registers, reads its options and follows
// its ListAndWatch stream, and hands tests a client for the plugin's other
// calls.
package kubeletstub
