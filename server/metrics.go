package server

import (
	"context"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/handlers"
	"github.com/wxreply/wxreply/rules"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// webhookCalls counts the calls of webhook reply items by rule (bounded
// by the rules file) and outcome (Webhook*: a fixed set).
func webhookCalls() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wxreply_webhook_calls_total",
		Help: "Calls of webhook reply items, by rule and outcome (ok, timeout, status, invalid, error); all but ok sent the rule's fallback.",
	}, []string{"rule", "outcome"})
}

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
	descCommits     = prometheus.NewDesc("wxreply_store_commits_total", "Store batches made durable: committed, or written to the embedded store's journal.", nil, nil)
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

// rulesCollector exposes the rules in force — how many, which version
// (wxreply_rules_info{hash}, one series: instances that disagree show a
// reload refused on some), when they last loaded and how many reloads were
// refused — and how often each rule answered.
//
// wxreply_rule_matches_total has one series per rule in force (and
// "default" when the file has one), each from 0, so its labels are bounded
// by the rules file, which the operator writes. A rule a reload removes
// loses its series at the next scrape (Prometheus marks it stale); a rule
// a reload keeps, by name, keeps counting; a renamed rule starts again
// from 0 under its new name.
func rulesCollector(engine *rules.Engine) prometheus.Collector { return rulesMetrics{engine} }

type rulesMetrics struct{ e *rules.Engine }

var (
	descRules         = prometheus.NewDesc("wxreply_rules", "Rules in force, from the last rules file that loaded.", nil, nil)
	descRulesInfo     = prometheus.NewDesc("wxreply_rules_info", "The rules in force, by the content hash the \"rules loaded\" log line gives; always 1.", []string{"hash"}, nil)
	descRulesFailures = prometheus.NewDesc("wxreply_rules_reload_failures_total", "Reloads of the rules file refused for its problems (logged), each keeping the rules in force.", nil, nil)
	descRulesLastLoad = prometheus.NewDesc("wxreply_rules_last_reload_success_timestamp_seconds", "When the rules file last loaded (at start, or a reload, an unchanged file's too), in Unix seconds.", nil, nil)
	descRuleMatches   = prometheus.NewDesc("wxreply_rule_matches_total", "Messages each rule in force answered (\"default\": the default reply); a WeChat retry recognised is not counted again.", []string{"rule"}, nil)
	descNoRuleMatched = prometheus.NewDesc("wxreply_no_rule_matched_total", "Messages no rule answered, nor the default (events it does not answer, or a file without one).", nil, nil)
)

func (c rulesMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRules, descRulesInfo, descRulesFailures, descRulesLastLoad, descRuleMatches, descNoRuleMatched} {
		ch <- d
	}
}

func (c rulesMetrics) Collect(ch chan<- prometheus.Metric) {
	s := c.e.Stats()
	ch <- prometheus.MustNewConstMetric(descRules, prometheus.GaugeValue, float64(s.Rules))
	ch <- prometheus.MustNewConstMetric(descRulesInfo, prometheus.GaugeValue, 1, s.Hash)
	ch <- prometheus.MustNewConstMetric(descRulesFailures, prometheus.CounterValue, float64(s.ReloadFailures))
	ch <- prometheus.MustNewConstMetric(descRulesLastLoad, prometheus.GaugeValue, unixSeconds(s.LastSuccess))
	for rule, n := range s.Matches {
		ch <- prometheus.MustNewConstMetric(descRuleMatches, prometheus.CounterValue, float64(n), rule)
	}
	ch <- prometheus.MustNewConstMetric(descNoRuleMatched, prometheus.CounterValue, float64(s.NoMatch))
}

// sending remembers how this instance's sends ended lately, from the
// outbox's OnResult: the operator's signal that WeChat is not taking
// messages, which /healthz's status deliberately is not (see healthz).
// Deliveries are the hot path, so they only store a time and a zero.
type sending struct {
	now          func() time.Time
	lastDelivery atomic.Int64 // Unix nanoseconds; 0: none since the start
	inARow       atomic.Int64 // failures since the last delivery

	mu          sync.Mutex
	lastFailure time.Time
	reason      string
	errcode     int
}

var descLastDelivery = prometheus.NewDesc("wxreply_last_delivery_timestamp_seconds",
	"When this instance last had a message accepted by WeChat, in Unix seconds; 0 until its first. Alert when it grows old while wxreply_outbox_pending is above 0.", nil, nil)

// observe returns the OnResult that records r and then calls next (a
// test's hook), when there is one.
func (s *sending) observe(next func(delivery.Result)) func(delivery.Result) {
	return func(r delivery.Result) {
		s.record(r)
		if next != nil {
			next(r)
		}
	}
}

func (s *sending) record(r delivery.Result) {
	now := s.now()
	if r.Delivered {
		s.lastDelivery.Store(now.UnixNano())
		s.inARow.Store(0)
		return
	}
	s.inARow.Add(1)
	s.mu.Lock()
	s.lastFailure, s.reason, s.errcode = now, r.Reason, r.ErrCode
	s.mu.Unlock()
}

func (s *sending) Describe(ch chan<- *prometheus.Desc) { ch <- descLastDelivery }

func (s *sending) Collect(ch chan<- prometheus.Metric) {
	v := 0.0
	if ns := s.lastDelivery.Load(); ns != 0 {
		v = float64(ns) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(descLastDelivery, prometheus.GaugeValue, v)
}

// healthReport builds what GET /healthz?verbose=1 shows.
func healthReport(engine *rules.Engine, st store.Store, outbox *delivery.Engine, client *wechat.Client, sent *sending) func(context.Context) handlers.HealthReport {
	return func(ctx context.Context) handlers.HealthReport {
		var r handlers.HealthReport
		if err := st.Healthy(); err != nil {
			r.Store.Error = err.Error()
		} else {
			r.Store.Writable = true
		}
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		pending, err := st.Pending(ctx)
		if err != nil {
			pending = -1
		}
		r.Store.Pending = pending

		rs := engine.Stats()
		r.Rules = handlers.RulesHealth{Hash: rs.Hash, Count: rs.Rules, LoadedAt: timeOrNil(rs.LoadedAt),
			ReloadFailures: rs.ReloadFailures, LastFailureAt: timeOrNil(rs.LastFailure)}

		r.Sending.InFlight = outbox.Stats().InFlight
		r.Sending.TokenPaused = client.TokenStats().Paused
		if ns := sent.lastDelivery.Load(); ns != 0 {
			r.Sending.LastDeliveryAt = timeOrNil(time.Unix(0, ns))
		}
		r.Sending.FailuresInARow = sent.inARow.Load()
		sent.mu.Lock()
		r.Sending.LastFailureAt = timeOrNil(sent.lastFailure)
		r.Sending.LastFailure, r.Sending.LastFailureCode = sent.reason, sent.errcode
		sent.mu.Unlock()
		return r
	}
}

// timeOrNil is t in UTC, nil for the zero time (left out of the JSON).
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// unixSeconds is t in Unix seconds, 0 for the zero time.
func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
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
