package test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wxreply/wxreply/server"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

const testWebhookSecret = "e2e-webhook-secret-must-never-be-logged"

// webhookRules are the rules of the webhook tests; BASE is the backend.
const webhookRules = `
rules:
  - name: hook-ok
    match:
      text:
        regex: '^ok (\d+)$'
    reply:
      - text: "before {{index .Groups 1}}"
      - webhook: {url: "BASE/ok", timeout: 2s}
      - text: after
    fallback: [{text: fallback-ok}]
  - name: hook-hang
    match: {text: {equals: hang}}
    reply:
      - webhook: {url: "BASE/hang", timeout: 100ms}
      - text: after-hang
    fallback: [{text: fallback-hang}, {text: fallback-hang-2}]
  - name: hook-status
    match: {text: {equals: status}}
    reply:
      - webhook: {url: "BASE/status"}
    fallback: [{text: fallback-status}]
  - name: hook-invalid
    match: {text: {equals: invalid}}
    reply:
      - webhook: {url: "BASE/invalid"}
    fallback: [{text: fallback-invalid}]
  - name: hook-bare
    match: {text: {equals: bare}}
    reply:
      - text: only-this
      - webhook: {url: "BASE/status"}
  - name: hook-down
    match: {text: {equals: down}}
    reply:
      - webhook: {url: "http://127.0.0.1:1/nothing-listens"}
    fallback: [{text: fallback-down}]
  - name: hook-passive
    match: {text: {equals: passive}}
    passive: true
    reply:
      - webhook: {url: "BASE/passive"}
  - name: hook-passive-failed
    match: {text: {equals: passive-failed}}
    passive: true
    reply:
      - webhook: {url: "BASE/status"}
    fallback: [{text: passive fallback}]
  - name: human
    match: {text: {equals: human}}
    passive: true
    reply:
      - transfer_customer_service: {kf_account: "kf2001@gh_test0000001"}
  - name: human-any
    match: {text: {equals: agent}}
    passive: true
    reply:
      - transfer_customer_service:
`

// backend is the operator's service: it checks each request's signature
// as the README's example does and answers by path. /hang answers only
// when the test releases it, or when wxreply gives up on it.
type backend struct {
	t       *testing.T
	srv     *httptest.Server
	release chan struct{}
	mu      sync.Mutex
	got     []webhookRequest
}

type webhookRequest struct {
	Path        string
	Method      string
	ContentType string
	SignatureOK bool
	Body        struct {
		Rule    string         `json:"rule"`
		Groups  []string       `json:"groups"`
		Message map[string]any `json:"message"`
	}
}

func newBackend(t *testing.T) *backend {
	b := &backend{t: t, release: make(chan struct{})}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(func() { close(b.release); b.srv.Close() })
	return b
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ts := r.Header.Get("X-Wxreply-Timestamp")
	mac := hmac.New(sha256.New, []byte(testWebhookSecret))
	mac.Write([]byte(ts + "." + string(body)))
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	req := webhookRequest{Path: r.URL.Path, Method: r.Method, ContentType: r.Header.Get("Content-Type"),
		SignatureOK: ts != "" && hmac.Equal([]byte(want), []byte(r.Header.Get("X-Wxreply-Signature")))}
	if err := json.Unmarshal(body, &req.Body); err != nil {
		b.t.Errorf("webhook body is not JSON: %v: %s", err, body)
	}
	b.mu.Lock()
	b.got = append(b.got, req)
	b.mu.Unlock()
	if !req.SignatureOK {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/ok":
		io.WriteString(w, `{"reply": [{"text": "order `+req.Body.Groups[1]+` shipped"}, {"news": {"articles": [{"title": "track", "url": "https://example.com/t"}]}}]}`)
	case "/hang":
		select {
		case <-b.release:
		case <-r.Context().Done(): // wxreply's timeout
		}
	case "/status":
		http.Error(w, "down", http.StatusBadGateway)
	case "/invalid":
		io.WriteString(w, `{"reply": [{"text": {"content": ""}}]}`)
	case "/passive":
		io.WriteString(w, `{"reply": [{"text": "passive from the backend"}, {"text": "then this"}]}`)
	}
}

func (b *backend) requests() []webhookRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]webhookRequest(nil), b.got...)
}

