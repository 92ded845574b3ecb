package server

import (
	"context"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/rules"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// outboxCollector exposes the outbox's counters, what waits in the store
// and what the store's commits cost.
func outboxCollector(e *delivery.Engine, st store.Store) prometheus.Collector {
	return &outbox{e: e, st: st}
}

type outbox struct {
	e  *delivery.Engine
	st store.Store
}

var (
	descAccepted    = prometheus.NewDesc("wxreply_replies_enqueued_total", "Messages recorded in the outbox by this instance (rule replies and pushes).", nil, nil)
	descDelivered   = prometheus.NewDesc("wxreply_replies_delivered_total", "Messages WeChat accepted.", nil, nil)
	descFailed      = prometheus.NewDesc("wxreply_replies_failed_total", "Messages that ended failed, by reason (the log line has the detail).", []string{"reason"}, nil)
	descRetried     = prometheus.NewDesc("wxreply_replies_retried_total", "Tries parked in the store for a retry.", nil, nil)
	descOutOfWindow = prometheus.NewDesc("wxreply_replies_out_of_window_total", "Messages not sent because the user's 48-hour window was closed.", nil, nil)
	descQuotaPauses = prometheus.NewDesc("wxreply_quota_pauses_total", "Times WeChat's 45009 (daily quota spent) paused sending for the account.", nil, nil)
	descPending     = prometheus.NewDesc("wxreply_outbox_pending", "Messages in the outbox not yet delivered or failed, over every instance on the store; -1 when the store cannot be read.", nil, nil)
	descInFlight    = prometheus.NewDesc("wxreply_replies_in_flight", "Send calls under way now.", nil, nil)
	descHealthy     = prometheus.NewDesc("wxreply_store_writable", "1 while the store can be written, 0 while callbacks are answered 503.", nil, nil)
	descCommits     = prometheus.NewDesc("wxreply_store_commits_total", "Store transactions committed.", nil, nil)
	descCommitOps   = prometheus.NewDesc("wxreply_store_operations_total", "Store operations, grouped into the commits.", nil, nil)
	descCommitFail  = prometheus.NewDesc("wxreply_store_commit_failures_total", "Store transactions that failed.", nil, nil)
	descCommitTime  = prometheus.NewDesc("wxreply_store_commit_seconds_total", "Time spent in store transactions.", nil, nil)
	descCommitHist  = prometheus.NewDesc("wxreply_store_transaction_duration_seconds", "How long store transactions took; callbacks wait for theirs.", nil, nil)
)

func (c *outbox) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAccepted, descDelivered, descFailed, descRetried, descOutOfWindow,
		descQuotaPauses, descPending, descInFlight, descHealthy, descCommits, descCommitOps, descCommitFail, descCommitTime, descCommitHist} {
		ch <- d
	}
}

func (c *outbox) Collect(ch chan<- prometheus.Metric) {
	s := c.e.Stats()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter(descAccepted, float64(s.Accepted))
	counter(descDelivered, float64(s.Delivered))
	for reason, n := range s.FailedByReason {
		counter(descFailed, float64(n), reason)
	}
	counter(descRetried, float64(s.Retried))
	counter(descOutOfWindow, float64(s.OutOfWindow))
	counter(descQuotaPauses, float64(s.QuotaPauses))
	gauge(descInFlight, float64(s.InFlight))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pending, err := c.st.Pending(ctx)
	if err != nil {
		pending = -1
	}
	gauge(descPending, float64(pending))
	healthy := 1.0
	if c.st.Healthy() != nil {
		healthy = 0
	}
	gauge(descHealthy, healthy)
	ss := c.st.Stats()
	counter(descCommits, float64(ss.Commits))
	counter(descCommitOps, float64(ss.Ops))
	counter(descCommitFail, float64(ss.CommitFailed))
	counter(descCommitTime, ss.CommitSeconds)
	buckets := make(map[float64]uint64, len(store.CommitBounds))
	var n uint64
	for i, b := range store.CommitBounds {
		n += uint64(ss.CommitBuckets[i])
		buckets[b.Seconds()] = n
	}
	n += uint64(ss.CommitBuckets[len(store.CommitBounds)])
	ch <- prometheus.MustNewConstHistogram(descCommitHist, n, ss.CommitSeconds, buckets)
}

// rulesCollector exposes how many rules are in force, so a reload that
// was refused (the count stays) or emptied the file shows on a dashboard.
func rulesCollector(engine *rules.Engine) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wxreply_rules",
		Help: "Rules in force, from the last rules file that loaded.",
	}, func() float64 {
		if s := engine.Current(); s != nil {
			return float64(s.Len())
		}
		return 0
	})
}

// urlWithoutPassword is spec with a URL's password replaced.
func urlWithoutPassword(spec string) (string, error) {
	u, err := url.Parse(spec)
	if err != nil || u.Scheme == "" || u.User == nil {
		return spec, err
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "REDACTED")
	}
	return u.String(), nil
}

// tokenCollector exposes the access token's figures.
func tokenCollector(c *wechat.Client) prometheus.Collector { return tokens{c} }

type tokens struct{ c *wechat.Client }

var (
	descTokenFetches  = prometheus.NewDesc("wxreply_token_fetches_total", "Access tokens fetched from WeChat by this instance.", nil, nil)
	descTokenFailures = prometheus.NewDesc("wxreply_token_fetch_failures_total", "Access token fetches that failed.", nil, nil)
	descTokenRefusals = prometheus.NewDesc("wxreply_token_refusals_total", "Calls WeChat answered with a token error (40001, 42001 …).", nil, nil)
	descTokenPaused   = prometheus.NewDesc("wxreply_token_paused", "1 while calls are paused because WeChat refuses the tokens it issued.", nil, nil)
)

func (t tokens) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTokenFetches, descTokenFailures, descTokenRefusals, descTokenPaused} {
		ch <- d
	}
}

func (t tokens) Collect(ch chan<- prometheus.Metric) {
	st := t.c.TokenStats()
	paused := 0.0
	if st.Paused {
		paused = 1
	}
	ch <- prometheus.MustNewConstMetric(descTokenFetches, prometheus.CounterValue, float64(st.Fetches))
	ch <- prometheus.MustNewConstMetric(descTokenFailures, prometheus.CounterValue, float64(st.FetchFailures))
	ch <- prometheus.MustNewConstMetric(descTokenRefusals, prometheus.CounterValue, float64(st.Refusals))
	ch <- prometheus.MustNewConstMetric(descTokenPaused, prometheus.GaugeValue, paused)
}
