package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder until pkg/deviceplugin lands (issue 7); replaced, not kept.
func registerPluginFlags(_ *cobra.Command, _ *globals) {}

func runPlugin(_ context.Context, _ *globals) error {
	return errors.New("the device plugin server is not built yet (issue 7); use the discover subcommand")
}
