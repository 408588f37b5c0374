package assemble

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/bootiso"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/provision"
)

// BMCOpener opens pkg/bmc clients for the orchestrator (it implements
// provision.BMCOpener) and remembers them, so CloseAll can log out of every
// Redfish session still open. The steps it gives the orchestrator are the
// verified ones of `power` and `bootdev`: a power change counts only when
// read back, and a power on counts as a boot only when the node was off.
type BMCOpener struct {
	cfg     bmc.Config
	media   *mediaServer // nil: no node boots from virtual media
	mu      sync.Mutex
	clients []*bmc.Client
}

var _ provision.BMCOpener = (*BMCOpener)(nil)

// NewBMCOpener returns an opener whose clients use cfg, for nodes that
// network-boot over PXE only.
func NewBMCOpener(cfg bmc.Config) *BMCOpener { return &BMCOpener{cfg: cfg} }

// OpenBMC returns n's BMC client, without touching the network. A BIOS node
// gets its one-time boot as a legacy (non-EFI) boot; a node whose
// boot.method is virtual-media gets its CD inserted and a one-time CD boot
// instead of PXE.
func (b *BMCOpener) OpenBMC(_ context.Context, n inventory.Node) (provision.BMC, error) {
	nb := &nodeBMC{legacy: n.Boot.Firmware == inventory.FirmwareBIOS}
	if n.Boot.Method == inventory.BootMethodVirtualMedia {
		if b.media == nil {
			return nil, fmt.Errorf("node %s boots from virtual media but no cd server runs", n.Name)
		}
		if !nb.legacy {
			return nil, fmt.Errorf("node %s: %w", n.Name, bootiso.ErrUEFI)
		}
		nb.media = b.media.url(n.Name)
	}
	c, err := bmc.New(n.Name, n.BMC, b.cfg)
	if err != nil {
		return nil, err
	}
	nb.c = c
	b.mu.Lock()
	b.clients = append(b.clients, c)
	b.mu.Unlock()
	return nb, nil
}

// CloseAll logs out of every session still open, 64 at a time, each bounded
// by 5 s (the orchestrator closes each node's client once it is powered on;
// Close is idempotent).
func (b *BMCOpener) CloseAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, c := range b.clients {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c.Close(ctx)
		})
	}
	wg.Wait()
	b.clients = nil
}

// nodeBMC is one node's client as the orchestrator sees it.
type nodeBMC struct {
	c      *bmc.Client
	legacy bool
	media  string // the CD's URL for a virtual-media node
}

func (n *nodeBMC) Close(ctx context.Context) error { return n.c.Close(ctx) }

// PowerOff turns the node off and reads it back off.
func (n *nodeBMC) PowerOff(ctx context.Context) error { return n.c.SetPower(ctx, bmc.ActionOff) }

// PowerOn turns the node on and reads it back on. A node that was already
// on did not boot now, so its one-time override waits for a later boot:
// that is an error, never a boot.
func (n *nodeBMC) PowerOn(ctx context.Context) error {
	res, err := n.c.Power(ctx, bmc.ActionOn)
	if err != nil {
		return err
	}
	if res.Already {
		return fmt.Errorf("power on %s: the node was already on, so it did not boot from the one-time override now (someone powered it on after it was turned off)", n.c.Node())
	}
	return nil
}

// SetNetboot sets the one-time boot the node's script is reached by: PXE,
// or for virtual media the node's CD inserted and a one-time CD boot. The
// override and the media are read back; an override pending in a settings
// object applies at the power on that follows.
func (n *nodeBMC) SetNetboot(ctx context.Context) error {
	if n.media != "" {
		if _, err := n.c.InsertMedia(ctx, n.media); err != nil {
			return err
		}
		_, err := n.c.SetBoot(ctx, bmc.BootCD, bmc.BootOptions{Legacy: n.legacy})
		return err
	}
	_, err := n.c.SetBoot(ctx, bmc.BootPXE, bmc.BootOptions{Legacy: n.legacy})
	return err
}
