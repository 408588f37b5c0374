package httpboot

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Request kinds, the "kind" label of the metrics.
const (
	kindScript    = "script"
	kindKernel    = "kernel"
	kindInitrd    = "initrd"
	kindAsset     = "asset"
	kindFirmware  = "firmware"
	kindConfig    = "config"
	kindPhoneHome = "phone_home"
	kindOther     = "other"
)

type metrics struct {
	requests *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slipway_boot_http_requests_total",
			Help: "Boot HTTP requests by kind and status code.",
		}, []string{"kind", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slipway_boot_http_response_bytes_total",
			Help: "Boot HTTP response body bytes sent, by kind.",
		}, []string{"kind"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "slipway_boot_http_request_duration_seconds",
			Help:    "Boot HTTP request durations, by kind.",
			Buckets: []float64{.001, .005, .025, .1, .5, 1, 2.5, 10, 30, 120},
		}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.bytes, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(kind string, code int, n int64, d time.Duration) {
	m.requests.WithLabelValues(kind, strconv.Itoa(code)).Inc()
	m.bytes.WithLabelValues(kind).Add(float64(n))
	m.duration.WithLabelValues(kind).Observe(d.Seconds())
}

// countingWriter counts the body bytes and keeps the status. It implements
// io.ReaderFrom so a file body still goes out with sendfile.
type countingWriter struct {
	http.ResponseWriter
	code int
	n    int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(w.ResponseWriter, r)
	}
	w.n += n
	return n, err
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *countingWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