func writeWebhookRules(t *testing.T, base string) string {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(webhookRules, "BASE", base)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func newWebhookHarness(t *testing.T) (*harness, *backend) {
	b := newBackend(t)
	h := newHarness(t, harnessOptions{rules: writeWebhookRules(t, b.srv.URL), config: func(c *server.Config) {
		c.WebhookSecret = testWebhookSecret
	}})
	return h, b
}

// textsTo is the text (or news title) of each message delivered to openid.
func textsTo(h *harness, openid string) []string {
	var out []string
	for _, r := range h.delivered() {
		if r.OpenID != openid || r.Custom == nil {
			continue
		}
		switch {
		case r.Custom.Text != nil:
			out = append(out, r.Custom.Text.Content)
		case r.Custom.News != nil:
			out = append(out, "news:"+r.Custom.News.Articles[0].Title)
		}
	}
	return out
}

// TestWebhookReplies: the webhook is called with the message, signed;
// its items are sent in its place, between the rule's other items; each
// failure sends the rule's fallback instead, is logged with the rule and
// counted by outcome.
func TestWebhookReplies(t *testing.T) {
	h, b := newWebhookHarness(t)
	cases := []struct {
		openid, content string
		want            []string
		rule, outcome   string
	}{
		{"oHOOK_ok", "ok 12345", []string{"before 12345", "order 12345 shipped", "news:track", "after"}, "hook-ok", "ok"},
		{"oHOOK_hang", "hang", []string{"fallback-hang", "fallback-hang-2", "after-hang"}, "hook-hang", "timeout"},
		{"oHOOK_status", "status", []string{"fallback-status"}, "hook-status", "status"},
		{"oHOOK_invalid", "invalid", []string{"fallback-invalid"}, "hook-invalid", "invalid"},
		{"oHOOK_bare", "bare", []string{"only-this"}, "hook-bare", "status"},
		{"oHOOK_down", "down", []string{"fallback-down"}, "hook-down", "error"},
	}
	total := 0
	for i, tc := range cases {
		code, body := h.post(t, text(tc.openid, tc.content, int64(910000+i)))
		if code != 200 || body != "success" {
			t.Fatalf("%s: answered %d %q", tc.content, code, body)
		}
		total += len(tc.want)
	}
	h.waitDelivered(t, total)
	h.idle(t)
	for _, tc := range cases {
		if got := textsTo(h, tc.openid); strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: delivered %q, want %q", tc.content, got, tc.want)
		}
		if tc.outcome != "ok" && len(h.logs.lines("webhook failed", `"rule":"`+tc.rule+`"`, `"outcome":"`+tc.outcome+`"`)) != 1 {
			t.Errorf("%s: no log line for the failure; logs:\n%s", tc.rule, h.logs.String())
		}
		if got := metricLine(t, h.url, "wxreply_webhook_calls_total", `rule="`+tc.rule+`"`, `outcome="`+tc.outcome+`"`); got != "1" {
			t.Errorf("%s: wxreply_webhook_calls_total{outcome=%q} = %q, want 1", tc.rule, tc.outcome, got)
		}
	}

	reqs := b.requests()
	if len(reqs) != len(cases)-1 { // nothing listens for hook-down
		t.Fatalf("%d webhook requests, want %d", len(reqs), len(cases)-1)
	}
	r := reqs[0]
	if r.Path != "/ok" || r.Method != http.MethodPost || r.ContentType != "application/json" || !r.SignatureOK {
		t.Errorf("request %+v", r)
	}
	if r.Body.Rule != "hook-ok" || strings.Join(r.Body.Groups, ",") != "ok 12345,12345" ||
		r.Body.Message["Content"] != "ok 12345" || r.Body.Message["FromUserName"] != "oHOOK_ok" ||
		r.Body.Message["MsgType"] != "text" || r.Body.Message["MsgId"] != "910000" || r.Body.Message["ToUserName"] != "gh_test0000001" {
		t.Errorf("request body %+v", r.Body)
	}
	if strings.Contains(h.logs.String(), testWebhookSecret) {
		t.Error("the webhook secret is in the logs")
	}
}

// TestWebhookPassive: a passive rule's webhook answers in the callback's
// response; its other items go through the API.
func TestWebhookPassive(t *testing.T) {
	h, _ := newWebhookHarness(t)
	code, body := h.post(t, text("oHOOK_passive", "passive", 920001))
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	reply, err := wechat.ParseMessage([]byte(body))
	if err != nil || reply.MsgType != "text" || reply.Content != "passive from the backend" || reply.ToUserName != "oHOOK_passive" {
		t.Fatalf("passive reply %q (%v)", body, err)
	}
	h.waitDelivered(t, 1)
	if got := textsTo(h, "oHOOK_passive"); len(got) != 1 || got[0] != "then this" {
		t.Errorf("delivered %q", got)
	}

	// A failed passive webhook: the fallback's first item answers.
	code, body = h.post(t, text("oHOOK_passive", "passive-failed", 920002))
	if reply, err := wechat.ParseMessage([]byte(body)); code != 200 || err != nil || reply.Content != "passive fallback" {
		t.Fatalf("fallback passive reply %d %q (%v)", code, body, err)
	}
}

