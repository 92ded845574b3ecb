package handlers

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is what GET /metrics exposes, in Prometheus' text format: HTTP
// requests by route and status, and whatever the parts behind the server
// register (the outbox and the store, the rules in force). Expose it only to
// your own network, like /api/v1.
type Metrics struct {
	Registry *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	refused  *prometheus.CounterVec
}

// Reasons a callback is refused, the label values of
// wxreply_callbacks_refused_total.
const (
	RefusedStale     = "stale"     // timestamp outside WXREPLY_MAX_CLOCK_SKEW
	RefusedPlaintext = "plaintext" // a plaintext body with an EncodingAESKey configured
	RefusedReused    = "reused"    // a signed query already used for another body
	RefusedSource    = "source"    // from outside WXREPLY_ALLOW_FROM
)

// refuse counts a refused callback; a nil Metrics counts nothing.
func (m *Metrics) refuse(reason string) {
	if m != nil {
		m.refused.WithLabelValues(reason).Inc()
	}
}

// NewMetrics returns a registry with the Go runtime and process
// collectors and the HTTP request metrics, which New fills in.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wxreply_http_requests_total",
			Help: "HTTP requests answered, by route and status code.",
		}, []string{"method", "route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wxreply_http_request_duration_seconds",
			Help: "Time to answer an HTTP request, by route. WeChat waits 5 seconds.",
			// Callbacks are answered in well under a millisecond; the top
			// buckets show anything near WeChat's deadline.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5},
		}, []string{"method", "route"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wxreply_callbacks_refused_total",
			Help: "Signed callbacks refused with 403, by reason: stale (check the clock), plaintext, reused, source.",
		}, []string{"reason"}),
	}
	for _, r := range []string{RefusedStale, RefusedPlaintext, RefusedReused, RefusedSource} {
		m.refused.WithLabelValues(r) // each reason shows from the start, at 0
	}
	m.Registry.MustRegister(m.requests, m.latency, m.refused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// instrument counts and times every request by its route pattern (not
// its path, so unknown paths cannot grow the label set).
func (m *Metrics) instrument() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			status := c.Response().Status
			var he *echo.HTTPError
			if err != nil && !c.Response().Committed {
				status = http.StatusInternalServerError
				if errors.As(err, &he) {
					status = he.Code
				}
			}
			method := methodLabel(c.Request().Method)
			m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
			m.latency.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
			return err
		}
	}
}

func (m *Metrics) handler() echo.HandlerFunc {
	return echo.WrapHandler(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
}

// methodLabel bounds the method label: anyone can send a request with a
// method of their own invention, and each would be a new series.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}
