package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/cmdlog"
)

// globals are the flags every command shares.
type globals struct {
	root      string // host root: sysfs at ROOT/sys, ROOT/proc, ROOT/dev
	nvml      string // auto, on, off
	config    string // config file with selectors and resource names
	logLevel  string
	logFormat string
	stdout    io.Writer
	stderr    io.Writer
	log       *slog.Logger
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "device-plugin: %v\n", err)
		return 1
	}
	return 0
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "device-plugin",
		Short: "Advertise GPUs, InfiniBand HCAs and FPGAs to the kubelet",
		Long: "device-plugin discovers the node's GPUs, InfiniBand/RoCE HCAs and FPGAs with their NUMA and PCIe\n" +
			"topology and serves them to the kubelet over the device plugin API (one socket per resource).",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			log, err := cmdlog.New(g.stderr, g.logLevel, g.logFormat)
			if err != nil {
				return err
			}
			g.log = log
			return nil
		},
	}
	plugin := registerPluginFlags(root.Flags())
	root.RunE = func(cmd *cobra.Command, _ []string) error {
		return plugin.run(cmd.Context(), g)
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.root, "root", "/", "host root directory: sysfs is read at ROOT/sys, ROOT/proc and ROOT/dev")
	pf.StringVar(&g.nvml, "nvml", "auto", "use NVML for GPUs: auto (if libnvidia-ml loads), on (required), off (sysfs only)")
	pf.StringVar(&g.config, "config", "", "config file with device selectors and resource names (default: built-in resources)")
	pf.StringVar(&g.logLevel, "log-level", cmdlog.DefaultLevel, cmdlog.LevelUsage)
	pf.StringVar(&g.logFormat, "log-format", cmdlog.DefaultFormat, cmdlog.FormatUsage)
	root.AddCommand(newDiscoverCmd(g))
	return root
}
