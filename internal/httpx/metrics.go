package httpx

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MetricsPath is where the server serves its metrics, without
// authentication: keep it from the public (see docs/operations.md).
const MetricsPath = "/metrics"

// Metrics are the API server's Prometheus metrics, on a registry of their
// own. Labels are bounded: route templates (never raw paths), the methods
// the API knows, status codes; never an ID.
type Metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics returns the server's metrics, with the Go runtime's and the
// process's on the same registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backtestd_http_requests_total",
			Help: "HTTP requests answered, by route template, method and status code (499: the client went away first).",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "backtestd_http_request_duration_seconds",
			Help:    "How long HTTP requests took to answer, by route template and method.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
	}
	m.registry.MustRegister(m.requests, m.duration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// noRoute labels the requests no route matched (404s, 405s): their paths
// are whatever a client or a scanner made up.
const noRoute = "none"

// observe counts one answered request. It is nil-safe: a server built
// without metrics counts nothing.
func (m *Metrics) observe(route, method string, status int, took time.Duration) {
	if m == nil {
		return
	}
	if route == "" {
		route = noRoute
	}
	method = methodLabel(method)
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route, method).Observe(took.Seconds())
}

// methodLabel keeps a client's method out of the labels unless it is one
// of HTTP's own: any token is a valid method, and each would be a series.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	default:
		return "other"
	}
}
