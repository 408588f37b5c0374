package provision

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the orchestrator's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	nodes    *prometheus.GaugeVec
	phaseDur *prometheus.HistogramVec
	bmcDur   *prometheus.HistogramVec
	bmcErrs  *prometheus.CounterVec
	retries  *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg:
// slipway_provision_nodes{phase}, slipway_provision_phase_duration_seconds{phase},
// slipway_provision_bmc_call_duration_seconds{call},
// slipway_provision_bmc_call_errors_total{call} and
// slipway_provision_retries_total{what}.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "slipway_provision_nodes", Help: "Nodes in each provisioning phase.",
		}, []string{"phase"}),
		phaseDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "slipway_provision_phase_duration_seconds", Help: "Time nodes spent in each phase.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 16),
		}, []string{"phase"}),
		bmcDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "slipway_provision_bmc_call_duration_seconds", Help: "Latency of BMC calls.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"call"}),
		bmcErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slipway_provision_bmc_call_errors_total", Help: "BMC calls that failed.",
		}, []string{"call"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slipway_provision_retries_total", Help: "Retries: BMC calls retried and extra power cycles.",
		}, []string{"what"}),
	}
	for _, c := range []prometheus.Collector{m.nodes, m.phaseDur, m.bmcDur, m.bmcErrs, m.retries} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, p := range phases {
		m.nodes.WithLabelValues(string(p)).Set(0)
	}
	return m, nil
}

func (m *Metrics) setPhase(from, to Phase) {
	if m == nil {
		return
	}
	if from != "" {
		m.nodes.WithLabelValues(string(from)).Dec()
	}
	m.nodes.WithLabelValues(string(to)).Inc()
}

func (m *Metrics) phaseDone(p Phase, d time.Duration) {
	if m == nil {
		return
	}
	m.phaseDur.WithLabelValues(string(p)).Observe(d.Seconds())
}

func (m *Metrics) bmcCall(call string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.bmcDur.WithLabelValues(call).Observe(d.Seconds())
	if err != nil {
		m.bmcErrs.WithLabelValues(call).Inc()
	}
}

func (m *Metrics) retry(what string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(what).Inc()
}
