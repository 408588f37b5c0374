package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Placeholder until pkg/devices discovery lands (issue 6); replaced, not kept.
func newDiscoverCmd(_ *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "discover",
		Short: "Print the node's GPUs, HCAs and FPGAs with their topology",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("device discovery is not built yet (issue 6)")
		},
	}
}
