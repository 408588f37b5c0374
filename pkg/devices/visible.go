package devices

import "strings"

// EnvNVIDIAVisibleDevices is the variable NVIDIA's container toolkit reads
// to give a container its GPUs.
const EnvNVIDIAVisibleDevices = "NVIDIA_VISIBLE_DEVICES"

// NVIDIAVisibleName is what NVIDIA_VISIBLE_DEVICES names a GPU or MIG
// device by: its UUID, the MIG-<GPU UUID>/<gi>/<ci> ID of a MIG device
// NVML gave no UUID for, or "" when discovery did not learn it (sysfs
// without the driver's information file).
func NVIDIAVisibleName(d Device) string {
	if u := d.Attributes["uuid"]; u != "" {
		return u
	}
	if strings.HasPrefix(d.ID, "GPU-") || strings.HasPrefix(d.ID, "MIG-") {
		return d.ID
	}
	return ""
}

// NVIDIAVisibleDevices is the value of NVIDIA_VISIBLE_DEVICES for a
// container given devs: the names of its GPU and MIG devices in order,
// comma-separated, or "none" when one of them has no name (the toolkit then
// adds the driver's libraries but no GPU of its own choosing). ok is false
// when devs hold no GPU or MIG device: the variable is not set. Every front
// end (the device plugin's Allocate, the DRA driver's claims) uses it.
func NVIDIAVisibleDevices(devs []Device) (value string, ok bool) {
	var names []string
	for _, d := range devs {
		if d.Kind != KindGPU && d.Kind != KindMIG {
			continue
		}
		ok = true
		n := NVIDIAVisibleName(d)
		if n == "" {
			return "none", true
		}
		names = append(names, n)
	}
	return strings.Join(names, ","), ok
}
