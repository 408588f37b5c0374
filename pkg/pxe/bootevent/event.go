package bootevent

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Kind names one step of a network boot.
type Kind string

// Event kinds, in the order a node usually produces them.
const (
	// DHCPDiscover: a known node's DHCPDISCOVER arrived.
	DHCPDiscover Kind = "dhcp_discover"
	// DHCPOffer: an offer was sent to a known node.
	DHCPOffer Kind = "dhcp_offer"
	// DHCPRequest: a known node's DHCPREQUEST arrived.
	DHCPRequest Kind = "dhcp_request"
	// DHCPAck: an acknowledgement was sent to a known node.
	DHCPAck Kind = "dhcp_ack"
	// DHCPNak: a known node asked for an address that is not its own.
	DHCPNak Kind = "dhcp_nak"
	// DHCPIgnored: a request from a MAC that is not in the inventory got no answer.
	DHCPIgnored Kind = "dhcp_ignored"
	// TFTPServed: a file was sent over TFTP (Bytes is its size).
	TFTPServed Kind = "tftp_served"
	// TFTPRefused: a TFTP read or write was refused (Detail says why).
	TFTPRefused Kind = "tftp_refused"
	// ScriptServed: a node's iPXE script was served.
	ScriptServed Kind = "script_served"
	// KernelServed: a node's kernel was sent in full.
	KernelServed Kind = "kernel_served"
	// InitrdServed: a node's initrd was sent in full.
	InitrdServed Kind = "initrd_served"
	// AssetServed: another asset (image, firmware) was sent.
	AssetServed Kind = "asset_served"
	// ConfigFetched: a node fetched its configuration with a valid token.
	ConfigFetched Kind = "config_fetched"
	// ConfigRefused: a configuration request had a missing, wrong, expired or used token.
	ConfigRefused Kind = "config_refused"
	// PhoneHome: a booted node reported its progress.
	PhoneHome Kind = "phone_home"
)

// Event is one observed step of a node's network boot.
type Event struct {
	// Kind is what happened.
	Kind Kind `json:"kind"`
	// Time is when the server observed it.
	Time time.Time `json:"time"`
	// Node is the inventory node name; empty when the peer is not a known node.
	Node string `json:"node,omitempty"`
	// MAC is the peer's hardware address when known; it marshals as
	// aa:bb:cc:dd:ee:ff.
	MAC net.HardwareAddr `json:"-"`
	// IP is the peer's address (or the address offered, for DHCP).
	IP netip.Addr `json:"ip,omitzero"`
	// Path is the file or URL path, for TFTP and HTTP events.
	Path string `json:"path,omitempty"`
	// Bytes is the number of bytes sent, where it applies.
	Bytes int64 `json:"bytes,omitempty"`
	// Detail is a short free-form note: the firmware kind for DHCP, the refusal
	// reason, or the phone-home progress message.
	Detail string `json:"detail,omitempty"`
}

// MarshalJSON writes the event with the MAC in its usual text form.
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event
	var mac string
	if len(e.MAC) > 0 {
		mac = e.MAC.String()
	}
	return json.Marshal(struct {
		plain
		MAC string `json:"mac,omitempty"`
	}{plain(e), mac})
}

// LogValue implements slog.LogValuer with the house key vocabulary.
func (e Event) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("kind", string(e.Kind))}
	if e.Node != "" {
		attrs = append(attrs, slog.String("node", e.Node))
	}
	if len(e.MAC) > 0 {
		attrs = append(attrs, slog.String("mac", e.MAC.String()))
	}
	if e.IP.IsValid() {
		attrs = append(attrs, slog.String("ip", e.IP.String()))
	}
	if e.Path != "" {
		attrs = append(attrs, slog.String("path", e.Path))
	}
	if e.Bytes != 0 {
		attrs = append(attrs, slog.Int64("bytes", e.Bytes))
	}
	if e.Detail != "" {
		attrs = append(attrs, slog.String("detail", e.Detail))
	}
	return slog.GroupValue(attrs...)
}

// Sink receives events. Publish must not block.
type Sink interface {
	Publish(e Event)
}

// Discard is a Sink that drops every event.
type Discard struct{}

// Publish does nothing.
func (Discard) Publish(Event) {}

// DefaultBuffer is the channel capacity of a subscription when Subscribe is
// given 0.
const DefaultBuffer = 1024

// Bus fans events out to subscribers. A subscriber that does not keep up
// loses events rather than slowing the boot services down; Dropped counts
// them. The zero Bus is not usable: call NewBus.
type Bus struct {
	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	closed  bool
	dropped atomic.Uint64
}

type subscriber struct {
	ch chan Event
}

// NewBus returns a bus with no subscribers.
func NewBus() *Bus {
	return &Bus{subs: make(map[*subscriber]struct{})}
}

// Publish sends e to every subscriber without blocking. A zero Time is set
// to now.
func (b *Bus) Publish(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.ch <- e:
		default:
			b.dropped.Add(1)
		}
	}
}

// Subscribe returns a channel of every event published from now on, with
// room for buffer events (0 means DefaultBuffer), and a cancel function that
// unsubscribes and closes the channel. Cancel may be called more than once.
func (b *Bus) Subscribe(buffer int) (events <-chan Event, cancel func()) {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	s := &subscriber{ch: make(chan Event, buffer)}
	b.mu.Lock()
	if b.closed {
		close(s.ch)
	} else {
		b.subs[s] = struct{}{}
	}
	b.mu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if _, ok := b.subs[s]; ok {
				delete(b.subs, s)
				close(s.ch)
			}
		})
	}
}

// Close closes every subscriber's channel; later subscriptions get a closed
// channel and later events are dropped.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		delete(b.subs, s)
		close(s.ch)
	}
}

// Dropped returns how many events were lost because a subscriber's channel
// was full.
func (b *Bus) Dropped() uint64 { return b.dropped.Load() }

// Multi is a Sink that publishes to each of its sinks in order.
type Multi []Sink

// Publish sends e to every sink.
func (m Multi) Publish(e Event) {
	for _, s := range m {
		s.Publish(e)
	}
}
