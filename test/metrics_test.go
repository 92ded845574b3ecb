package test

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wxreply/wxreply/server"
	"github.com/wxreply/wxreply/wechat"
)

// The dashboard shipped in deploy/grafana, which every query of must find
// its metric in /metrics.
var dashboardPath = filepath.Join("..", "deploy", "grafana", "wxreply-dashboard.json")

// TestDashboardMetricsExported: every metric the Grafana dashboard's
// queries use (its panels, annotations and variables) is one the real
// server exports, once it has taken a callback, delivered a reply, failed
// one and refused a push request for its rate, so that a renamed metric
// cannot leave a panel blank. The dashboard's queries go to the
// datasource variable, not to a datasource of the author's Grafana.
func TestDashboardMetricsExported(t *testing.T) {
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	checkDatasources(t, dash)
	queries := dashboardQueries(dash)
	if len(queries) < 15 {
		t.Fatalf("found %d queries in the dashboard: is the walk broken?", len(queries))
	}
	uses := map[string][]string{} // metric → the queries that use it
	for _, q := range queries {
		names := promqlMetricNames(q)
		if len(names) == 0 {
			t.Errorf("no metric found in the query %q", q)
		}
		for _, n := range names {
			uses[n] = append(uses[n], q)
		}
	}

	h := newHarness(t, harnessOptions{config: func(c *server.Config) { c.APIRate = 1 }})
	h.api.FailNext(wechat.PathCustomSend, wechat.ErrCodeOverCountCap, 1)
	if code, body := h.post(t, text("oDASH_user_1", "hi", 970001)); code != 200 {
		t.Fatalf("callback answered %d %q", code, body)
	}
	waitFor(t, 10*time.Second, func() bool { return h.outbox().Stats().Failed == 1 },
		func() string { return "the failing send did not end: " + statsString(h.outbox().Stats()) })
	if code, body := h.post(t, text("oDASH_user_2", "hi", 970002)); code != 200 {
		t.Fatalf("callback answered %d %q", code, body)
	}
	h.waitDelivered(t, 1)
	h.idle(t)
	limited := false
	for range 5 { // WXREPLY_API_RATE 1 lets a burst of 2 through
		if code, _ := h.do(t, "GET", "/api/v1/messages/no-such-id", ""); code == http.StatusTooManyRequests {
			limited = true
		}
	}
	if !limited {
		t.Fatal("the push API never answered 429: the 429 metric was not exercised")
	}

	exported := exportedMetricNames(t, h.url)
	var missing []string
	for name := range uses {
		if !exported[name] {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	for _, name := range missing {
		t.Errorf("the dashboard uses %s, which /metrics does not export; in:\n  %s", name, strings.Join(uses[name], "\n  "))
	}
}

// checkDatasources fails for any datasource in the dashboard that is
// neither the datasource variable nor Grafana's own (annotations), and
// when the variable is not a Prometheus one.
func checkDatasources(t *testing.T, dash any) {
	t.Helper()
	found := false
	for _, v := range nodesAt(dash, "templating", "list") {
		if m, ok := v.(map[string]any); ok && m["name"] == "datasource" {
			found = m["type"] == "datasource" && m["query"] == "prometheus"
		}
	}
	if !found {
		t.Error(`the dashboard has no Prometheus datasource variable named "datasource"`)
	}
	walkJSON(dash, func(key string, v any) {
		if key != "datasource" {
			return
		}
		ds, ok := v.(map[string]any)
		if !ok {
			return // the variable's own definition is a string
		}
		if ds["uid"] != "${datasource}" && ds["type"] != "grafana" {
			t.Errorf("a datasource is %v, not the ${datasource} variable", ds)
		}
	})
}

// dashboardQueries returns every PromQL expression of the dashboard —
// panel targets and annotations (key "expr") — and the metric of each
// label_values() variable, which is one too.
func dashboardQueries(dash any) []string {
	var out []string
	walkJSON(dash, func(key string, v any) {
		s, ok := v.(string)
		switch {
		case !ok:
		case key == "expr":
			out = append(out, s)
		case key == "query" && strings.HasPrefix(s, "label_values("):
			// label_values(METRIC, LABEL) or label_values(LABEL)
			args := strings.TrimSuffix(strings.TrimPrefix(s, "label_values("), ")")
			if metric, _, ok := strings.Cut(args, ","); ok {
				out = append(out, strings.TrimSpace(metric))
			}
		}
	})
	return out
}

// walkJSON calls f with every key and value under v, depth first.
func walkJSON(v any, f func(key string, v any)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			f(k, e)
			walkJSON(e, f)
		}
	case []any:
		for _, e := range v {
			walkJSON(e, f)
		}
	}
}