// TestTransferCustomerService: the hand-over to human agents is the
// callback's passive answer, with the agent when the rule names one.
func TestTransferCustomerService(t *testing.T) {
	h, _ := newWebhookHarness(t)
	for i, tc := range []struct{ content, want string }{
		{"human", "<xml><ToUserName><![CDATA[oHUMAN]]></ToUserName><FromUserName><![CDATA[gh_test0000001]]></FromUserName><CreateTime>TS</CreateTime>" +
			"<MsgType><![CDATA[transfer_customer_service]]></MsgType><TransInfo><KfAccount><![CDATA[kf2001@gh_test0000001]]></KfAccount></TransInfo></xml>"},
		{"agent", "<xml><ToUserName><![CDATA[oHUMAN]]></ToUserName><FromUserName><![CDATA[gh_test0000001]]></FromUserName><CreateTime>TS</CreateTime>" +
			"<MsgType><![CDATA[transfer_customer_service]]></MsgType></xml>"},
	} {
		code, body := h.post(t, text("oHUMAN", tc.content, int64(930000+i)))
		if code != 200 {
			t.Fatalf("%s: status %d", tc.content, code)
		}
		i, j := strings.Index(body, "<CreateTime>"), strings.Index(body, "</CreateTime>")
		if i < 0 || j < i {
			t.Fatalf("%s: answer %q", tc.content, body)
		}
		if got := body[:i+len("<CreateTime>")] + "TS" + body[j:]; got != tc.want {
			t.Errorf("%s: answer\n%s\nwant\n%s", tc.content, got, tc.want)
		}
	}
	h.idle(t)
	if n := len(h.delivered()); n != 0 {
		t.Errorf("the hand-over also sent %d customer-service messages", n)
	}
}

// TestWebhookNeedsSecret: a server whose rules have a webhook item does
// not start without WXREPLY_WEBHOOK_SECRET.
func TestWebhookNeedsSecret(t *testing.T) {
	api := wechattest.NewServer(wechattest.WithCredentials(testAppID, testAppSecret))
	defer api.Close()
	srv, err := server.New(server.Config{Token: testToken, AppID: testAppID, AppSecret: testAppSecret, APIBase: api.URL,
		RulesPath: writeWebhookRules(t, "https://backend.example.com"), Store: store.Memory})
	if err == nil {
		srv.Close()
		t.Fatal("the server started without WXREPLY_WEBHOOK_SECRET")
	}
	if msg := err.Error(); !strings.Contains(msg, "WXREPLY_WEBHOOK_SECRET is not set") || !strings.Contains(msg, "hook-ok") || strings.Contains(msg, "\n") {
		t.Errorf("error %q", msg)
	}
}

// metricLine is the value of the series of name whose labels include
// every one of labels, "" when there is none.
func metricLine(t *testing.T, base, name string, labels ...string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
next:
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		f := strings.Fields(line)
		return f[len(f)-1]
	}
	return ""
}

// TestWebhookReloadedWithoutSecret: a reload that brings webhook items to
// a server started without the secret is logged at error, and those items
// send their fallbacks, unsigned requests never made.
func TestWebhookReloadedWithoutSecret(t *testing.T) {
	b := newBackend(t)
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeRulesFile(t, path, "default:\n  reply: [{text: hi}]\n")
	h := newHarness(t, harnessOptions{rules: path})
	hash := h.srv.Rules().Current().Hash()
	writeRulesFile(t, path, strings.ReplaceAll(webhookRules, "BASE", b.srv.URL))
	h.reload <- syscall.SIGHUP // the watch may not have started yet
	// The error is logged once the new rules are in force.
	waitFor(t, 10*time.Second, func() bool {
		return h.srv.Rules().Current().Hash() != hash && len(h.logs.lines("WXREPLY_WEBHOOK_SECRET is not set", `"level":"ERROR"`)) > 0
	}, func() string {
		return "the webhook rules never came in force with an error logged; log:\n" + h.logs.String()
	})
	if code, _ := h.post(t, text("oHOOK_nosecret", "status", 940001)); code != 200 {
		t.Fatalf("status %d", code)
	}
	h.waitDelivered(t, 1)
	if got := textsTo(h, "oHOOK_nosecret"); len(got) != 1 || got[0] != "fallback-status" {
		t.Errorf("delivered %q", got)
	}
	if n := len(b.requests()); n != 0 {
		t.Errorf("%d unsigned requests made", n)
	}
	if got := metricLine(t, h.url, "wxreply_webhook_calls_total", `rule="hook-status"`, `outcome="error"`); got != "1" {
		t.Errorf(`wxreply_webhook_calls_total{outcome="error"} = %q`, got)
	}
}
