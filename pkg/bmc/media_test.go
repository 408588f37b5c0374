package bmc_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/bmc/redfishsim"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

// serveImage serves a small image on loopback for the simulated BMC to
// fetch, as a real BMC fetches an ISO from its image server.
func serveImage(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/node.iso" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(strings.Repeat("CD001", 1000)))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestVirtualMediaBoot inserts an image in the virtual CD, sets a one-time
// Cd boot and powers on, on BMCs with the CD on the manager and on the
// system: the rows say what the BMC holds, and the host boots the image.
func TestVirtualMediaBoot(t *testing.T) {
	t.Parallel()
	base := serveImage(t)
	for _, profile := range []string{"generic", "idrac8", "megarac"} {
		t.Run(profile, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			sim := newSim(t)
			sb, n := profileBMC(t, sim, profile, false)
			legacy := profile == "idrac8"
			// Someone left another image in the drive: it is ejected first.
			if r := bmc.Run(ctx, []inventory.Node{n}, bmc.RunConfig{Client: profileConfig()}, bmc.InsertMediaStep(base+"/node.iso"))[0]; r.Err != nil {
				t.Fatal(r.Err)
			}
			res := bmc.Run(ctx, []inventory.Node{n}, bmc.RunConfig{Client: profileConfig()},
				bmc.InsertMediaStep(base+"/node.iso?again"), bmc.BootStep(bmc.BootCD, bmc.BootOptions{Legacy: legacy}))
			// The query makes it a different image URL; the handler serves it.
			r := res[0]
			if r.Err != nil {
				t.Fatalf("bootdev cd --media on %s: %v", profile, r.Err)
			}
			if diff := cmp.Diff(&bmc.Media{Image: base + "/node.iso?again", Inserted: true}, r.Media); diff != "" {
				t.Errorf("media row on %s (-want +got):\n%s", profile, diff)
			}
			if got := sb.Media(); !got.Inserted || got.Image != r.Media.Image || got.Size != 5000 {
				t.Errorf("simulated BMC media on %s = %+v, want the image fetched (5000 bytes)", profile, got)
			}
			if st := sb.Stats(); st.Inserts != 2 || st.Ejects != 1 {
				t.Errorf("on %s: %d inserts, %d ejects, want 2 and 1 (the old image ejected first)", profile, st.Inserts, st.Ejects)
			}
			if r.Boot == nil || r.Boot.Device != bmc.BootCD || r.Boot.Persistent {
				t.Errorf("boot row on %s = %v, want cd once", profile, r.Boot)
			}
			if on := bmc.Run(ctx, []inventory.Node{n}, bmc.RunConfig{Client: profileConfig()}, bmc.PowerStep(bmc.ActionOn))[0]; on.Err != nil {
				t.Fatalf("power on %s: %v", profile, on.Err)
			}
			mode := "UEFI"
			if legacy {
				mode = "Legacy"
			}
			if diff := cmp.Diff([]redfishsim.Booted{{Device: "Cd", Mode: mode, Media: base + "/node.iso?again"}}, sb.Booted()); diff != "" {
				t.Errorf("what the host booted on %s (-want +got):\n%s", profile, diff)
			}
			ej := bmc.Run(ctx, []inventory.Node{n}, bmc.RunConfig{Client: profileConfig()}, bmc.EjectMediaStep())[0]
			if ej.Err != nil || ej.Media == nil || ej.Media.Inserted || sb.Media().Inserted {
				t.Errorf("eject on %s: row %v, err %v, BMC %+v; want empty", profile, ej.Media, ej.Err, sb.Media())
			}
			checkSessions(t, sb)
		})
	}
}

