package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wxreply/wxreply/server"
	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// The outbox's contract through the whole server: a reply is in the store
// before the callback is answered, nothing is refused for a backlog, and
// what one start left is sent by the next.

// TestReplyRecordedBeforeTheAnswer: the callback is answered while WeChat
// holds the reply, and by then the reply is in the store.
func TestReplyRecordedBeforeTheAnswer(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	release := h.api.Hold(wechat.PathCustomSend)
	defer release()
	code, body := h.post(t, text("oREC_user_0001", "hi", 950001))
	if code != 200 || body != "success" {
		t.Fatalf("callback answered %d %q while WeChat was holding, want 200 success", code, body)
	}
	if n, err := h.outbox().Pending(context.Background()); err != nil || n != 1 {
		t.Fatalf("after the answer the store holds %d replies (%v), want 1", n, err)
	}
	release()
	got := h.waitDelivered(t, 1)
	if got[0].OpenID != "oREC_user_0001" || got[0].Custom.Text.Content != "你好！" {
		t.Errorf("delivered %+v", got[0].Custom)
	}
	h.idle(t)
}

// TestNothingRefusedWhileBacklogged: with WeChat holding one user's
// first reply, hundreds more for that user and others are all answered
// 200 (there is no queue to fill: the store is the bound), and all are
// delivered, in order, once WeChat answers.
func TestNothingRefusedWhileBacklogged(t *testing.T) {
	h := newHarness(t, harnessOptions{quiet: true})
	release := h.api.Hold(wechat.PathCustomSend)
	defer release()
	const users, perUser = 3, 200
	for i := 0; i < perUser; i++ {
		for u := 0; u < users; u++ {
			n := 2_000_000 + u*perUser + i
			if code, body := h.post(t, text(fmt.Sprintf("oBACK_user_%d", u), fmt.Sprintf("订单 %d", n), int64(n))); code != 200 {
				t.Fatalf("callback %d answered %d %q", n, code, body)
			}
		}
	}
	if n, err := h.outbox().Pending(context.Background()); err != nil || n != users*perUser {
		t.Fatalf("%d replies waiting (%v), want %d", n, err, users*perUser)
	}
	release()
	h.waitDelivered(t, users*perUser)
	h.idle(t)
	byUser := map[string][]string{}
	for _, r := range h.delivered() {
		byUser[r.OpenID] = append(byUser[r.OpenID], r.Custom.Text.Content)
	}
	for u := 0; u < users; u++ {
		var want []string
		for i := 0; i < perUser; i++ {
			want = append(want, fmt.Sprintf("订单 %d 正在处理", 2_000_000+u*perUser+i))
		}
		if got := byUser[fmt.Sprintf("oBACK_user_%d", u)]; strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("user %d: %d replies, not each once in order", u, len(got))
		}
	}
}

