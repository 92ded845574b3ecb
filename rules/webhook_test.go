package rules

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const webhookRules = `
rules:
  - name: order-lookup
    match:
      text:
        regex: '^order\s*(\d+)$'
    reply:
      - text: looking up {{index .Groups 1}}
      - webhook:
          url: "https://backend.example.com/order"
          timeout: 250ms
      - text: bye
    fallback:
      - text: "busy, order {{index .Groups 1}}"
  - name: human
    match:
      text:
        equals: human
    passive: true
    reply:
      - transfer_customer_service: {kf_account: "kf2001@gh_acct"}
  - name: human-any
    match:
      text:
        equals: agent
    passive: true
    reply:
      - transfer_customer_service:
`

func TestWebhookDecision(t *testing.T) {
	s := mustParse(t, webhookRules)
	if got := s.WebhookRules(); len(got) != 1 || got[0] != "order-lookup" {
		t.Fatalf("WebhookRules = %v", got)
	}
	warned := false
	for _, w := range s.Warnings() {
		warned = warned || strings.Contains(w.Msg, "WXREPLY_WEBHOOK_SECRET")
	}
	if !warned {
		t.Errorf("no warning about the secret: %v", s.Warnings())
	}
	d := s.Decide(textMsg("order 42"))
	if len(d.Webhooks) != 1 || len(d.Replies) != 2 {
		t.Fatalf("decision %+v", d)
	}
	call := d.Webhooks[0]
	if call.At != 1 || call.Timeout != 250*time.Millisecond || call.URL != "https://backend.example.com/order" || call.Passive {
		t.Errorf("call %+v", call)
	}
	var body struct {
		Rule    string         `json:"rule"`
		Groups  []string       `json:"groups"`
		Message map[string]any `json:"message"`
	}
	if err := json.Unmarshal(call.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Rule != "order-lookup" || len(body.Groups) != 2 || body.Groups[1] != "42" ||
		body.Message["Content"] != "order 42" || body.Message["FromUserName"] != testUser || body.Message["MsgId"] != "1001" {
		t.Errorf("body %s", call.Body)
	}
	if _, ok := body.Message["Event"]; ok {
		t.Errorf("empty fields in the body: %s", call.Body)
	}
	fb := call.Fallback()
	if len(fb.Items) != 1 || fb.Items[0].Custom.Text.Content != "busy, order 42" || fb.Items[0].Custom.ToUser != testUser || fb.Items[0].Rule != "order-lookup" {
		t.Errorf("fallback %+v", fb)
	}

	d = s.Decide(textMsg("human"))
	if d.Transfer == nil || d.Transfer.KfAccount != "kf2001@gh_acct" || d.Passive != nil || len(d.Replies) != 0 {
		t.Errorf("hand-over decision %+v", d)
	}
	if d = s.Decide(textMsg("agent")); d.Transfer == nil || d.Transfer.KfAccount != "" {
		t.Errorf("hand-over without an account %+v", d)
	}
}

func TestWebhookAnswer(t *testing.T) {
	s := mustParse(t, webhookRules)
	call := s.Decide(textMsg("order 7")).Webhooks[0]
	r, err := call.Answer([]byte(`{"reply": [{"text": "order 7 shipped"}, {"news": {"articles": [{"title": "t", "url": "https://e.com"}]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Items) != 2 || r.Items[0].Custom.Text.Content != "order 7 shipped" || r.Items[1].Custom.News == nil ||
		r.Items[0].Custom.ToUser != testUser || r.Items[1].Custom.MsgType != "news" {
		t.Errorf("items %+v", r.Items)
	}
	// What Python's json.dumps writes by default: surrogate pairs, \/.
	r, err = call.Answer([]byte(`{"reply": [{"text": "\ud83d\ude00 a\/b \u4f60\b\f\t\"<&>"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Items[0].Custom.Text.Content; got != "😀 a/b 你\b\f\t\"<&>" {
		t.Errorf("escapes: %q", got)
	}
	for _, tc := range []struct{ body, want string }{
		{`not json`, "not JSON"},
		{`{"replies": []}`, `unknown key "replies"`},
		{`{}`, "no reply"},
		{`{"reply": [{"text": ""}]}`, "reply[0].text.content"},
		{`{"reply": [{"image": {"file": "/etc/passwd"}}]}`, "cannot name a local file"},
		{`{"reply": [{"sticker": {}}]}`, `unknown reply type "sticker"`},
		{`{"reply": [{"webhook": {"url": "https://e.com"}}]}`, "cannot call a webhook"},
		{`{"reply": [{"transfer_customer_service": {}}]}`, "passive only"},
		{`{"reply": [{"text": "a", "image": {"media_id": "m"}}]}`, "exactly one key"},
	} {
		if _, err := call.Answer([]byte(tc.body)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Answer(%s) = %v, want an error with %q", tc.body, err, tc.want)
		}
	}
}

// TestWebhookCheck: what check refuses, at FILE:LINE:COL.
func TestWebhookCheck(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"transfer without passive", `
rules:
  - name: human
    match: {text: {equals: human}}
    reply:
      - transfer_customer_service: {}
`, "inline.yaml:6:9: rules[0].reply[0]: transfer_customer_service is a passive reply only"},
		{"transfer not first", `
rules:
  - name: human
    match: {text: {equals: human}}
    passive: true
    reply:
      - text: hi
      - transfer_customer_service: {}
`, "inline.yaml:8:9: rules[0].reply[1]: transfer_customer_service is a passive reply only"},
		{"timeout too long", `
rules:
  - name: w
    match: {text: {equals: w}}
    reply:
      - webhook: {url: "https://e.com", timeout: 6s}
`, "inline.yaml:6:50: rules[0].reply[0].webhook.timeout: at most 5s"},
		{"no url", `
rules:
  - name: w
    match: {text: {equals: w}}
    reply:
      - webhook: {timeout: 1s}
`, "rules[0].reply[0].webhook.url: a webhook needs its url"},
		{"relative url", `
rules:
  - name: w
    match: {text: {equals: w}}
    reply:
      - webhook: {url: "/hook"}
`, "want an absolute http:// or https:// URL"},
		{"fallback without webhook", `
rules:
  - name: w
    match: {text: {equals: w}}
    reply:
      - text: hi
    fallback:
      - text: sorry
`, "rules[0].fallback: is sent only when a webhook reply item fails"},
		{"unknown webhook key", `
rules:
  - name: w
    match: {text: {equals: w}}
    reply:
      - webhook: {url: "https://e.com", method: GET}
`, `unknown key "method"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(filepath.Join("testdata", "inline.yaml"), []byte(tc.src))
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("loaded: %v", err)
			}
			var all []string
			for _, p := range le.Problems {
				all = append(all, p.String())
			}
			if !strings.Contains(strings.Join(all, "\n"), tc.want) {
				t.Errorf("problems:\n%s\nwant %q", strings.Join(all, "\n"), tc.want)
			}
		})
	}
}
