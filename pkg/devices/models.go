package devices

import "fmt"

// PCI vendor IDs this package recognises.
const (
	vendorNVIDIA   = "0x10de"
	vendorMellanox = "0x15b3"
	vendorIntel    = "0x8086"
	vendorXilinx   = "0x10ee"
	vendorSilicom  = "0x1c2c"
)

// vendorNames are the names of the vendors above and of Alveo resellers.
var vendorNames = map[string]string{
	vendorNVIDIA:   "NVIDIA Corporation",
	vendorMellanox: "Mellanox Technologies",
	vendorIntel:    "Intel Corporation",
	vendorXilinx:   "Xilinx Corporation",
	vendorSilicom:  "Silicom Denmark",
	"0x13fe":       "Advantech",
	"0x1d0f":       "Amazon.com",
	"0x3475":       "Arista Networks",
}

// modelNames are product names by "vendor:device" (pci.ids, Linux
// dfl-pci.c and XRT's xocl table); used when no better source (NVML, the
// NVIDIA driver's information file) names the device.
var modelNames = map[string]string{
	"0x10de:0x20b0": "A100 SXM4 40GB",
	"0x10de:0x20b2": "A100 SXM4 80GB",
	"0x10de:0x20b5": "A100 PCIe 80GB",
	"0x10de:0x20b7": "A30",
	"0x10de:0x20f1": "A100 PCIe 40GB",
	"0x10de:0x2330": "H100 SXM5 80GB",
	"0x10de:0x2331": "H100 PCIe",
	"0x10de:0x2333": "H200 141GB",
	"0x10de:0x2b00": "B200",
	"0x15b3:0x1017": "ConnectX-5",
	"0x15b3:0x1018": "ConnectX-5 Virtual Function",
	"0x15b3:0x1019": "ConnectX-5 Ex",
	"0x15b3:0x101b": "ConnectX-6",
	"0x15b3:0x101c": "ConnectX-6 Virtual Function",
	"0x15b3:0x101d": "ConnectX-6 Dx",
	"0x15b3:0x101e": "ConnectX Family mlx5Gen Virtual Function",
	"0x15b3:0x101f": "ConnectX-6 Lx",
	"0x15b3:0x1021": "ConnectX-7",
	"0x15b3:0x1023": "ConnectX-8",
	"0x15b3:0xa2d6": "BlueField-2",
	"0x15b3:0xa2dc": "BlueField-3",
	"0x10ee:0x5000": "Alveo U200",
	"0x10ee:0x5001": "Alveo U200",
	"0x10ee:0x5004": "Alveo U250",
	"0x10ee:0x5005": "Alveo U250",
	"0x10ee:0x500c": "Alveo U280",
	"0x10ee:0x500d": "Alveo U280",
	"0x10ee:0x5020": "Alveo U50",
	"0x10ee:0x5021": "Alveo U50",
	"0x8086:0x09c4": "PAC Arria 10 GX",
	"0x8086:0x09c5": "PAC Arria 10 GX VF",
	"0x8086:0x0b30": "PAC N3000",
	"0x8086:0x0b31": "PAC N3000 VF",
	"0x8086:0x0b2b": "PAC D5005",
	"0x8086:0x0b2c": "PAC D5005 VF",
	"0x8086:0xbcbd": "Integrated FPGA (INT_5_X)",
	"0x8086:0xbcbf": "Integrated FPGA (INT_5_X) VF",
	"0x8086:0xbcc0": "Integrated FPGA (INT_6_X)",
	"0x8086:0xbcc1": "Integrated FPGA (INT_6_X) VF",
	"0x8086:0xbcce": "FPGA (OFS/DFL)",
	"0x8086:0xbccf": "FPGA (OFS/DFL) VF",
	"0x1c2c:0x1000": "FPGA SmartNIC N5010",
	"0x1c2c:0x1001": "FPGA SmartNIC N5011",
}

// ofsSubsystems name the OFS cards that share device 0xbcce by subsystem.
var ofsSubsystems = map[string]string{
	"0x1770": "FPGA SmartNIC N6000",
	"0x1771": "FPGA SmartNIC N6001",
	"0x17d4": "FPGA SmartNIC C6100",
}

// intelFPGAs are the Intel (and Silicom) FPGA PCI functions dfl-pci and
// intel-fpga-pci bind to.
func isIntelFPGA(vendor, device string) bool {
	if vendor != vendorIntel && vendor != vendorSilicom {
		return false
	}
	_, ok := modelNames[vendor+":"+device]
	return ok
}

// xilinxVendors are the vendors of Alveo cards (Xilinx and resellers).
var xilinxVendors = map[string]bool{vendorXilinx: true, "0x13fe": true, "0x1d0f": true, "0x3475": true}

func vendorName(id string) string {
	if n, ok := vendorNames[id]; ok {
		return n
	}
	return "vendor " + id
}

func modelName(f *pciFunc) string {
	if f.vendor == vendorIntel && f.device == "0xbcce" {
		if n, ok := ofsSubsystems[f.subDevice]; ok {
			return n
		}
	}
	if n, ok := modelNames[f.vendor+":"+f.device]; ok {
		return n
	}
	return fmt.Sprintf("device %s", f.device)
}