// nodesAt is the array at the path of object keys under v.
func nodesAt(v any, path ...string) []any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	a, _ := v.([]any)
	return a
}

// promqlKeywords are PromQL's words that are neither functions nor
// metrics: binary operators, modifiers and the number literals.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "atan2": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true,
}

// promqlAggregations take their grouping clause before the parenthesis
// (sum by (x) (…)), so they are not always followed by one.
var promqlAggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// promqlMetricNames returns the metric names expr selects, as the
// samples of /metrics name them (a histogram's _bucket, _sum and _count
// included), each once. It strips what is not a metric: string literals
// and label matchers, ranges and subqueries, Grafana's $variables,
// numbers and durations, functions and aggregations, the grouping lists
// of by, without, on, ignoring, group_left and group_right, and the
// operators' keywords.
func promqlMetricNames(expr string) []string {
	var names []string
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
	}
	nextNonSpace := func(i int) int {
		for i < len(expr) && strings.IndexByte(" \t\r\n", expr[i]) >= 0 {
			i++
		}
		return i
	}
	skipTo := func(i int, open, close byte) int { // i at open; returns after its close
		depth := 0
		for ; i < len(expr); i++ {
			switch c := expr[i]; {
			case c == '"' || c == '\'' || c == '`':
				i = skipString(expr, i) - 1
			case c == open:
				depth++
			case c == close:
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(expr, i)
		case c == '{':
			i = skipTo(i, '{', '}')
		case c == '[':
			i = skipTo(i, '[', ']')
		case c == '#': // a comment, to the end of the line
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '$': // a Grafana variable: $name or ${name}
			i++
			if i < len(expr) && expr[i] == '{' {
				i = skipTo(i, '{', '}')
			}
			for i < len(expr) && isIdent(expr[i], false) {
				i++
			}
		case '0' <= c && c <= '9' || c == '.': // a number or a duration: 0.99, 1e3, 5m, 0x1f
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.') {
				i++
			}
		case isIdent(c, true):
			start := i
			for i < len(expr) && isIdent(expr[i], false) {
				i++
			}
			word := expr[start:i]
			next := nextNonSpace(i)
			followedByParen := next < len(expr) && expr[next] == '('
			lower := strings.ToLower(word)
			switch {
			case lower == "by" || lower == "without" || lower == "on" || lower == "ignoring" ||
				lower == "group_left" || lower == "group_right":
				if followedByParen {
					i = skipTo(next, '(', ')') // label names, not metrics
				}
			case promqlKeywords[lower], promqlAggregations[lower], followedByParen:
				// an operator, an aggregation or a function
			default:
				if !slices.Contains(names, word) {
					names = append(names, word)
				}
			}
		default:
			i++
		}
	}
	return names
}

// skipString returns the index just after the string literal at expr[i].
func skipString(expr string, i int) int {
	quote := expr[i]
	for i++; i < len(expr); i++ {
		switch expr[i] {
		case '\\':
			if quote != '`' {
				i++
			}
		case quote:
			return i + 1
		}
	}
	return i
}

func TestPromQLMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`rate(wxreply_http_requests_total{route="/wechat", code=~"5.."}[5m])`, []string{"wxreply_http_requests_total"}},
		{`sum by (code, route) (rate(a_total{x="sum(b)"}[$__rate_interval]))`, []string{"a_total"}},
		{`sum(rate(a_total[5m])) without (instance) / ignoring(reason) group_left(rule) b`, []string{"a_total", "b"}},
		{`histogram_quantile(0.99, sum by (le) (rate(d_seconds_bucket{job="$job"}[1m])))`, []string{"d_seconds_bucket"}},
		{`rate(d_seconds_sum[5m]) / rate(d_seconds_count[5m])`, []string{"d_seconds_sum", "d_seconds_count"}},
		{`time() - max(ts_seconds > 0) and on(instance) pending > bool 0`, []string{"ts_seconds", "pending"}},
		{`count by (h) (info) unless count by (h) (info offset 1m) or vector(0)`, []string{"info"}},
		{`max_over_time(up[1h:5m]) * 1e3 + ${var} + $__range_s`, []string{"up"}},
		{`label_replace(m, "dst", "$1", 'src', "(.*)")`, []string{"m"}},
		{"sum(a) # a comment naming b", []string{"a"}},
		{`{__name__="only_matchers"}`, nil},
	} {
		if got := promqlMetricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("promqlMetricNames(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

// exportedMetricNames returns the sample names of base's /metrics: a
// histogram's _bucket, _sum and _count, a counter's _total.
func exportedMetricNames(t *testing.T, base string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for key := range scrapeSamples(t, base) {
		name, _, _ := strings.Cut(key, "{")
		names[name] = true
	}
	return names
}

// scrapeSamples reads base's /metrics: each sample's value by its name
// and labels as the text format writes them (labels sorted by name).
func scrapeSamples(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("a sample that does not parse: %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// seriesOf returns the samples of the metric name, by their labels.
func seriesOf(samples map[string]float64, name string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range samples {
		if k == name {
			out[""] = v
		} else if labels, ok := strings.CutPrefix(k, name+"{"); ok {
			out["{"+labels] = v
		}
	}
	return out
}

const metricsRules = `rules:
  - name: greeting
    match: {text: {equals: [hi]}}
    reply: [{text: 你好}]
  - name: bye
    match: {text: {equals: [bye]}}
    reply: [{text: 再见}]
default:
  reply: [{text: 没听懂}]
`

// writeRulesFile replaces path with content the way editors and
// ConfigMaps do, a new file renamed over the old one, so that the watch
// sees one change and reloads once.
func writeRulesFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".rules.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestRulesMetrics: each rule in force has a match counter from 0, which
// counts the messages it answered once each (a WeChat retry is not counted
// again), and messages nothing answered are counted apart. A rules file
// with problems, saved, is refused: the failures count goes up by one and
// the rules in force — their hash, their load time — stay. A good file
// then comes in force: one info series with its hash, a later load time,
// the removed rule's series gone, a kept rule's count kept.
func TestRulesMetrics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeRulesFile(t, path, metricsRules)
	h := newHarness(t, harnessOptions{rules: path})

	s := scrapeSamples(t, h.url)
	hash1 := h.srv.Rules().Current().Hash()
	wantSeries(t, s, "wxreply_rules_info", map[string]float64{`{hash="` + hash1 + `"}`: 1})
	wantSeries(t, s, "wxreply_rule_matches_total", map[string]float64{
		`{rule="greeting"}`: 0, `{rule="bye"}`: 0, `{rule="default"}`: 0})
	wantValue(t, s, "wxreply_rules_reload_failures_total", 0)
	wantValue(t, s, "wxreply_no_rule_matched_total", 0)
	loaded1 := s["wxreply_rules_last_reload_success_timestamp_seconds"]
	if now := float64(time.Now().Unix()); loaded1 < now-60 || loaded1 > now+1 {
		t.Fatalf("wxreply_rules_last_reload_success_timestamp_seconds = %v, want about %v", loaded1, now)
	}

	first := text("oRULES_user_1", "hi", 971001)
	for _, body := range [][]byte{first, text("oRULES_user_1", "hi", 971002), text("oRULES_user_2", "bye", 971003),
		text("oRULES_user_2", "what?", 971004), event("oRULES_user_3", "unsubscribe", time.Now().Unix()),
		first} { // the last one is WeChat's retry of the first
		if code, answer := h.post(t, body); code != 200 {
			t.Fatalf("callback answered %d %q", code, answer)
		}
	}
	s = scrapeSamples(t, h.url)
	wantSeries(t, s, "wxreply_rule_matches_total", map[string]float64{
		`{rule="greeting"}`: 2, `{rule="bye"}`: 1, `{rule="default"}`: 1})
	wantValue(t, s, "wxreply_no_rule_matched_total", 1)

	writeRulesFile(t, path, "rules:\n  - name: broken\n    match: {text: {equals: [x]}}\n    reply: [{txet: oops}]\n")
	waitFor(t, 10*time.Second, func() bool {
		return scrapeSamples(t, h.url)["wxreply_rules_reload_failures_total"] >= 1
	}, func() string { return "the broken file was never refused; log:\n" + h.logs.String() })
	s = scrapeSamples(t, h.url)
	wantValue(t, s, "wxreply_rules_reload_failures_total", 1)
	wantSeries(t, s, "wxreply_rules_info", map[string]float64{`{hash="` + hash1 + `"}`: 1})
	wantValue(t, s, "wxreply_rules_last_reload_success_timestamp_seconds", loaded1)
	wantSeries(t, s, "wxreply_rule_matches_total", map[string]float64{
		`{rule="greeting"}`: 2, `{rule="bye"}`: 1, `{rule="default"}`: 1})

	writeRulesFile(t, path, strings.Replace(metricsRules, "name: bye", "name: farewell", 1))
	waitFor(t, 10*time.Second, func() bool { return h.srv.Rules().Current().Hash() != hash1 },
		func() string { return "the good file never came in force; log:\n" + h.logs.String() })
	hash2 := h.srv.Rules().Current().Hash()
	s = scrapeSamples(t, h.url)
	wantSeries(t, s, "wxreply_rules_info", map[string]float64{`{hash="` + hash2 + `"}`: 1})
	wantValue(t, s, "wxreply_rules_reload_failures_total", 1)
	if loaded2 := s["wxreply_rules_last_reload_success_timestamp_seconds"]; loaded2 <= loaded1 {
		t.Errorf("wxreply_rules_last_reload_success_timestamp_seconds = %v after the reload, was %v", loaded2, loaded1)
	}
	wantSeries(t, s, "wxreply_rule_matches_total", map[string]float64{
		`{rule="greeting"}`: 2, `{rule="farewell"}`: 0, `{rule="default"}`: 1})
}

// TestHealthzWhileWeChatFails: /healthz answers 200 while every send
// fails — readiness does not follow WeChat, whose outage would otherwise
// take every instance out of the balancer — and ?verbose=1 shows the
// operator what does: the last delivery, the failures in a row and their
// reason, what waits in the store. wxreply_last_delivery_timestamp_seconds
// carries the last delivery for alerts.
func TestHealthzWhileWeChatFails(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	report := func() (int, healthReport) {
		t.Helper()
		code, body := h.do(t, "GET", "/healthz?verbose=1", "")
		var r healthReport
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("GET /healthz?verbose=1: %d %q: %v", code, body, err)
		}
		return code, r
	}
	code, r := report()
	if code != 200 || r.Status != "ok" || !r.Store.Writable || r.Rules.Hash != h.srv.Rules().Current().Hash() ||
		r.Rules.Count == 0 || r.Rules.LoadedAt == nil || r.Sending.LastDeliveryAt != nil || r.Sending.FailuresInARow != 0 {
		t.Fatalf("at the start: %d %+v", code, r)
	}
	if v := scrapeSamples(t, h.url)["wxreply_last_delivery_timestamp_seconds"]; v != 0 {
		t.Errorf("wxreply_last_delivery_timestamp_seconds = %v before any delivery, want 0", v)
	}

	before := time.Now()
	if code, body := h.post(t, text("oHEALTH_user_1", "hi", 972001)); code != 200 {
		t.Fatalf("callback answered %d %q", code, body)
	}
	h.waitDelivered(t, 1)
	h.idle(t)
	_, r = report()
	if r.Sending.LastDeliveryAt == nil || r.Sending.LastDeliveryAt.Before(before.Add(-time.Second)) {
		t.Fatalf("after a delivery: %+v", r.Sending)
	}
	delivered := scrapeSamples(t, h.url)["wxreply_last_delivery_timestamp_seconds"]
	if delivered < float64(before.Unix()-1) || delivered > float64(time.Now().Unix()+1) {
		t.Errorf("wxreply_last_delivery_timestamp_seconds = %v, want between %d and now", delivered, before.Unix())
	}

	// Every send refused: the messages end failed, one after the other.
	h.api.FailNext(wechat.PathCustomSend, wechat.ErrCodeOverCountCap, 2)
	for i := range 2 {
		if code, body := h.post(t, text("oHEALTH_user_2", "hi", int64(972002+i))); code != 200 {
			t.Fatalf("callback answered %d %q", code, body)
		}
	}
	h.idle(t)
	code, r = report()
	if code != 200 || r.Status != "ok" || r.Sending.FailuresInARow != 2 || r.Sending.LastFailure != "over the count cap" ||
		r.Sending.LastFailureCode != wechat.ErrCodeOverCountCap || r.Sending.LastFailureAt == nil {
		t.Fatalf("after two failures: %d %+v", code, r)
	}

	// WeChat down: the message waits in the store, retried, and the
	// server still takes callbacks.
	h.api.FailHTTP(wechat.PathCustomSend, http.StatusBadGateway, 1_000_000)
	if code, body := h.post(t, text("oHEALTH_user_3", "hi", 972010)); code != 200 {
		t.Fatalf("callback answered %d %q", code, body)
	}
	waitFor(t, 10*time.Second, func() bool { return h.outbox().Stats().Retried > 0 },
		func() string { return "no retry: " + statsString(h.outbox().Stats()) })
	code, r = report()
	if code != 200 || r.Store.Pending != 1 || r.Sending.LastDeliveryAt == nil {
		t.Fatalf("while WeChat is down: %d %+v", code, r)
	}
	if code, body := h.do(t, "GET", "/healthz", ""); code != 200 || body != "ok\n" {
		t.Errorf("GET /healthz while WeChat is down: %d %q, want 200 \"ok\\n\"", code, body)
	}
	if v := scrapeSamples(t, h.url)["wxreply_last_delivery_timestamp_seconds"]; v != delivered {
		t.Errorf("wxreply_last_delivery_timestamp_seconds moved to %v with nothing delivered (was %v)", v, delivered)
	}
}

// healthReport is the JSON of GET /healthz?verbose=1, as a client reads it.
type healthReport struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Store  struct {
		Writable bool   `json:"writable"`
		Error    string `json:"error"`
		Pending  int    `json:"pending"`
	} `json:"store"`
	Rules struct {
		Hash           string     `json:"hash"`
		Count          int        `json:"count"`
		LoadedAt       *time.Time `json:"loaded_at"`
		ReloadFailures int64      `json:"reload_failures"`
	} `json:"rules"`
	Sending struct {
		LastDeliveryAt  *time.Time `json:"last_delivery_at"`
		FailuresInARow  int64      `json:"failures_in_a_row"`
		LastFailureAt   *time.Time `json:"last_failure_at"`
		LastFailure     string     `json:"last_failure_reason"`
		LastFailureCode int        `json:"last_failure_errcode"`
		InFlight        int64      `json:"in_flight"`
		TokenPaused     bool       `json:"token_paused"`
	} `json:"sending"`
}

func wantValue(t *testing.T, samples map[string]float64, name string, want float64) {
	t.Helper()
	if got, ok := samples[name]; !ok || got != want {
		t.Errorf("%s = %v (exported: %v), want %v", name, got, ok, want)
	}
}

// wantSeries checks that name has exactly the series want, by labels.
func wantSeries(t *testing.T, samples map[string]float64, name string, want map[string]float64) {
	t.Helper()
	if got := seriesOf(samples, name); !maps.Equal(got, want) {
		t.Errorf("%s: %v, want %v", name, got, want)
	}
}
