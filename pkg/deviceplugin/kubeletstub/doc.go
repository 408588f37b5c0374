// Package kubeletstub is a kubelet stand-in for device plugin tests that
// behaves like the kubelet v1.37 device manager where a plugin can tell the
// difference: at start it deletes every socket in the device plugin
// directory (the plugins' too) and then creates kubelet.sock; Register
// dials the plugin's socket, reads its options and refuses a second
// registration of a connected resource and socket with the kubelet's
// "device plugin already connected" (which, as in the kubelet, leaves that
// endpoint unable ever to be disconnected); it follows ListAndWatch and,
// when the stream ends, marks every device of the resource unhealthy.
// Tests read what the kubelet saw: registrations, refusals, device lists,
// allocatable counts, and a client for the plugin's other calls.
package kubeletstub
