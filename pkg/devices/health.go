package devices

import (
	"fmt"
	"sync"
	"time"
)

// HealthLedger is the health of a node's devices by stable device ID
// (Device.ID): whether each is healthy now, why not, and when a problem was
// last seen. It outlives any one discovery and any one Monitor.Run, so a
// device that went unhealthy stays unhealthy across rescans, config
// reloads and monitor restarts until it has been clean for the recovery
// period; a device that disappears and comes back within that period comes
// back unhealthy. It is safe for concurrent use.
type HealthLedger struct {
	mu   sync.Mutex
	byID map[string]*tracker
}

// NewHealthLedger returns an empty ledger.
func NewHealthLedger() *HealthLedger {
	return &HealthLedger{byID: map[string]*tracker{}}
}

// tracker is the health of one device over time.
type tracker struct {
	id      string
	healthy bool
	reason  string
	lastBad time.Time // when a problem was last seen
}

// bad records a problem seen at now; it returns an event when the device
// turns unhealthy.
func (t *tracker) bad(now time.Time, reason string) (HealthEvent, bool) {
	t.lastBad = now
	t.reason = reason
	if !t.healthy {
		return HealthEvent{}, false
	}
	t.healthy = false
	return HealthEvent{DeviceID: t.id, Healthy: false, Reason: reason, Time: now}, true
}

// clean records a check without problems at now; it returns an event when
// the device has been clean for the recovery period (never when negative).
func (t *tracker) clean(now time.Time, recovery time.Duration) (HealthEvent, bool) {
	if t.healthy || recovery < 0 || now.Sub(t.lastBad) < recovery {
		return HealthEvent{}, false
	}
	t.healthy = true
	reason := fmt.Sprintf("recovered: clean for %s after %s", recovery, t.reason)
	t.reason = ""
	return HealthEvent{DeviceID: t.id, Healthy: true, Reason: reason, Time: now}, true
}

// Observe records the health that discovery found for devs at now and
// returns the changes. A device seen for the first time starts with its
// discovered health (an unhealthy one must then stay clean for the
// recovery period). A known device found unhealthy records the problem,
// which restarts its clean period. A known device found healthy keeps its
// recorded health: it recovers only through a Monitor's clean checks, after
// the recovery period.
func (l *HealthLedger) Observe(devs []Device, now time.Time) []HealthEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var evs []HealthEvent
	for _, d := range devs {
		t, ok := l.byID[d.ID]
		if !ok {
			t = &tracker{id: d.ID, healthy: d.Healthy}
			if !d.Healthy {
				t.lastBad, t.reason = now, discoveredReason(d)
			}
			l.byID[d.ID] = t
			continue
		}
		if !d.Healthy {
			if ev, changed := t.bad(now, discoveredReason(d)); changed {
				evs = append(evs, ev)
			}
		}
	}
	return evs
}

// discoveredReason is why discovery found d unhealthy.
func discoveredReason(d Device) string {
	if d.HealthReason == "" {
		return "unhealthy at discovery"
	}
	return d.HealthReason
}

// Bad records a problem of device id seen at now; it returns an event when
// the device turns unhealthy. An unknown id is recorded.
func (l *HealthLedger) Bad(id string, now time.Time, reason string) (HealthEvent, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.get(id).bad(now, reason)
}

// Clean records a check of device id without problems at now; it returns an
// event when the device has been clean for recovery (never when recovery is
// negative).
func (l *HealthLedger) Clean(id string, now time.Time, recovery time.Duration) (HealthEvent, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.get(id).clean(now, recovery)
}

// get returns id's tracker, adding a healthy one. Called with l.mu held.
func (l *HealthLedger) get(id string) *tracker {
	t, ok := l.byID[id]
	if !ok {
		t = &tracker{id: id, healthy: true}
		l.byID[id] = t
	}
	return t
}

// Health returns the recorded health of device id and the reason when it is
// unhealthy; ok is false when nothing is recorded.
func (l *HealthLedger) Health(id string) (healthy bool, reason string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.byID[id]
	if !ok {
		return false, "", false
	}
	return t.healthy, t.reason, true
}

// Apply returns a copy of devs with Healthy and HealthReason as recorded;
// a device with nothing recorded keeps its discovered health.
func (l *HealthLedger) Apply(devs []Device) []Device {
	out := make([]Device, len(devs))
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, d := range devs {
		if t, ok := l.byID[d.ID]; ok {
			d.Healthy = t.healthy
			d.HealthReason = ""
			if !t.healthy {
				d.HealthReason = t.reason
			}
		}
		out[i] = d
	}
	return out
}

// Forget drops the records of devices not in present that are healthy, or
// whose last problem is at least recovery old (a negative recovery keeps
// unhealthy records for ever), so that the ledger does not grow with
// devices that never come back.
func (l *HealthLedger) Forget(present []Device, now time.Time, recovery time.Duration) {
	keep := make(map[string]bool, len(present))
	for _, d := range present {
		keep[d.ID] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, t := range l.byID {
		if keep[id] {
			continue
		}
		if t.healthy || (recovery >= 0 && now.Sub(t.lastBad) >= recovery) {
			delete(l.byID, id)
		}
	}
}
