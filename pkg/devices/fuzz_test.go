package devices

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseConfig checks that no config file makes the loader panic, and
// that what it accepts validates.
func FuzzParseConfig(f *testing.F) {
	for _, name := range []string{"custom.yaml", "typo.yaml", "invalid.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", "config", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("apiVersion: slipway.dev/v1alpha1\nkind: DevicePluginConfig\nresources: [{name: a.b/c, selector: {pciAddresses: ['1*']}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Errorf("ParseConfig accepted a config that does not validate: %v", err)
		}
		c.Assign([]Device{{Kind: KindGPU, PCIAddress: "0000:1b:00.0", VendorID: "0x10de", DeviceID: "0x2330"}})
	})
}
