package dhcp

import (
	"bytes"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Client is the kind of boot client a request comes from.
type Client string

// Client kinds.
const (
	// ClientNone is a DHCP client that does not network-boot (such as the
	// booted node's own DHCP client).
	ClientNone Client = "none"
	// ClientIPXE is iPXE itself (option 175 or user class "iPXE").
	ClientIPXE Client = "ipxe"
	// ClientBIOS is legacy PXE firmware (option 93 = 0).
	ClientBIOS Client = "bios"
	// ClientUEFIx64 is x86-64 UEFI PXE firmware (option 93 = 7 or 9).
	ClientUEFIx64 Client = "uefi-x64"
	// ClientUEFIArm64 is arm64 UEFI PXE firmware (option 93 = 11).
	ClientUEFIArm64 Client = "uefi-arm64"
	// ClientHTTPx64 is x86-64 UEFI HTTP boot firmware (vendor class HTTPClient, option 93 = 16).
	ClientHTTPx64 Client = "uefi-http-x64"
	// ClientHTTPArm64 is arm64 UEFI HTTP boot firmware (option 93 = 19).
	ClientHTTPArm64 Client = "uefi-http-arm64"
	// ClientUnsupported is PXE firmware of an architecture with no binary.
	ClientUnsupported Client = "unsupported"
)

// optIPXE is iPXE's encapsulated option space (RFC-less, iPXE's own).
const optIPXE = 175

// ipxeNoPXEDHCP is option 175.176 = 1: iPXE does not wait for a ProxyDHCP
// answer, which saves about 3 s per DHCP exchange.
var ipxeNoPXEDHCP = []byte{176, 1, 1}

// classify tells what kind of boot client sent req.
func classify(req *dhcpv4.DHCPv4) Client {
	if isIPXE(req) {
		return ClientIPXE
	}
	vc := req.ClassIdentifier()
	pxe := strings.HasPrefix(vc, "PXEClient")
	httpc := strings.HasPrefix(vc, "HTTPClient")
	if !pxe && !httpc {
		return ClientNone
	}
	archs := req.ClientArch()
	arch := iana.INTEL_X86PC
	if len(archs) > 0 {
		arch = archs[0]
	} else if a, ok := archFromVendorClass(vc); ok {
		arch = a
	}
	switch arch {
	case iana.EFI_X86_64_HTTP:
		return ClientHTTPx64
	case iana.EFI_ARM64_HTTP:
		return ClientHTTPArm64
	}
	if httpc {
		// An HTTPClient vendor class with a PXE arch code: trust the class.
		switch arch {
		case iana.EFI_ARM64:
			return ClientHTTPArm64
		case iana.EFI_X86_64, iana.EFI_BC:
			return ClientHTTPx64
		}
		return ClientUnsupported
	}
	switch arch {
	case iana.INTEL_X86PC:
		return ClientBIOS
	case iana.EFI_X86_64, iana.EFI_BC:
		return ClientUEFIx64
	case iana.EFI_ARM64:
		return ClientUEFIArm64
	}
	return ClientUnsupported
}

// isIPXE reports whether req comes from iPXE: it sends option 175 with its
// features, and user class "iPXE".
func isIPXE(req *dhcpv4.DHCPv4) bool {
	if req.Options.Has(dhcpv4.GenericOptionCode(optIPXE)) {
		return true
	}
	uc := req.Options.Get(dhcpv4.OptionUserClassInformation)
	return bytes.Contains(uc, []byte("iPXE"))
}

// archFromVendorClass reads the arch from "PXEClient:Arch:00007:UNDI:003010".
func archFromVendorClass(vc string) (iana.Arch, bool) {
	_, rest, ok := strings.Cut(vc, ":Arch:")
	if !ok || len(rest) < 5 {
		return 0, false
	}
	var n uint16
	for _, c := range rest[:5] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint16(c-'0')
	}
	return iana.Arch(n), true
}
