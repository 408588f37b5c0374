package assemble

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/slipway-dev/slipway/pkg/bootiso"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

// DefaultMediaPort is the port of the server that hands BMCs the
// virtual-media CDs, on the provisioner's address, when Media.Addr is unset.
const DefaultMediaPort = 8081

// Media configures the server that hands BMCs the CDs of the nodes whose
// boot.method is virtual-media (pkg/bootiso). It runs only when such a
// node is enabled.
type Media struct {
	// Listener is a socket bound by the caller for the CD server (tests;
	// nil: listen on Addr).
	Listener net.Listener
	// Addr is where the CD server listens (default: the provisioner's
	// address, port DefaultMediaPort). The BMCs must reach it.
	Addr string
	// URL is the base URL BMCs fetch the CDs from (default
	// http://ADDRESS:PORT of the listener).
	URL string
	// ISO says where the iPXE CD image is (default bootiso.DefaultSource).
	ISO bootiso.Config
}

// mediaServer serves the CDs.
type mediaServer struct {
	ln   net.Listener
	base string
	h    *bootiso.Handler
	log  *slog.Logger
}

// newMediaServer returns nil when no enabled node boots from virtual
// media. It binds its listener here, so a taken port fails New, not a run
// half-way.
func newMediaServer(inv *inventory.Inventory, m Media, log *slog.Logger) (*mediaServer, error) {
	used := false
	for _, n := range inv.Enabled() {
		used = used || n.Boot.Method == inventory.BootMethodVirtualMedia
	}
	if !used {
		return nil, nil
	}
	ln := m.Listener
	if ln == nil {
		addr := m.Addr
		if addr == "" {
			addr = net.JoinHostPort(inv.Network.Address.String(), strconv.Itoa(DefaultMediaPort))
		}
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("assemble provisioner: virtual-media cd server: %w", err)
		}
	}
	base := m.URL
	if base == "" {
		ap, err := netip.ParseAddrPort(ln.Addr().String())
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("assemble provisioner: virtual-media cd server address: %w", err)
		}
		host := ap.Addr()
		if host.IsUnspecified() {
			host = inv.Network.Address
		}
		base = "http://" + netip.AddrPortFrom(host, ap.Port()).String()
	}
	return &mediaServer{ln: ln, base: base, h: bootiso.NewHandler(inv, m.ISO), log: log}, nil
}

// url returns the URL of node's CD.
func (s *mediaServer) url(node string) string { return s.base + bootiso.Path(node) }

// run serves until ctx is done.
func (s *mediaServer) run(ctx context.Context) error {
	srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(s.ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("virtual-media cd server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if e := <-done; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}
