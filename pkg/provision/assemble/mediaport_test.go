package assemble

import (
	"bytes"
	"fmt"
	"net"
	"testing"

	"github.com/slipway-dev/slipway/internal/testenv"
	"github.com/slipway-dev/slipway/pkg/bootiso"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

// TestMediaCDChainsToServedPort: a virtual-media node's CD chains to the
// boot HTTP port the services really listen on (--http-port, or a listener
// handed over), not the inventory's httpPort, or the node would boot its CD
// and find nothing at its script's URL.
func TestMediaCDChainsToServedPort(t *testing.T) {
	testenv.RequireFiles(t, bootiso.DefaultSource)
	w := newWorld(t, 2, nil)
	inv := w.Inventory
	served := inv.Network.HTTPPort // the world's HTTP listener
	inv.Network.HTTPPort = 1       // what the inventory file says; --http-port overrides it
	n := &inv.Nodes[1]
	n.Boot.Method, n.Boot.Firmware = inventory.BootMethodVirtualMedia, inventory.FirmwareBIOS
	opts := worldOptions(w, t.TempDir())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Media.Listener = ln
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer ln.Close()
	if p.opener.media == nil {
		t.Fatal("New started no cd server for a virtual-media node")
	}
	iso, err := p.opener.media.h.Image(n.Name)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("chain http://127.0.0.1:%d/boot/%s.ipxe", served, n.Name)
	if !bytes.Contains(iso, []byte(want)) {
		t.Errorf("the cd of %s does not %q (the boot HTTP server listens on port %d)", n.Name, want, served)
	}
}
