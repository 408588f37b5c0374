package deviceplugin

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the plugin's Prometheus series.
type metrics struct {
	reg           *prometheus.Registry
	devices       *prometheus.GaugeVec
	registered    *prometheus.GaugeVec
	registrations *prometheus.CounterVec
	allocations   *prometheus.CounterVec
	allocated     *prometheus.CounterVec
	preferred     *prometheus.HistogramVec
	allocate      *prometheus.HistogramVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	// From 10µs to about 0.7s: GetPreferredAllocation should answer in
	// microseconds, and a slow one is what the histogram is for.
	latencyBuckets := prometheus.ExponentialBuckets(10e-6, 4, 9)
	m := &metrics{
		reg: reg,
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
			Help: "Register calls to the kubelet, by resource and result (ok; already_connected, counted as registered; error).",
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
	}
	reg.MustRegister(m.devices, m.registered, m.registrations, m.allocations, m.allocated, m.preferred, m.allocate)
	return m
}
