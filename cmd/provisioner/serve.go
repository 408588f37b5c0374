package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/slipway-dev/slipway/pkg/provision/assemble"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
)

// bootFlags are the boot-service flags, defined once for serve and up.
type bootFlags struct {
	tftpRoot   string
	assets     string
	template   string
	httpPort   uint16
	dhcpPort   uint16
	clientPort uint16
	tftpPort   uint16
}

func (f *bootFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.tftpRoot, "tftp-root", assemble.DefaultTFTPRoot, "directory of iPXE binaries (undionly.kpxe, snponly.efi) served over TFTP and under /ipxe/ over HTTP; Debian's ipxe package fills the default")
	fl.StringVar(&f.assets, "assets", "", "directory of kernels, initrds and images the profiles name (served under /assets/)")
	fl.StringVar(&f.template, "ipxe-template", "", "file with a Go text/template for the per-node iPXE script, replacing the built-in one (fields: .Node .MAC .Firmware .KernelURL .InitrdURL .InitrdName .Args .ConfigURL .PhoneHomeURL .Retries .RetryDelaySeconds)")
	fl.Uint16Var(&f.httpPort, "http-port", 0, "boot HTTP port, also serving /metrics and /healthz (default: network.provisioner.httpPort of the inventory, 8080)")
	fl.Uint16Var(&f.dhcpPort, "dhcp-port", 0, "DHCP server port, for labs and tests (default 67)")
	fl.Uint16Var(&f.clientPort, "dhcp-client-port", 0, "DHCP client port replies go to, for labs and tests (default 68)")
	fl.Uint16Var(&f.tftpPort, "tftp-port", 0, "TFTP port, for labs and tests (default 69)")
}

// options reads the template file and returns the boot options.
func (f *bootFlags) options(g *globals) (assemble.Boot, error) {
	b := assemble.Boot{TFTPRoot: f.tftpRoot, AssetDir: f.assets, HTTPPort: f.httpPort, DHCPPort: f.dhcpPort,
		DHCPClientPort: f.clientPort, TFTPPort: f.tftpPort}
	if f.template != "" {
		t, err := os.ReadFile(f.template)
		if err != nil {
			return b, usageError("--ipxe-template: %v", err)
		}
		b.ScriptTemplate = string(t)
	}
	if g.bootHook != nil {
		g.bootHook(&b)
	}
	return b, nil
}

func newServeCmd(g *globals) *cobra.Command {
	var f bootFlags
	var events bool
	cmd := &cobra.Command{
		Use:   "serve -f PATH... [--assets DIR]",
		Short: "Serve network boot (DHCP, TFTP, HTTP, iPXE) to the inventory's nodes",
		Long: "serve runs the boot services for every enabled node of the inventory on the provisioning\n" +
			"interface (network.provisioner.interface, network.provisioner.address): DHCP for known MACs only (network.dhcp.mode:\n" +
			"authoritative, proxy or off), TFTP of the iPXE binaries, the boot HTTP server (per-node iPXE\n" +
			"scripts, kernel and initrd, one-time node configuration, phone-home, /metrics, /healthz) and\n" +
			"IPv6 router advertisements (network.routerAdvertisements). It stops cleanly on Ctrl-C.\n" +
			"It touches no BMC and gives nodes a placeholder configuration that only phones home; up runs\n" +
			"the same services with the nodes' kubeadm configurations.\n" +
			"Ports 67, 69 and 4011 need root or CAP_NET_BIND_SERVICE; router advertisements need\n" +
			"CAP_NET_RAW (without it serve warns and goes on, and iPXE waits ~16 s for IPv6).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, err := g.loadInventory()
			if err != nil {
				return invalidInventory(err)
			}
			boot, err := f.options(g)
			if err != nil {
				return err
			}
			bus := bootevent.NewBus()
			if events {
				ch, cancel := bus.Subscribe(0)
				defer cancel()
				go printEvents(g.stdout, ch)
			}
			return assemble.Serve(cmd.Context(), assemble.ServeOptions{Inventory: inv, Boot: boot, Bus: bus, Log: g.log})
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().BoolVar(&events, "events", false, "print every boot event as a JSON line on stdout")
	return cmd
}

func printEvents(w io.Writer, events <-chan bootevent.Event) {
	enc := json.NewEncoder(w)
	for e := range events {
		if err := enc.Encode(e); err != nil {
			fmt.Fprintf(w, "event %s: %v\n", e.Kind, err)
		}
	}
}
