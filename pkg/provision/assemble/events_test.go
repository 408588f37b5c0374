package assemble

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/provision/provisionfake"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
	"github.com/slipway-dev/slipway/pkg/pxe/httpboot"
)

func TestToEvent(t *testing.T) {
	t.Parallel()
	mac, _ := net.ParseMAC("52:54:00:00:00:01")
	tests := []struct {
		in     bootevent.Event
		want   provision.EventKind
		wantOK bool
	}{
		{bootevent.Event{Kind: bootevent.DHCPDiscover, MAC: mac}, provision.EventDHCP, true},
		{bootevent.Event{Kind: bootevent.DHCPRequest, Node: "n"}, provision.EventDHCP, true},
		{bootevent.Event{Kind: bootevent.DHCPOffer, Node: "n"}, "", false},
		{bootevent.Event{Kind: bootevent.TFTPServed, Node: "n"}, provision.EventTFTP, true},
		{bootevent.Event{Kind: bootevent.TFTPServed}, provision.EventTFTP, false}, // no node, no MAC
		{bootevent.Event{Kind: bootevent.ScriptServed, Node: "n"}, provision.EventScript, true},
		{bootevent.Event{Kind: bootevent.KernelServed, Node: "n"}, provision.EventKernel, true},
		{bootevent.Event{Kind: bootevent.InitrdServed, Node: "n"}, provision.EventInitrd, true},
		{bootevent.Event{Kind: bootevent.ConfigFetched, Node: "n"}, provision.EventConfig, true},
		{bootevent.Event{Kind: bootevent.ConfigRefused, Node: "n"}, "", false},
		{bootevent.Event{Kind: bootevent.PhoneHome, Node: "n", Detail: "step=kubeadm-join status=ok"}, provision.EventJoined, true},
		{bootevent.Event{Kind: bootevent.PhoneHome, Node: "n", Detail: "step=kubeadm-init status=ok"}, provision.EventJoined, true},
		{bootevent.Event{Kind: bootevent.PhoneHome, Node: "n", Detail: "step=kubeadm-join status=failed rc=1"}, provision.EventNodeFailed, true},
		{bootevent.Event{Kind: bootevent.PhoneHome, Node: "n", Detail: "step=enable-kubelet status=started"}, provision.EventProgress, true},
		{bootevent.Event{Kind: bootevent.PhoneHome, Node: "n", Detail: "step=kubeadm-join status=started"}, provision.EventProgress, true},
		{bootevent.Event{Kind: bootevent.PhoneHome, Node: "n", Detail: "step=done status=ok"}, provision.EventProgress, true},
		{bootevent.Event{Kind: bootevent.PhoneHome, Node: "n", Detail: "uptime=12.3 booted"}, provision.EventProgress, true},
	}
	for _, tc := range tests {
		got, ok := toEvent(tc.in)
		if ok != tc.wantOK || (ok && got.Kind != tc.want) {
			t.Errorf("toEvent(%s %q) = %s, %v; want %s, %v", tc.in.Kind, tc.in.Detail, got.Kind, ok, tc.want, tc.wantOK)
		}
	}
}

// TestJournaledRendererRefusesNodeAboutToBePowerCycled checks the renderer
// hook: a node whose machine is not past power on gets no config, a node
// waiting for its boot gets it, and only after the journal says so.
func TestJournaledRendererRefusesNodeAboutToBePowerCycled(t *testing.T) {
	t.Parallel()
	nodes := []inventory.Node{
		{Name: "cp", Role: inventory.RoleControlPlane},
		{Name: "stuck", Role: inventory.RoleControlPlane},
	}
	rack := provisionfake.New(&provisionfake.Machine{Name: "cp", Behavior: provisionfake.Behavior{NoPXE: true}},
		&provisionfake.Machine{Name: "stuck"})
	rack.Deliver = func(context.Context, provision.Event) error { return nil }
	state := t.TempDir()
	o, err := provision.New(provision.Config{Nodes: nodes, StateDir: state, BMCs: rack,
		Timeouts: provision.Timeouts{DHCP: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	r := &journaledRenderer{next: httpboot.RendererFunc(func(context.Context, inventory.Node) ([]byte, error) { return []byte("cfg"), nil }), o: o}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// "stuck" is pending behind cp (the first control plane): refused.
	if _, err := r.Render(ctx, nodes[1]); !errors.Is(err, provision.ErrUnexpected) {
		t.Errorf("Render(stuck, pending) error = %v, want ErrUnexpected", err)
	}
	// cp is powered on and waiting for DHCP: served, journaled first.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := r.Render(ctx, nodes[0])
		if err == nil {
			if string(b) != "cfg" {
				t.Errorf("Render(cp) = %q, want the wrapped renderer's output", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Render(cp) still refused after 10s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, err := provision.ReadJournal(state + "/" + provision.JournalFile)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(provision.PhaseConfigFetched, st.Nodes["cp"].Phase); diff != "" {
		t.Errorf("journal phase of cp right after its config was rendered (-want +got):\n%s", diff)
	}
}
