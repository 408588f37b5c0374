package assemble

import (
	"context"
	"log/slog"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/pxe"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
)

// ServeOptions configure Serve.
type ServeOptions struct {
	// Inventory is the loaded inventory. Required.
	Inventory *inventory.Inventory
	// Boot configures the boot services, as for up.
	Boot Boot
	// Bus receives every boot event (nil: a bus of its own).
	Bus *bootevent.Bus
	// Log receives the services' logs (nil: discard).
	Log *slog.Logger
}

// Serve runs the boot services alone (`provisioner serve`) until ctx is
// done: no BMC is touched, and nodes get the boot server's placeholder
// configuration, which only phones home.
func Serve(ctx context.Context, opts ServeOptions) error {
	svc, err := pxe.New(opts.Boot.pxeConfig(opts.Inventory, opts.Bus, opts.Log))
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}
