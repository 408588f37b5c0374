package bootiso

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"text/template"
	"time"
)

// DefaultSource is the iPXE CD image of Debian's ipxe package, whose
// ISOLINUX, ldlinux.c32 and iPXE kernel Build reuses.
const DefaultSource = "/usr/lib/ipxe/ipxe.iso"

// Node is what one node's CD needs to know.
type Node struct {
	// Name is the node's name; it appears on the console.
	Name string
	// MAC is the NIC to configure: the CD's script picks the iPXE network
	// device with this address (required).
	MAC net.HardwareAddr
	// Address is the node's static address and the prefix of its subnet
	// (required): virtual media is for segments without the provisioner's
	// DHCP.
	Address netip.Prefix
	// Gateway is the default router ("" when the boot server is on-link).
	Gateway netip.Addr
	// DNS is a resolver, needed only when ScriptURL names a host.
	DNS netip.Addr
	// ScriptURL is the node's iPXE script on the provisioner's boot HTTP
	// server, such as http://10.0.0.1:8080/boot/gpu-01.ipxe (required).
	ScriptURL string
	// UEFI is true for a node that boots in UEFI mode; Build refuses it (see
	// the package documentation).
	UEFI bool
}

// Config says where Build finds the boot loader and iPXE, and where a
// Handler's CDs chain to.
type Config struct {
	// Source is an iPXE CD image with ISOLINUX.BIN, LDLINUX.C32 and
	// IPXE.KRN in its root directory (default DefaultSource).
	Source string
	// HTTPPort is the port of the boot HTTP server that a Handler's CDs
	// fetch their node's script from: the one it really listens on
	// (default: the inventory's network.provisioner.httpPort). Build
	// itself takes the script URL from the Node.
	HTTPPort uint16
	// Time is the date recorded in the image (default: the Source file's
	// modification time, so one node's image is the same every build).
	Time time.Time
}

// ErrUEFI is Build's answer for a UEFI node.
var ErrUEFI = errors.New("a virtual-media CD cannot run the node's script under UEFI with Debian 12's iPXE (2019; a script on the CD needs iPXE 1.21 or newer): set the node's boot.firmware to bios (and its BIOS to legacy boot) for virtual media, or boot it over PXE")

var scriptTmpl = template.Must(template.New("cd.ipxe").Parse(`#!ipxe
# Slipway virtual-media boot for node {{.Name}}: configure the NIC with MAC
# {{.MAC}} statically and chain to the node's script.
echo Slipway virtual-media boot: node {{.Name}}
set i:int32 0
:find
iseq ${net${i}/mac} {{.MAC}} && goto found ||
inc i
iseq ${i} 16 && goto nonic ||
goto find
:nonic
echo Slipway: no network device with MAC {{.MAC}} on node {{.Name}}
goto failed
:found
set net${i}/ip {{.Address.Addr}}
set net${i}/netmask {{.Netmask}}
{{- if .Gateway.IsValid}}
set net${i}/gateway {{.Gateway}}
{{- end}}
{{- if .DNS.IsValid}}
set dns {{.DNS}}
{{- end}}
ifopen net${i} || goto failed
echo Slipway: net${i} ${net${i}/mac} is ${net${i}/ip}, chaining {{.ScriptURL}}
chain {{.ScriptURL}} || goto failed
:failed
echo Slipway: the virtual-media boot of node {{.Name}} failed; retrying in 10 seconds
sleep 10
reboot
`))

// Script returns the iPXE script the CD runs for n.
func Script(n Node) ([]byte, error) {
	var errs []error
	if len(n.MAC) != 6 {
		errs = append(errs, errors.New("a 6-byte MAC is required"))
	}
	if !n.Address.IsValid() || !n.Address.Addr().Is4() {
		errs = append(errs, errors.New("an IPv4 address with its prefix length is required"))
	}
	u, err := url.Parse(n.ScriptURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("script URL %q: want the http(s) URL of the node's iPXE script", n.ScriptURL))
	}
	if strings.ContainsAny(n.ScriptURL+n.Name, " \t\n\"'${}") {
		errs = append(errs, errors.New("the node name and script URL must not contain spaces, quotes, $ or braces"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("cd script for node %s: %w", n.Name, errors.Join(errs...))
	}
	mask := net.CIDRMask(n.Address.Bits(), 32)
	var buf bytes.Buffer
	err = scriptTmpl.Execute(&buf, struct {
		Node
		Netmask string
	}{n, net.IP(mask).String()})
	return buf.Bytes(), err
}

// Build writes n's bootable CD image to w: ISOLINUX loads iPXE with the
// node's script (Script) as its initrd, and iPXE runs it.
func Build(w io.Writer, cfg Config, n Node) error {
	if n.UEFI {
		return fmt.Errorf("build cd for node %s: %w", n.Name, ErrUEFI)
	}
	script, err := Script(n)
	if err != nil {
		return fmt.Errorf("build cd for node %s: %w", n.Name, err)
	}
	src := cfg.Source
	if src == "" {
		src = DefaultSource
	}
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("build cd for node %s: open the iPXE CD image (install Debian's ipxe package): %w", n.Name, err)
	}
	defer f.Close()
	files, err := readRootFiles(f)
	if err != nil {
		return fmt.Errorf("build cd for node %s: read %s: %w", n.Name, src, err)
	}
	img := isoImage{volumeID: "SLIPWAY", boot: "ISOLINUX.BIN", modified: cfg.Time}
	if img.modified.IsZero() {
		if st, err := f.Stat(); err == nil {
			img.modified = st.ModTime()
		}
	}
	for _, name := range []string{"ISOLINUX.BIN", "LDLINUX.C32", "IPXE.KRN"} {
		data, ok := files[name]
		if !ok {
			return fmt.Errorf("build cd for node %s: %s has no %s in its root directory (is it Debian's ipxe.iso?)", n.Name, src, name)
		}
		img.files = append(img.files, &isoFile{name: name, data: data})
	}
	cfgText := fmt.Sprintf("SAY Slipway virtual-media boot for node %s\nTIMEOUT 0\nDEFAULT slipway\nLABEL slipway\n KERNEL ipxe.krn\n APPEND initrd=node.ipx\n", n.Name)
	img.files = append(img.files,
		&isoFile{name: "ISOLINUX.CFG", data: []byte(cfgText)},
		&isoFile{name: "NODE.IPX", data: script})
	if err := writeISO(w, img); err != nil {
		return fmt.Errorf("build cd for node %s: %w", n.Name, err)
	}
	return nil
}
