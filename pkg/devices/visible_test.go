package devices

import "testing"

func TestNVIDIAVisibleDevices(t *testing.T) {
	gpu := func(id, uuid string) Device {
		d := Device{ID: id, Kind: KindGPU, Attributes: map[string]string{}}
		if uuid != "" {
			d.Attributes["uuid"] = uuid
		}
		return d
	}
	hca := Device{ID: "mlx5_0", Kind: KindHCA}
	mig := Device{ID: "MIG-GPU-1/1/0", Kind: KindMIG}
	migUUID := Device{ID: "MIG-GPU-1/2/0", Kind: KindMIG, Attributes: map[string]string{"uuid": "MIG-4f5e"}}
	for _, tc := range []struct {
		name string
		devs []Device
		want string
		ok   bool
	}{
		{"no gpu", []Device{hca}, "", false},
		{"uuids in order", []Device{gpu("GPU-b", ""), hca, gpu("GPU-a", "")}, "GPU-b,GPU-a", true},
		{"uuid attribute first", []Device{gpu("0000:1b:00.0", "GPU-x")}, "GPU-x", true},
		{"mig without and with a MIG UUID", []Device{mig, migUUID}, "MIG-GPU-1/1/0,MIG-4f5e", true},
		// A GPU known only by its PCI address: no GPU of the toolkit's
		// choosing, not a partial list.
		{"one unknown", []Device{gpu("GPU-a", ""), gpu("0000:43:00.0", "")}, "none", true},
	} {
		got, ok := NVIDIAVisibleDevices(tc.devs)
		if got != tc.want || ok != tc.ok {
			t.Errorf("NVIDIAVisibleDevices(%s) = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
