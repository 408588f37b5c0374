//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/pxe"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
	"github.com/slipway-dev/slipway/test/e2e/lab"
)

// slipway is Slipway's boot services running in the test binary (inside the
// lab's namespace), with every event they publish recorded.
type slipway struct {
	inv  *inventory.Inventory
	svc  *pxe.Services
	stop func()

	mu     sync.Mutex
	events []bootevent.Event
	notify chan struct{}
}

// labInventory fills testdata/lab-inventory.yaml.tmpl.
type labInventory struct {
	// Interface is the lab bridge.
	Interface string
	// RouterAdvertisements makes Slipway send IPv6 router advertisements.
	RouterAdvertisements bool
	// DHCPMode is authoritative or proxy.
	DHCPMode string
}

// writeInventory renders the lab inventory into the lab's directory and
// returns its path.
func writeInventory(t testing.TB, l *lab.Lab, li labInventory) string {
	t.Helper()
	if li.DHCPMode == "" {
		li.DHCPMode = "authoritative"
	}
	tmpl, err := template.ParseFiles(filepath.Join("testdata", "lab-inventory.yaml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, li); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(l.Dir(), "inventory.yaml")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startSlipway loads the lab inventory for l's bridge and runs the boot
// services (DHCP, TFTP, HTTP and, with ourRA, IPv6 router advertisements)
// until the test ends; a service that fails fails the test. Without ourRA
// the lab runs an RA-only dnsmasq instead.
func startSlipway(t testing.TB, l *lab.Lab, img lab.NodeImage, ourRA bool) *slipway {
	t.Helper()
	return startSlipwayWith(t, l, img, labInventory{Interface: l.Bridge(), RouterAdvertisements: ourRA})
}

// startSlipwayWith is startSlipway with the whole inventory choice.
func startSlipwayWith(t testing.TB, l *lab.Lab, img lab.NodeImage, li labInventory) *slipway {
	t.Helper()
	invPath := writeInventory(t, l, li)
	inv, err := inventory.Load(invPath)
	if err != nil {
		t.Fatalf("inventory.Load(%s): %v", invPath, err)
	}
	if !li.RouterAdvertisements {
		if _, err := l.StartRouterAdvertisements(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	bus := bootevent.NewBus()
	s := &slipway{inv: inv, notify: make(chan struct{})}
	events, unsubscribe := bus.Subscribe(4096)
	go func() {
		for e := range events {
			s.mu.Lock()
			s.events = append(s.events, e)
			close(s.notify)
			s.notify = make(chan struct{})
			s.mu.Unlock()
		}
	}()
	s.svc, err = pxe.New(pxe.Config{
		Inventory: inv,
		TFTPRoot:  ipxeDir,
		AssetDir:  img.Dir,
		Bus:       bus,
		// The node image powers off after its phone-home, so QEMU exits.
		NextAction: func(inventory.Node) string { return "poweroff" },
		Log:        testLogger(t),
	})
	if err != nil {
		t.Fatalf("pxe.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.svc.Run(ctx) }()
	s.stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("boot services Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("boot services did not stop within 15 s of cancel")
		}
		unsubscribe()
	})
	t.Cleanup(s.stop)
	ready := []<-chan struct{}{s.svc.HTTP().Ready(), s.svc.TFTP().Ready()}
	if d := s.svc.DHCP(); d != nil {
		ready = append(ready, d.Ready())
	}
	for _, r := range ready {
		select {
		case <-r:
		case err := <-done:
			t.Fatalf("boot services stopped at start: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("boot services not ready within 10 s")
		}
	}
	return s
}

// Stop stops the services and reports a failed Run to the test (also done
// at cleanup).
func (s *slipway) Stop() { s.stop() }

// Events returns what was recorded so far.
func (s *slipway) Events() []bootevent.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bootevent.Event(nil), s.events...)
}

// wait returns the first event that matches, waiting for it until ctx ends.
func (s *slipway) wait(ctx context.Context, what string, match func(bootevent.Event) bool) (bootevent.Event, error) {
	for {
		s.mu.Lock()
		for _, e := range s.events {
			if match(e) {
				s.mu.Unlock()
				return e, nil
			}
		}
		ch := s.notify
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return bootevent.Event{}, fmt.Errorf("wait for %s: %w", what, ctx.Err())
		}
	}
}

// waitBooted waits for the node image's own phone-home (the one that
// carries its uptime) from node.
func (s *slipway) waitBooted(ctx context.Context, node string) (bootevent.Event, error) {
	return s.wait(ctx, "phone-home from "+node, func(e bootevent.Event) bool {
		return e.Kind == bootevent.PhoneHome && e.Node == node && strings.Contains(e.Detail, "uptime=")
	})
}

// nodeEvents returns the kinds of node's events, in order.
func (s *slipway) nodeEvents(node string) []bootevent.Kind {
	var kinds []bootevent.Kind
	for _, e := range s.Events() {
		if e.Node == node {
			kinds = append(kinds, e.Kind)
		}
	}
	return kinds
}

// phases summarises node's boot: seconds after t0 of its first event of
// each kind that marks a phase, for the test log.
func (s *slipway) phases(node string, t0 time.Time) string {
	seen := map[bootevent.Kind]bool{}
	var parts []string
	for _, e := range s.Events() {
		if e.Node != node || seen[e.Kind] {
			continue
		}
		switch e.Kind {
		case bootevent.DHCPAck, bootevent.TFTPServed, bootevent.ScriptServed, bootevent.InitrdServed, bootevent.ConfigFetched:
			seen[e.Kind] = true
			parts = append(parts, fmt.Sprintf("%s %.2f", e.Kind, e.Time.Sub(t0).Seconds()))
		}
	}
	return strings.Join(parts, ", ")
}

// formatEvents prints node's events, one a line, with times relative to t0,
// for failure messages.
func (s *slipway) formatEvents(node string, t0 time.Time) string {
	var b strings.Builder
	for _, e := range s.Events() {
		if node == "" || e.Node == node {
			fmt.Fprintf(&b, "  %+7.2fs %-14s node=%s mac=%s ip=%s path=%s bytes=%d detail=%q\n",
				e.Time.Sub(t0).Seconds(), e.Kind, e.Node, e.MAC, e.IP, e.Path, e.Bytes, e.Detail)
		}
	}
	return b.String()
}

// subsequence reports whether want appears in got in order (other events
// may come between: retransmissions, the node's own DHCP in Linux).
func subsequence(got, want []bootevent.Kind) bool {
	i := 0
	for _, k := range got {
		if i < len(want) && k == want[i] {
			i++
		}
	}
	return i == len(want)
}
