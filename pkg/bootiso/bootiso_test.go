package bootiso

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/internal/golden"
	"github.com/slipway-dev/slipway/internal/testenv"
)

func testNode() Node {
	mac, _ := net.ParseMAC("52:54:00:77:00:10")
	return Node{Name: "gpu-01", MAC: mac, Address: netip.MustParsePrefix("10.0.4.21/24"),
		Gateway: netip.MustParseAddr("10.0.4.1"), ScriptURL: "http://10.0.0.1:8080/boot/gpu-01.ipxe"}
}

func TestScriptGolden(t *testing.T) {
	got, err := Script(testNode())
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "gpu-01.ipxe.golden"), got)
}

func TestScriptErrors(t *testing.T) {
	n := testNode()
	n.MAC, n.Address, n.ScriptURL = nil, netip.Prefix{}, "tftp://x/y"
	_, err := Script(n)
	for _, want := range []string{"a 6-byte MAC is required", "an IPv4 address with its prefix length is required", `script URL "tftp://x/y"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Script(bad node) = %v, want it to say %q", err, want)
		}
	}
	n = testNode()
	n.UEFI = true
	if err := Build(&bytes.Buffer{}, Config{}, n); !errors.Is(err, ErrUEFI) {
		t.Errorf("Build(UEFI node) = %v, want ErrUEFI", err)
	}
	if err := Build(&bytes.Buffer{}, Config{Source: "/nonexistent.iso"}, testNode()); err == nil || !strings.Contains(err.Error(), "install Debian's ipxe package") {
		t.Errorf("Build without the source image = %v, want the package named", err)
	}
}

// TestBuildLayout reads a built image back: the files, the boot catalog
// (checksum, entry), the boot record and ISOLINUX's boot information table.
func TestBuildLayout(t *testing.T) {
	testenv.RequireFiles(t, DefaultSource)
	var buf bytes.Buffer
	if err := Build(&buf, Config{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, testNode()); err != nil {
		t.Fatalf("Build: %v", err)
	}
	img := buf.Bytes()
	if len(img)%sector != 0 {
		t.Fatalf("image size %d is not a multiple of %d", len(img), sector)
	}
	files, err := readRootFiles(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("read the image back: %v", err)
	}
	script, _ := Script(testNode())
	if diff := cmp.Diff(string(script), string(files["NODE.IPX"])); diff != "" {
		t.Errorf("NODE.IPX (-want +got):\n%s", diff)
	}
	if !strings.Contains(string(files["ISOLINUX.CFG"]), "KERNEL ipxe.krn\n APPEND initrd=node.ipx\n") {
		t.Errorf("ISOLINUX.CFG = %q", files["ISOLINUX.CFG"])
	}
	src, err := os.Open(DefaultSource)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	orig, err := readRootFiles(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"LDLINUX.C32", "IPXE.KRN"} {
		if !bytes.Equal(orig[name], files[name]) {
			t.Errorf("%s differs from Debian's", name)
		}
	}
	// El Torito: the boot record names the catalog; its validation entry
	// sums to zero; the default entry boots ISOLINUX.BIN, whose boot
	// information table says where it and the volume descriptor are.
	br := img[17*sector:]
	if string(br[1:6]) != "CD001" || !strings.HasPrefix(string(br[7:39]), "EL TORITO SPECIFICATION") {
		t.Fatalf("sector 17 is not an El Torito boot record")
	}
	cat := img[int(binary.LittleEndian.Uint32(br[71:]))*sector:]
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(cat[i:])
	}
	if sum != 0 || cat[30] != 0x55 || cat[31] != 0xAA {
		t.Errorf("validation entry: sum %#x, key %#x %#x; want 0, 0x55 0xaa", sum, cat[30], cat[31])
	}
	if cat[32] != 0x88 || cat[33] != 0 || binary.LittleEndian.Uint16(cat[38:]) != 4 {
		t.Errorf("default entry %x: want bootable, no emulation, 4 sectors", cat[32:44])
	}
	bootLBA := binary.LittleEndian.Uint32(cat[40:])
	boot := img[int(bootLBA)*sector:]
	if got := binary.LittleEndian.Uint32(boot[8:]); got != 16 {
		t.Errorf("boot info table: volume descriptor at %d, want 16", got)
	}
	if got := binary.LittleEndian.Uint32(boot[12:]); got != bootLBA {
		t.Errorf("boot info table: file at %d, want %d", got, bootLBA)
	}
	n := binary.LittleEndian.Uint32(boot[16:])
	if n != uint32(len(orig["ISOLINUX.BIN"])) {
		t.Errorf("boot info table: length %d, want %d", n, len(orig["ISOLINUX.BIN"]))
	}
	var csum uint32
	for i := 64; i < int(n); i += 4 {
		csum += binary.LittleEndian.Uint32(boot[i:])
	}
	if got := binary.LittleEndian.Uint32(boot[20:]); got != csum {
		t.Errorf("boot info table: checksum %#x, want %#x", got, csum)
	}
	// The same node and time give the same image.
	var again bytes.Buffer
	if err := Build(&again, Config{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, testNode()); err != nil || !bytes.Equal(again.Bytes(), img) {
		t.Errorf("a second Build differs (err %v)", err)
	}
}

// TestBootInQEMU boots the CD in QEMU (SeaBIOS, no NIC option ROM) with
// QEMU's user-mode network, whose 10.0.2.2 is this host's loopback: the
// CD's iPXE must find the NIC by its MAC, set the static address and chain
// to the script URL, which answers with a script that powers the VM off.
func TestBootInQEMU(t *testing.T) {
	testenv.RequireCommands(t, "qemu-system-x86_64")
	testenv.RequireFiles(t, DefaultSource)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var fetched []string
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fetched = append(fetched, r.URL.Path+" from "+strings.Split(r.RemoteAddr, ":")[0])
		mu.Unlock()
		w.Write([]byte("#!ipxe\necho SLIPWAY-CHAINED ${net0/ip}\npoweroff\n"))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	n := testNode()
	n.Address = netip.MustParsePrefix("10.0.2.15/24")
	n.Gateway = netip.MustParseAddr("10.0.2.2")
	n.ScriptURL = "http://10.0.2.2:" + port + "/boot/gpu-01.ipxe"
	dir := t.TempDir()
	iso := filepath.Join(dir, "gpu-01.iso")
	f, err := os.Create(iso)
	if err != nil {
		t.Fatal(err)
	}
	if err := Build(f, Config{}, n); err != nil {
		t.Fatalf("Build: %v", err)
	}
	f.Close()
	console := filepath.Join(dir, "console.log")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-machine", "pc,accel=tcg", "-m", "256", "-nographic", "-monitor", "none",
		"-serial", "file:"+console, "-drive", "media=cdrom,readonly=on,format=raw,file="+iso, "-boot", "order=d",
		"-netdev", "user,id=n0,restrict=off", "-device", "virtio-net-pci,netdev=n0,romfile=,mac="+n.MAC.String(), "-no-reboot")
	out, err := cmd.CombinedOutput()
	con, _ := os.ReadFile(console)
	if err != nil {
		t.Fatalf("qemu: %v\n%s\nconsole:\n%s", err, out, con)
	}
	for _, want := range []string{"Slipway virtual-media boot: node gpu-01", "is 10.0.2.15, chaining http://10.0.2.2:" + port, "SLIPWAY-CHAINED 10.0.2.15"} {
		if !strings.Contains(string(con), want) {
			t.Errorf("console lacks %q:\n%s", want, con)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"/boot/gpu-01.ipxe from 127.0.0.1"}, fetched); diff != "" {
		t.Errorf("requests to the boot server (-want +got):\n%s", diff)
	}
}
