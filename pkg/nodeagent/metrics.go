package nodeagent

import (
	"regexp"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slipway-dev/slipway/pkg/devices"
)

// metrics are the agent's own Prometheus series.
type metrics struct {
	rescans *prometheus.CounterVec
	health  *prometheus.CounterVec
	xids    *prometheus.CounterVec
	devices *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rescans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slipway_devices_discoveries_total",
			Help: "Device discoveries (start, rescans, reloads), by result (ok, error).",
		}, []string{"result"}),
		health: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slipway_devices_health_events_total",
			Help: "Device health changes, by new health (healthy, unhealthy).",
		}, []string{"health"}),
		xids: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slipway_devices_xid_errors_total",
			Help: "GPU XID errors that took a GPU out of service, by XID code.",
		}, []string{"xid"}),
		devices: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "slipway_devices",
			Help: "Discovered devices, by kind and health (healthy, unhealthy).",
		}, []string{"kind", "health"}),
	}
	reg.MustRegister(m.rescans, m.health, m.xids, m.devices)
	return m
}

// countEvent counts a health change, and its XID if it has one.
func (m *metrics) countEvent(ev devices.HealthEvent) {
	if ev.Healthy {
		m.health.WithLabelValues("healthy").Inc()
		return
	}
	m.health.WithLabelValues("unhealthy").Inc()
	if xid, ok := xidOf(ev.Reason); ok {
		m.xids.WithLabelValues(xid).Inc()
	}
}

// setDevices sets the device gauges from the devices now.
func (m *metrics) setDevices(devs []devices.Device) {
	m.devices.Reset()
	for _, d := range devs {
		h := "healthy"
		if !d.Healthy {
			h = "unhealthy"
		}
		m.devices.WithLabelValues(string(d.Kind), h).Inc()
	}
}

// xidPattern finds an XID code in a health event's reason ("xid 79",
// "XID=48: double bit ECC").
var xidPattern = regexp.MustCompile(`(?i)\bxid[\s=:]*(\d+)`)

// xidOf returns the XID code in reason, if any.
func xidOf(reason string) (string, bool) {
	m := xidPattern.FindStringSubmatch(reason)
	if m == nil {
		return "", false
	}
	if _, err := strconv.ParseUint(m[1], 10, 64); err != nil {
		return "", false
	}
	return m[1], true
}
