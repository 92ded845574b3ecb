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

	"github.com/wxreply/wxreply/wechat"
)

// Metrics is what GET /metrics exposes, in Prometheus' text format: HTTP
// requests by route and status, and whatever the parts behind the server
// register (the Sender's counters, the rules in force). Expose it only to
// your own network, like /api/v1.
type Metrics struct {
	Registry *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
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
	}
	m.Registry.MustRegister(m.requests, m.latency,
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
			method := c.Request().Method
			m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
			m.latency.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
			return err
		}
	}
}

func (m *Metrics) handler() echo.HandlerFunc {
	return echo.WrapHandler(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
}

// SenderCollector exposes a Sender's counters: what was accepted, how
// each message ended, and what is waiting now.
func SenderCollector(stats func() wechat.Stats) prometheus.Collector {
	return &senderCollector{stats: stats}
}

type senderCollector struct {
	stats func() wechat.Stats
}

var (
	descEnqueued    = prometheus.NewDesc("wxreply_replies_enqueued_total", "Messages accepted for sending (rule replies and pushes).", nil, nil)
	descRejected    = prometheus.NewDesc("wxreply_replies_rejected_total", "Messages refused at the queue: full, closed or invalid.", nil, nil)
	descDelivered   = prometheus.NewDesc("wxreply_replies_delivered_total", "Messages WeChat accepted.", nil, nil)
	descFailed      = prometheus.NewDesc("wxreply_replies_failed_total", "Messages that ended failed, with the reason in the log; includes out-of-window and shutdown.", nil, nil)
	descRetried     = prometheus.NewDesc("wxreply_replies_retried_total", "Send attempts after the first.", nil, nil)
	descOutOfWindow = prometheus.NewDesc("wxreply_replies_out_of_window_total", "Messages not sent because the user's 48-hour window was closed.", nil, nil)
	descQueued      = prometheus.NewDesc("wxreply_replies_queued", "Messages waiting to be sent.", nil, nil)
	descInFlight    = prometheus.NewDesc("wxreply_replies_in_flight", "Messages being sent now.", nil, nil)
)

func (c *senderCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEnqueued, descRejected, descDelivered, descFailed, descRetried, descOutOfWindow, descQueued, descInFlight} {
		ch <- d
	}
}

func (c *senderCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter(descEnqueued, st.Enqueued)
	counter(descRejected, st.Rejected)
	counter(descDelivered, st.Delivered)
	counter(descFailed, st.Failed)
	counter(descRetried, st.Retried)
	counter(descOutOfWindow, st.OutOfWindow)
	gauge(descQueued, st.Queued)
	gauge(descInFlight, st.InFlight)
}
