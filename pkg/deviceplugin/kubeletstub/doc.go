// Package kubeletstub is a kubelet stand-in for device plugin tests that
// behaves like the kubelet v1.37 device manager where a plugin can tell the
// difference: at start it deletes every socket in the device plugin
// directory (the plugins' too, and last the kubelet.sock a killed kubelet
// left, see Kill) and then creates kubelet.sock; Register dials the
// plugin's socket, reads its options and refuses a second registration of
// a connected resource and socket with the kubelet's "device plugin
// already connected" (which, as in the kubelet, leaves that endpoint
// unable ever to be disconnected, as does a failed dial); it keeps
// endpoints by resource and socket, follows ListAndWatch, disconnects an
// endpoint when its stream ends (as late as Config.DisconnectDelay says)
// and, when the last one goes, marks every device of the resource
// unhealthy. Admit allocates for a container as the device manager does:
// GetPreferredAllocation over the NUMA-aligned devices only when they leave
// a choice, over all of them (must-include the aligned ones) otherwise, and
// without a Topology Manager hint whenever the plugin advertises it.
// Tests read what the kubelet saw: registrations, refusals, device lists,
// allocatable counts, and a client for the plugin's other calls.
package kubeletstub
