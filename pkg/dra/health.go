package dra

import (
	"context"
	"slices"
	"time"

	"k8s.io/dynamic-resource-allocation/kubeletplugin"
)

// WatchHealthStatus streams device health to the kubelet: a full report of
// every published device (and of every prepared device that has since
// disappeared, as unhealthy) at once, again on every change, and again every
// HealthResend when nothing changed, so that the kubelet never lets a
// device decay to Unknown while the driver runs. It returns nil when ctx is
// done.
func (d *Driver) WatchHealthStatus(ctx context.Context, reports chan<- kubeletplugin.DeviceHealthReport) error {
	changed := make(chan struct{}, 1)
	d.mu.Lock()
	d.watchers[changed] = struct{}{}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.watchers, changed)
		d.mu.Unlock()
	}()
	resend := time.NewTicker(d.cfg.HealthResend)
	defer resend.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case reports <- d.healthReport():
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-resend.C:
		}
	}
}

// healthReport is the full report of now.
func (d *Driver) healthReport() kubeletplugin.DeviceHealthReport {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	var r kubeletplugin.DeviceHealthReport
	seen := map[string]bool{}
	if d.inv != nil {
		for _, e := range d.inv.entries {
			h := d.health[e.dev.ID]
			dh := kubeletplugin.DeviceHealth{
				PoolName: d.cfg.NodeName, DeviceName: e.name, Health: kubeletplugin.HealthStatusHealthy,
				LastUpdated: now, HealthCheckTimeout: d.cfg.HealthTimeout,
			}
			if !h.healthy {
				dh.Health, dh.Message = kubeletplugin.HealthStatusUnhealthy, h.reason
			}
			r.Devices = append(r.Devices, dh)
			seen[e.name] = true
		}
	}
	var gone []kubeletplugin.DeviceHealth
	for _, pc := range d.claims {
		for _, pd := range pc.Devices {
			if seen[pd.Device] || d.inv == nil {
				continue
			}
			seen[pd.Device] = true
			gone = append(gone, kubeletplugin.DeviceHealth{
				PoolName: pd.Pool, DeviceName: pd.Device, Health: kubeletplugin.HealthStatusUnhealthy,
				LastUpdated: now, HealthCheckTimeout: d.cfg.HealthTimeout,
				Message: "device " + pd.DeviceID + " is no longer on the node",
			})
		}
	}
	slices.SortFunc(gone, func(a, b kubeletplugin.DeviceHealth) int {
		if a.DeviceName < b.DeviceName {
			return -1
		}
		if a.DeviceName > b.DeviceName {
			return 1
		}
		return 0
	})
	r.Devices = append(r.Devices, gone...)
	return r
}

// notifyLocked tells every health stream that something changed.
func (d *Driver) notifyLocked() {
	for c := range d.watchers {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}