// TestHealthMetricsAndPush: the harness serves what serve serves: health,
// metrics over the outbox and store, and the push API behind its key.
func TestHealthMetricsAndPush(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	if code, body := h.do(t, "GET", "/healthz", ""); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz answered %d %q", code, body)
	}

	// A pushed message, delivered, with its status.
	code, body := h.do(t, "POST", "/api/v1/messages", `{"touser":"oPUSH_user_0001","msgtype":"text","text":{"content":"推送"}}`)
	if code != 202 {
		t.Fatalf("push answered %d %s", code, body)
	}
	var acc struct{ ID, Status string }
	if err := json.Unmarshal([]byte(body), &acc); err != nil || acc.ID == "" || acc.Status != "queued" {
		t.Fatalf("push answer %s (%v)", body, err)
	}
	var st struct {
		Status   string
		Attempts int
	}
	waitFor(t, 10*time.Second, func() bool {
		code, body := h.do(t, "GET", "/api/v1/messages/"+acc.ID, "")
		return code == 200 && json.Unmarshal([]byte(body), &st) == nil && st.Status == "delivered"
	}, func() string { return "push status " + st.Status + ", want delivered" })
	if st.Attempts != 1 {
		t.Errorf("delivered after %d attempts, want 1", st.Attempts)
	}
	// And a callback's reply.
	h.post(t, text("oTEST_user_0001", "hi", 950101))
	h.waitDelivered(t, 2)
	h.idle(t)

	// Without the key the push API refuses.
	req, _ := http.NewRequest("POST", h.url+"/api/v1/messages", strings.NewReader(`{}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("push without a key answered %d, want 401", resp.StatusCode)
	}

	code, metrics := h.do(t, "GET", "/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics answered %d", code)
	}
	for name, want := range map[string]float64{
		"wxreply_replies_enqueued_total":  2,
		"wxreply_replies_delivered_total": 2,
		"wxreply_outbox_pending":          0,
		"wxreply_replies_in_flight":       0,
		"wxreply_store_writable":          1,
	} {
		if got, ok := metricValue(metrics, name); !ok || got != want {
			t.Errorf("%s = %v (found %v), want %v", name, got, ok, want)
		}
	}
	if got, ok := metricValue(metrics, "wxreply_rules"); !ok || got < 5 {
		t.Errorf("wxreply_rules = %v, want the test rules", got)
	}
	if got, _ := metricValue(metrics, "wxreply_store_commits_total"); got < 3 {
		t.Errorf("wxreply_store_commits_total = %v: the replies were not committed", got)
	}
	if !regexp.MustCompile(`(?m)^wxreply_http_requests_total\{[^}]*\} [1-9]`).MatchString(metrics) {
		t.Errorf("the metrics middleware counted no request:\n%s", metrics)
	}
}

// metricValue is the value of the first sample of name, without labels.
func metricValue(metrics, name string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(metrics)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// TestRestartSendsWhatWasLeft: a server on a store directory that cannot
// reach WeChat is stopped; the next server on that directory sends what
// it left, in order, and still knows the callbacks it answered (a retry
// records nothing), the push API's idempotency key and the push's status.
// While the first runs, a second server cannot open its directory.
func TestRestartSendsWhatWasLeft(t *testing.T) {
	dir := t.TempDir()
	down := wechattest.NewServer(wechattest.WithCredentials(testAppID, testAppSecret))
	defer down.Close()
	down.FailHTTP(wechat.PathCustomSend, http.StatusBadGateway, 100_000)
	h1 := newHarness(t, harnessOptions{store: dir, api: down})
	for i, content := range []string{"订单 1234567", "hi"} {
		if code, body := h1.post(t, text("oRESTART_user_1", content, int64(960001+i))); code != 200 {
			t.Fatalf("callback answered %d %q", code, body)
		}
	}
	push := `{"touser":"oRESTART_user_2","msgtype":"text","text":{"content":"推送"}}`
	pushKeyed := func(h *harness) string {
		t.Helper()
		req, _ := http.NewRequest("POST", h.url+"/api/v1/messages", strings.NewReader(push))
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		req.Header.Set("Idempotency-Key", "restart-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var a struct{ ID string }
		if resp.StatusCode != 202 || json.Unmarshal(b, &a) != nil || a.ID == "" {
			t.Fatalf("keyed push answered %d %s", resp.StatusCode, b)
		}
		return a.ID
	}
	id := pushKeyed(h1)
	waitFor(t, 10*time.Second, func() bool { return h1.outbox().Stats().Retried >= 4 },
		func() string { return "the sends were not retried: " + statsString(h1.outbox().Stats()) })

	// The directory is locked while h1 runs.
	second, err := server.New(server.Config{Token: testToken, RulesPath: "testdata/rules.yaml", Store: dir,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil {
		second.Close()
		t.Fatal("a second server opened the store directory of a running one")
	}
	if !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), dir) {
		t.Errorf("second server: %v, want the directory named as in use", err)
	}

	if err := h1.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if l := h1.logs.lines("message failed"); len(l) > 0 {
		t.Fatalf("the stop failed a message: %s", l[0])
	}
	if n := len(deliveredBy(down)); n != 0 {
		t.Fatalf("%d delivered through a WeChat answering 502", n)
	}

	h2 := newHarness(t, harnessOptions{store: dir})
	got := h2.waitDelivered(t, 3)
	h2.idle(t)
	var seq []string
	for _, r := range got {
		seq = append(seq, r.OpenID+": "+r.Custom.Text.Content)
	}
	want := []string{"oRESTART_user_1: 订单 1234567 正在处理", "oRESTART_user_1: 你好！", "oRESTART_user_2: 推送"}
	if user1 := strings.Join(filterPrefix(seq, "oRESTART_user_1"), "|"); user1 != strings.Join(want[:2], "|") || len(seq) != 3 || !slices.Contains(seq, want[2]) {
		t.Fatalf("after the restart delivered %q, want %q with user 1's in order", seq, want)
	}

	// WeChat retries the first callback: answered, nothing recorded.
	if code, body := h2.post(t, text("oRESTART_user_1", "订单 1234567", 960001)); code != 200 || body != "success" {
		t.Fatalf("retry answered %d %q", code, body)
	}
	if again := pushKeyed(h2); again != id {
		t.Errorf("the keyed push repeated after the restart got id %s, want %s", again, id)
	}
	h2.idle(t)
	if n := len(h2.delivered()); n != 3 {
		t.Errorf("%d delivered after the retries, want still 3", n)
	}
	if l := h2.logs.lines(`"msg":"callback"`, `"msg_id":"960001"`, `"outcome":"retry"`); len(l) != 1 {
		t.Errorf("the retry was not recognised:\n%s", h2.logs.String())
	}
	code, body := h2.do(t, "GET", "/api/v1/messages/"+id, "")
	var st struct {
		Status   string
		Attempts int
	}
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Status != "delivered" || st.Attempts < 2 {
		t.Errorf("status after the restart: %d %s, want delivered after the first run's attempts too", code, body)
	}
}

func filterPrefix(ss []string, prefix string) []string {
	var out []string
	for _, s := range ss {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}
