package assemble

import (
	"context"
	"sync"
	"time"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/provision"
)

// BMCOpener opens pkg/bmc clients for the orchestrator (it implements
// provision.BMCOpener) and remembers them, so CloseAll can log out of every
// Redfish session still open.
type BMCOpener struct {
	cfg     bmc.Config
	mu      sync.Mutex
	clients []*bmc.Client
}

var _ provision.BMCOpener = (*BMCOpener)(nil)

// NewBMCOpener returns an opener whose clients use cfg.
func NewBMCOpener(cfg bmc.Config) *BMCOpener { return &BMCOpener{cfg: cfg} }

// OpenBMC returns n's BMC client, without touching the network. A BIOS node
// gets its one-time network boot as a legacy (non-EFI) boot.
func (b *BMCOpener) OpenBMC(_ context.Context, n inventory.Node) (provision.BMC, error) {
	c, err := bmc.New(n.Name, n.BMC, b.cfg)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.clients = append(b.clients, c)
	b.mu.Unlock()
	return &nodeBMC{c: c, legacy: n.Boot.Firmware == inventory.FirmwareBIOS}, nil
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
}

func (n *nodeBMC) PowerOff(ctx context.Context) error { return n.c.SetPower(ctx, bmc.ActionOff) }
func (n *nodeBMC) Close(ctx context.Context) error    { return n.c.Close(ctx) }
func (n *nodeBMC) PowerOn(ctx context.Context) error  { return n.c.SetPower(ctx, bmc.ActionOn) }
func (n *nodeBMC) SetNetboot(ctx context.Context) error {
	return n.c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{Legacy: n.legacy})
}
