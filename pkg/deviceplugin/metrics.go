package deviceplugin

import (
	"regexp"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the plugin's Prometheus series, on a registry of its own.
type metrics struct {
	reg           *prometheus.Registry
	devices       *prometheus.GaugeVec
	registered    *prometheus.GaugeVec
	registrations *prometheus.CounterVec
	allocations   *prometheus.CounterVec
	allocated     *prometheus.CounterVec
	preferred     *prometheus.HistogramVec
	allocate      *prometheus.HistogramVec
	xids          *prometheus.CounterVec
	health        *prometheus.CounterVec
}

func newMetrics() *metrics {
	// From 10µs to about 0.7s: GetPreferredAllocation should answer in
	// microseconds, and a slow one is what the histogram is for.
	latencyBuckets := prometheus.ExponentialBuckets(10e-6, 4, 9)
	m := &metrics{
		reg: prometheus.NewRegistry(),
		devices: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "slipway_device_plugin_devices",
			Help: "Devices advertised, by resource and health (Healthy, Unhealthy).",
		}, []string{"resource", "health"}),
		registered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "slipway_device_plugin_registered",
			Help: "1 when the resource is registered with the kubelet, 0 otherwise.",
		}, []string{"resource"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slipway_device_plugin_registrations_total",
			Help: "Registrations with the kubelet, by resource and result (ok, error).",
		}, []string{"resource", "result"}),
		allocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slipway_device_plugin_allocations_total",
			Help: "Container allocations answered, by resource and result (ok, error).",
		}, []string{"resource", "result"}),
		allocated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slipway_device_plugin_allocated_devices_total",
			Help: "Devices handed to containers, by resource.",
		}, []string{"resource"}),
		preferred: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "slipway_device_plugin_preferred_allocation_seconds",
			Help:    "GetPreferredAllocation latency, by resource.",
			Buckets: latencyBuckets,
		}, []string{"resource"}),
		allocate: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "slipway_device_plugin_allocate_seconds",
			Help:    "Allocate latency, by resource.",
			Buckets: latencyBuckets,
		}, []string{"resource"}),
		xids: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slipway_device_plugin_xid_errors_total",
			Help: "GPU XID errors that took a GPU out of service (health events with an XID reason), by XID code.",
		}, []string{"xid"}),
		health: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slipway_device_plugin_health_events_total",
			Help: "Device health changes received, by new health (Healthy, Unhealthy).",
		}, []string{"health"}),
	}
	m.reg.MustRegister(m.devices, m.registered, m.registrations, m.allocations, m.allocated,
		m.preferred, m.allocate, m.xids, m.health,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
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
