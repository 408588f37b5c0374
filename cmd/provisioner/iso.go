package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/pkg/bootiso"
)

func newISOCmd(g *globals) *cobra.Command {
	var (
		dir    string
		source string
	)
	cmd := &cobra.Command{
		Use:   "iso NODE...",
		Short: "Build nodes' virtual-media boot CDs",
		Long: `iso writes, for each node named, DIR/NODE.iso: a CD that a BMC can insert through
virtual media (provisioner bootdev cd --media URL) for a node whose segment has no
PXE. It boots Debian's iPXE, which sets the node's address from the inventory
statically and chains to the node's script on the boot HTTP server
(http://ADDRESS:PORT/boot/NODE.ipxe), so "up" or "serve" must be running. Serve
the files from any web server the BMCs can reach. Legacy (BIOS) boot only: the
iPXE of Debian 12 cannot run a script from a CD under UEFI.`,
		Example: `  provisioner iso fpga01 fpga02 --dir /srv/slipway/iso -f inventory/rack-gpu.yaml
  provisioner bootdev cd --media http://10.40.0.2/iso/fpga01.iso --legacy fpga01 -f inventory/rack-gpu.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			inv, err := g.loadInventory()
			if err != nil {
				return err
			}
			if dir == "" {
				return usageError("--dir is required: where to write NODE.iso")
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("create --dir: %w", err)
			}
			for _, name := range args {
				n, ok := inv.Node(name)
				if !ok {
					return usageError("unknown node %q: it is not in the inventory", name)
				}
				bn, err := bootiso.FromInventory(inv, n)
				if err != nil {
					return err
				}
				var buf bytes.Buffer
				if err := bootiso.Build(&buf, bootiso.Config{Source: source}, bn); err != nil {
					return err
				}
				path := filepath.Join(dir, name+".iso")
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					return fmt.Errorf("write %s: %w", path, err)
				}
				fmt.Fprintf(g.stdout, "%s  %s  %d bytes  chains to %s\n", name, path, buf.Len(), bn.ScriptURL)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write NODE.iso into, created if missing (required)")
	cmd.Flags().StringVar(&source, "ipxe-iso", bootiso.DefaultSource, "the iPXE CD image whose ISOLINUX and iPXE are reused (Debian's ipxe package)")
	return cmd
}
