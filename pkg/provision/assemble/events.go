package assemble

import (
	"context"
	"sync"

	"github.com/slipway-dev/slipway/pkg/phonehome"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/pxe/bootevent"
)

// toEvent translates a boot-service event into the orchestrator's; ok is
// false for events the orchestrator does not need. A phone-home is parsed
// with package phonehome: a successful kubeadm init or join is EventJoined,
// a failed step EventNodeFailed, anything else (another step, a body that
// is not a report) EventProgress.
func toEvent(e bootevent.Event) (provision.Event, bool) {
	pe := provision.Event{Node: e.Node, Time: e.Time, Detail: e.Path}
	if len(e.MAC) > 0 {
		pe.MAC = e.MAC.String()
	}
	switch e.Kind {
	case bootevent.DHCPDiscover, bootevent.DHCPRequest:
		pe.Kind, pe.Detail = provision.EventDHCP, e.Detail
	case bootevent.TFTPServed:
		pe.Kind = provision.EventTFTP
	case bootevent.ScriptServed:
		pe.Kind = provision.EventScript
	case bootevent.KernelServed:
		pe.Kind = provision.EventKernel
	case bootevent.InitrdServed:
		pe.Kind = provision.EventInitrd
	case bootevent.ConfigFetched:
		pe.Kind, pe.Detail = provision.EventConfig, ""
	case bootevent.PhoneHome:
		pe.Kind, pe.Detail = provision.EventProgress, "phone-home "+e.Detail
		if r, err := phonehome.Parse(e.Detail); err == nil {
			pe.Detail = "phone-home " + phonehome.Format(r)
			switch {
			case r.Joined():
				pe.Kind, pe.Detail = provision.EventJoined, r.Step
			case r.Status == phonehome.Failed:
				pe.Kind, pe.Detail = provision.EventNodeFailed, phonehome.Format(r)
			}
		}
	default:
		return pe, false
	}
	if pe.Node == "" && pe.MAC == "" {
		return pe, false
	}
	return pe, true
}

// joinReadiness is readiness in JoinReportOnly mode, computed here and
// nowhere else: with no Kubernetes API, a node that reported its kubeadm
// init or join succeeded counts as Ready.
type joinReadiness struct{ ready bool }

// follow returns the events that follow ev: EventReady after a join when
// a reported join counts as Ready.
func (j joinReadiness) follow(ev provision.Event) []provision.Event {
	if !j.ready || ev.Kind != provision.EventJoined {
		return nil
	}
	return []provision.Event{{Node: ev.Node, MAC: ev.MAC, Kind: provision.EventReady, Detail: "join reported (no Kubernetes API)", Time: ev.Time}}
}

// bridge feeds boot-service events to o until ctx ends or events is closed.
// Observe waits for the journal, so each event gets its own goroutine and
// the bus is drained at once (a full subscription would drop events); the
// events that follow one (joinReadiness) are observed after it, in order.
// It returns once every Observe it started has returned.
func bridge(ctx context.Context, o *provision.Orchestrator, events <-chan bootevent.Event, joins joinReadiness) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-events:
			if !ok {
				return
			}
			pe, ok := toEvent(e)
			if !ok {
				continue
			}
			wg.Go(func() {
				if o.Observe(ctx, pe) != nil {
					return
				}
				for _, next := range joins.follow(pe) {
					o.Observe(ctx, next)
				}
			})
		}
	}
}
