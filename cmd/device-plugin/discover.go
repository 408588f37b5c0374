package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/slipway-dev/slipway/pkg/devices"
	"github.com/spf13/cobra"
)

// newDiscoverCmd is "device-plugin discover": print what discovery finds.
func newDiscoverCmd(g *globals) *cobra.Command {
	var output string
	var includeHost bool
	cmd := &cobra.Command{
		Use:   "discover",
		Short: "Print the node's GPUs, HCAs and FPGAs with their topology",
		Long: "discover prints every GPU, InfiniBand/RoCE HCA and FPGA under --root with its PCI address, model,\n" +
			"NUMA node, PCIe root and switch, device nodes and health, then a locality matrix like\n" +
			"nvidia-smi topo -m (X self, PIX same PCIe switch, PXB several switches, PHB same PCIe root,\n" +
			"NODE same NUMA node, SYS across NUMA nodes). RESOURCE is the extended resource the device plugin\n" +
			"would advertise the device under (from --config, or the defaults). -o json prints the devices as JSON.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q: want table or json", output)
			}
			mode, err := devices.ParseNVMLMode(g.nvml)
			if err != nil {
				return fmt.Errorf("--nvml: %w", err)
			}
			rc := devices.DefaultConfig()
			if g.config != "" {
				if rc, err = devices.LoadConfig(g.config); err != nil {
					return err
				}
			}
			devs, err := devices.Discover(cmd.Context(), devices.Config{
				Root: g.root, NVML: mode, IncludeHostNICs: includeHost, Log: g.log,
			})
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(g.stdout, devs)
			}
			return writeTable(g.stdout, devs, resourceOf(rc, devs))
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().BoolVar(&includeHost, "include-host-nics", false,
		"also list Ethernet (RoCE) RDMA devices whose network interface the host uses (default route, bond or bridge member); InfiniBand HCAs are always listed")
	return cmd
}

func writeJSON(w io.Writer, devs []devices.Device) error {
	if devs == nil {
		devs = []devices.Device{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(devs); err != nil {
		return fmt.Errorf("write devices as json: %w", err)
	}
	return nil
}

// labels names devices like nvidia-smi: GPU0.., HCA0.., FPGA0.. in order.
func labels(devs []devices.Device) []string {
	count := map[devices.Kind]int{}
	out := make([]string, len(devs))
	for i, d := range devs {
		out[i] = strings.ToUpper(string(d.Kind)) + strconv.Itoa(count[d.Kind])
		count[d.Kind]++
	}
	return out
}

// resourceOf maps device ID to the resource rc assigns it to.
func resourceOf(rc devices.ResourceConfig, devs []devices.Device) map[string]string {
	out := map[string]string{}
	for name, ds := range rc.Assign(devs) {
		for _, d := range ds {
			out[d.ID] = name
		}
	}
	return out
}

func writeTable(w io.Writer, devs []devices.Device, resources map[string]string) error {
	if len(devs) == 0 {
		_, err := fmt.Fprintln(w, "no GPUs, HCAs or FPGAs found")
		return err
	}
	names := labels(devs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tID\tMODEL\tPCI ADDRESS\tNUMA\tPCIE ROOT\tSWITCH\tRESOURCE\tDETAILS\tHEALTH\tDEVICE NODES")
	for i, d := range devs {
		numa := "-"
		if d.NUMANode != devices.NoNUMA {
			numa = strconv.Itoa(d.NUMANode)
		}
		health := "healthy"
		if !d.Healthy {
			health = "unhealthy: " + d.HealthReason
		}
		var nodes []string
		for _, n := range d.DeviceNodes {
			nodes = append(nodes, n.Path)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", names[i], d.ID, d.Model, d.PCIAddress, numa,
			orDash(d.PCIeRoot), orDash(switchOf(d)), orDash(resources[d.ID]), orDash(details(d)), health,
			orDash(strings.Join(nodes, ",")))
	}
	fmt.Fprintln(tw)
	topo := devices.NewTopology(devs)
	fmt.Fprint(tw, "\t"+strings.Join(names, "\t")+"\tNUMA\n")
	for i, a := range devs {
		row := []string{names[i]}
		for _, b := range devs {
			row = append(row, topo.Locality(a.ID, b.ID).String())
		}
		numa := "N/A"
		if a.NUMANode != devices.NoNUMA {
			numa = strconv.Itoa(a.NUMANode)
		}
		fmt.Fprintln(tw, strings.Join(append(row, numa), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write device table: %w", err)
	}
	_, err := fmt.Fprint(w, "\nLegend:\n"+
		"  X    = self\n"+
		"  PIX  = under one PCIe switch\n"+
		"  PXB  = under one PCIe root port through several switches\n"+
		"  PHB  = under one PCIe root (host bridge), no shared switch\n"+
		"  NODE = on one NUMA node, different PCIe roots\n"+
		"  SYS  = across NUMA nodes, or NUMA unknown\n")
	return err
}

// switchOf names a device's PCIe switch by its upstream port: the bridge
// below the root port. Devices directly on a root port have none.
func switchOf(d devices.Device) string {
	if len(d.Bridges) < 2 {
		return ""
	}
	return d.Bridges[1]
}

// details are the few kind-specific facts a person checks first.
func details(d devices.Device) string {
	var parts []string
	switch d.Kind {
	case devices.KindGPU:
		if m := d.Attributes["minor"]; m != "" {
			parts = append(parts, "minor="+m)
		}
		if m := d.Attributes["memory_mib"]; m != "" {
			parts = append(parts, "mem="+m+"MiB")
		}
		if m := d.Attributes["mig_mode"]; m != "" {
			parts = append(parts, "mig="+m)
		}
	case devices.KindMIG:
		parts = append(parts, "profile="+d.Attributes["profile"], "gi="+d.Attributes["gi"], "ci="+d.Attributes["ci"])
	case devices.KindHCA:
		for _, p := range d.Ports {
			parts = append(parts, fmt.Sprintf("port%d=%s/%s/%s", p.Number, p.State, p.LinkLayer, rateShort(p.Rate)))
		}
	case devices.KindFPGA:
		for _, k := range []string{"shell", "interface_id", "afu_id"} {
			if v := d.Attributes[k]; v != "" {
				parts = append(parts, k+"="+v)
			}
		}
	}
	return strings.Join(parts, " ")
}

// rateShort turns "400 Gb/sec (4X NDR)" into "400G".
func rateShort(r string) string {
	if f := strings.Fields(r); len(f) >= 2 && f[1] == "Gb/sec" {
		return f[0] + "G"
	}
	return r
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
