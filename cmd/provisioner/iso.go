package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/pkg/bootiso"
)

func newISOCmd(g *globals) *cobra.Command {
	var (
		dir      string
		source   string
		httpPort uint16
	)
	cmd := &cobra.Command{
		Use:   "iso NODE...",
		Short: "Build nodes' virtual-media boot CDs",
		Long: `iso writes, for each node named, DIR/NODE.iso: a CD that a BMC can insert through
virtual media (provisioner bootdev cd --media URL) for a node whose segment has no
PXE. It boots Debian's iPXE, which sets the node's address from the inventory
statically and chains to the node's script on the boot HTTP server
(http://ADDRESS:PORT/boot/NODE.ipxe), so "up" or "serve" must be running; give
--http-port when they run with one. Serve
the files from any web server the BMCs can reach. Legacy (BIOS) boot only: the
iPXE of Debian 12 cannot run a script from a CD under UEFI.`,
		Example: `  provisioner iso r13-cpu01 r13-cpu02 --dir /tmp -f inventory/examples/routed/
  provisioner bootdev cd --media http://10.60.0.2/iso/r13-cpu01.iso --legacy r13-cpu01 -f inventory/examples/routed/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error { return writeISOs(g, args, dir, source, httpPort) },
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write NODE.iso into, created if missing (required)")
	cmd.Flags().Uint16Var(&httpPort, "http-port", 0, "the boot HTTP port serve or up listen on, which the CD chains to (default: network.provisioner.httpPort of the inventory, 8080)")
	cmd.Flags().StringVar(&source, "ipxe-iso", bootiso.DefaultSource, "the iPXE CD image whose ISOLINUX and iPXE are reused (Debian's ipxe package)")
	return cmd
}

// writeISOs builds the CDs of nodes (all of them, before writing any: a bad
// node leaves dir as it was) and writes each as dir/NODE.iso.
func writeISOs(g *globals, nodes []string, dir, source string, httpPort uint16) error {
	inv, err := g.loadInventory()
	if err != nil {
		return err
	}
	if dir == "" {
		return usageError("--dir is required: where to write NODE.iso")
	}
	for _, name := range nodes {
		if _, ok := inv.Node(name); !ok {
			return usageError("unknown node %q: it is not in the inventory", name)
		}
	}
	cds, err := bootiso.BuildNodes(inv, nodes, httpPort, bootiso.Config{Source: source})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create --dir: %w", err)
	}
	for _, c := range cds {
		path := filepath.Join(dir, c.Node+".iso")
		if err := writeFileAtomic(path, c.Image, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "%s  %s  %d bytes  chains to %s\n", c.Node, path, len(c.Image), c.ScriptURL)
	}
	return nil
}

// writeFileAtomic writes data to path through a temporary file renamed
// over it, so a web server handing path to a BMC never serves half an
// image.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	err = errors.Join(err, f.Chmod(perm), f.Close())
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
