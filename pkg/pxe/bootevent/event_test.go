package bootevent

import (
	"encoding/json"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBusFanOut(t *testing.T) {
	b := NewBus()
	a, cancelA := b.Subscribe(4)
	c, cancelC := b.Subscribe(4)
	defer cancelC()
	b.Publish(Event{Kind: DHCPOffer, Node: "n1"})
	b.Publish(Event{Kind: DHCPAck, Node: "n1"})
	for name, ch := range map[string]<-chan Event{"a": a, "c": c} {
		var got []Kind
		for range 2 {
			e := <-ch
			if e.Time.IsZero() {
				t.Errorf("subscriber %s: event %s has no time", name, e.Kind)
			}
			got = append(got, e.Kind)
		}
		if diff := cmp.Diff([]Kind{DHCPOffer, DHCPAck}, got); diff != "" {
			t.Errorf("subscriber %s (-want +got):\n%s", name, diff)
		}
	}
	cancelA()
	cancelA() // twice is fine
	if _, ok := <-a; ok {
		t.Error("channel still open after cancel")
	}
	b.Publish(Event{Kind: PhoneHome})
	if e := <-c; e.Kind != PhoneHome {
		t.Errorf("after another subscriber left: got %s, want %s", e.Kind, PhoneHome)
	}
}

func TestBusDropsForSlowSubscriber(t *testing.T) {
	b := NewBus()
	ch, cancel := b.Subscribe(2)
	defer cancel()
	done := make(chan struct{})
	go func() {
		// Publish must not block on a subscriber that never reads.
		for range 10 {
			b.Publish(Event{Kind: TFTPServed})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a full subscriber")
	}
	if got := b.Dropped(); got != 8 {
		t.Errorf("Dropped() = %d, want 8", got)
	}
	if len(ch) != 2 {
		t.Errorf("subscriber holds %d events, want 2", len(ch))
	}
}

func TestBusClose(t *testing.T) {
	b := NewBus()
	ch, cancel := b.Subscribe(0)
	b.Close()
	if _, ok := <-ch; ok {
		t.Error("channel open after Close")
	}
	cancel() // after Close: no panic
	late, _ := b.Subscribe(0)
	if _, ok := <-late; ok {
		t.Error("subscription after Close is open")
	}
	b.Publish(Event{Kind: PhoneHome}) // no panic, no block
}

func TestEventJSON(t *testing.T) {
	e := Event{
		Kind: KernelServed, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Node: "gpu-01",
		MAC: net.HardwareAddr{0x52, 0x54, 0, 0x77, 0, 0x10}, IP: netip.MustParseAddr("10.77.0.10"),
		Path: "/assets/vmlinuz", Bytes: 8 << 20,
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"kind":"kernel_served","time":"2026-01-02T03:04:05Z","node":"gpu-01","ip":"10.77.0.10","path":"/assets/vmlinuz","bytes":8388608,"mac":"52:54:00:77:00:10"}`
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("json.Marshal(event) (-want +got):\n%s", diff)
	}
}
