package bmcfake_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/bmc/bmcfake"
)

func TestFake(t *testing.T) {
	ctx := context.Background()
	f := bmcfake.New(bmc.PowerOff)
	var booted []bmc.BootOverride
	f.OnPower = func(_ context.Context, a bmc.PowerAction, b bmc.BootOverride) {
		if a == bmc.ActionOn {
			booted = append(booted, b)
		}
	}
	if err := f.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{}); err != nil {
		t.Fatalf("SetBootDevice: %v", err)
	}
	if err := f.SetPower(ctx, bmc.ActionOn); err != nil {
		t.Fatalf("SetPower(on): %v", err)
	}
	if diff := cmp.Diff([]bmc.BootOverride{{Device: bmc.BootPXE}}, booted); diff != "" {
		t.Errorf("boot seen by OnPower (-want +got):\n%s", diff)
	}
	if got := f.Boot(); got != (bmc.BootOverride{}) {
		t.Errorf("Boot() after the one-time boot = %v, want none", got)
	}
	f.Stuck(true)
	if err := f.SetPower(ctx, bmc.ActionOff); err == nil || f.Power() != bmc.PowerOn {
		t.Errorf("SetPower(off) on a stuck BMC = %v, power %s; want an error and still on", err, f.Power())
	}
	boom := errors.New("boom")
	f.FailOn(bmcfake.MethodPowerState, boom)
	if _, err := f.PowerState(ctx); !errors.Is(err, boom) {
		t.Errorf("PowerState() with FailOn = %v, want %v", err, boom)
	}
	f.Close(ctx)
	want := []string{"SetBootDevice pxe once uefi", "SetPower on", "SetPower off", "PowerState", "Close"}
	if diff := cmp.Diff(want, f.Calls()); diff != "" {
		t.Errorf("Calls() mismatch (-want +got):\n%s", diff)
	}
	if !f.Closed() {
		t.Errorf("Closed() = false after Close")
	}
}
