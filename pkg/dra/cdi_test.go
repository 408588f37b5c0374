package dra

import (
	"context"
	"os"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slipway-dev/slipway/pkg/devices"
)

// TestTornCDISpecRewritten models a power loss after a prepare: the CDI
// spec was renamed into place but never synced, so after the reboot its
// file is there but empty or cut short (ext4 and XFS keep the name of a
// new file whose data was still in the page cache). The checkpoint, which
// is synced, holds the spec: the driver must write the file again, at
// start and on the kubelet's repeated prepare, not keep a file no runtime
// can parse.
func TestTornCDISpecRewritten(t *testing.T) {
	for _, tc := range []struct {
		name string
		torn func(good []byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"cut short", func(good []byte) []byte { return good[:len(good)/2] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "dgx-h100")
			d, err := New(e.config().driver)
			if err != nil {
				t.Fatal(err)
			}
			devs := discoverFixture(t, e.root)
			if err := d.Apply(devices.State{Devices: devs, Config: devices.DefaultConfig()}); err != nil {
				t.Fatal(err)
			}
			c := e.claim("job", gpu0, gpu1)
			claim, err := e.client.ResourceV1().ResourceClaims("ns").Get(context.Background(), c.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			prepare := func(what string) {
				t.Helper()
				res, err := d.PrepareResourceClaims(context.Background(), []*resourceapi.ResourceClaim{claim})
				if err != nil || res[claim.UID].Err != nil {
					t.Fatalf("%s: PrepareResourceClaims = %v, %v", what, res, err)
				}
			}
			prepare("first prepare")
			good, err := os.ReadFile(e.specPath(c))
			if err != nil {
				t.Fatal(err)
			}
			tear := func() {
				t.Helper()
				if err := os.WriteFile(e.specPath(c), tc.torn(good), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			check := func(when string) {
				t.Helper()
				got, err := os.ReadFile(e.specPath(c))
				if err != nil || string(got) != string(good) {
					t.Errorf("%s: spec file = %q, %v; want it written again from the checkpoint:\n%s", when, got, err, good)
				}
			}

			// The kubelet prepares again (it does after every restart).
			tear()
			prepare("repeated prepare")
			check("after a repeated prepare")

			// A new process starts after the reboot.
			tear()
			d2, err := New(e.config().driver)
			if err != nil {
				t.Fatal(err)
			}
			if err := d2.reconcileCDI(); err != nil {
				t.Fatalf("reconcileCDI() = %v", err)
			}
			check("at start")
		})
	}
}
