package bootiso

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// Handler serves GET /iso/NODE.iso: the CD of each enabled inventory node
// whose boot.method is virtual-media, built on first request and kept. A
// BMC fetches it when told to insert it (InsertMedia).
type Handler struct {
	inv *inventory.Inventory
	cfg Config

	mu    sync.Mutex
	built map[string][]byte
}

// NewHandler returns a Handler for inv's virtual-media nodes.
func NewHandler(inv *inventory.Inventory, cfg Config) *Handler {
	return &Handler{inv: inv, cfg: cfg, built: map[string][]byte{}}
}

// Path returns the URL path of node's CD.
func Path(node string) string { return "/iso/" + node + ".iso" }

// Image returns node's CD, building it on first use. Only enabled nodes
// whose boot.method is virtual-media have one.
func (h *Handler) Image(node string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b, ok := h.built[node]; ok {
		return b, nil
	}
	n, ok := h.inv.Node(node)
	if !ok || n.Disabled || n.Boot.Method != inventory.BootMethodVirtualMedia {
		return nil, fmt.Errorf("node %q has no virtual-media cd (not an enabled node with boot.method virtual-media)", node)
	}
	bn, err := FromInventory(h.inv, n, h.cfg.HTTPPort)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := Build(&buf, h.cfg, bn); err != nil {
		return nil, err
	}
	h.built[node] = buf.Bytes()
	return buf.Bytes(), nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/iso/")
	if !ok || !strings.HasSuffix(name, ".iso") || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		http.NotFound(w, r)
		return
	}
	img, err := h.Image(strings.TrimSuffix(name, ".iso"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/x-iso9660-image")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(img))
}