// TestVirtualMediaErrors: an image the BMC cannot fetch, and a BMC without
// virtual media, fail with the BMC's reason.
func TestVirtualMediaErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base := serveImage(t)
	sim := newSim(t)
	sb, n := startBMC(t, sim, "vm1", redfishsim.BMCConfig{})
	r := bmc.Run(ctx, []inventory.Node{n}, bmc.RunConfig{Client: profileConfig()}, bmc.InsertMediaStep(base+"/missing.iso"))[0]
	want := "insert virtual media vm1 (bmc " + n.BMC.Addr() + "): insert " + base + "/missing.iso: bmc error (HTTP 400: Unable to connect to the image server for " + base + "/missing.iso: HTTP 404 (Check that the image URL is reachable from the BMC))"
	if r.Err == nil || r.Err.Error() != want {
		t.Errorf("insert of a missing image:\n got %v\nwant %s", r.Err, want)
	}
	if sb.Media().Inserted {
		t.Errorf("the BMC holds media after a failed insert: %+v", sb.Media())
	}
	_, n2 := startBMC(t, sim, "vm2", redfishsim.BMCConfig{VirtualMedia: redfishsim.VirtualMediaNone})
	r = bmc.Run(ctx, []inventory.Node{n2}, bmc.RunConfig{Client: profileConfig()}, bmc.InsertMediaStep(base+"/node.iso"))[0]
	if r.Err == nil || !strings.Contains(r.Err.Error(), "the bmc offers no virtual CD") {
		t.Errorf("insert on a BMC without virtual media: %v, want a clear error", r.Err)
	}
}

// TestVirtualMediaRowIsWhatWasRead: the MEDIA column shows only what was
// read back from the BMC. When the virtual CD could not be read, the row
// has no media (not "empty"); when ejecting the image already in the drive
// fails, the error names that image and the row shows it, as last read.
func TestVirtualMediaRowIsWhatWasRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base := serveImage(t)
	old, other := base+"/node.iso", base+"/node.iso?other"

	// The CD is on the system (iDRAC), which answers 500 to everything.
	sim := newSim(t)
	sb, n := profileBMC(t, sim, "idrac8", false)
	if r := bmc.Run(ctx, []inventory.Node{n}, bmc.RunConfig{Client: profileConfig()}, bmc.InsertMediaStep(old))[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	inject := func(f redfishsim.Faults) bmc.Step {
		return bmc.Step{Name: "inject", Do: func(context.Context, *bmc.Client, *bmc.Result) error { sb.SetFaults(f); return nil }}
	}
	for _, step := range []bmc.Step{bmc.InsertMediaStep(other), bmc.EjectMediaStep()} {
		r := bmc.Run(ctx, []inventory.Node{n}, bmc.RunConfig{Client: profileConfig()}, inject(redfishsim.Faults{ErrorStatus: 500}), step)[0]
		sb.SetFaults(redfishsim.Faults{})
		if r.Err == nil || !strings.Contains(r.Err.Error(), "HTTP 500") {
			t.Errorf("%s on a BMC answering 500: error %v, want the 500", step.Name, r.Err)
		}
		if r.Media != nil {
			t.Errorf("%s on a BMC answering 500: media row %q, want none (nothing was read; the BMC holds %+v)", step.Name, r.Media, sb.Media())
		}
	}

	// Reading works, but the BMC refuses to eject the image in the drive.
	r := bmc.Run(ctx, []inventory.Node{n}, bmc.RunConfig{Client: profileConfig()},
		inject(redfishsim.Faults{MediaActionStatus: 500}), bmc.InsertMediaStep(other))[0]
	if want := "eject " + old + " first: "; r.Err == nil || !strings.Contains(r.Err.Error(), want) {
		t.Errorf("insert over an image the BMC will not eject: error %v, want it to contain %q", r.Err, want)
	}
	if diff := cmp.Diff(&bmc.Media{Image: old, Inserted: true}, r.Media); diff != "" {
		t.Errorf("media row after the refused eject (-want +got):\n%s", diff)
	}
	if got := sb.Media(); got.Image != old {
		t.Errorf("the BMC holds %+v, want still %s", got, old)
	}
	checkSessions(t, sb)
}
