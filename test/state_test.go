package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wxreply/wxreply/server"
	"github.com/wxreply/wxreply/store/storetest"
)

// dialogRules ask for an order number and take the next message as the
// answer. (That a state rule wins over a stateless one earlier in the
// file is rules' TestDecideWithState.)
const dialogRules = `
rules:
  - name: order-ask
    match: {text: {equals: 订单}}
    set_state: {name: awaiting_order, for: 2m}
    reply:
      - text: 请输入订单号
  - name: order-answer
    match:
      state: awaiting_order
      text: {regex: '^\d{6,}$'}
    clear_state: true
    reply:
      - text: "订单 {{.Content}} 已发货"
default:
  reply:
    - text: 没听懂
`

func TestConversationStateDir(t *testing.T) { testConversationState(t, "dir") }

func TestConversationStateRedis(t *testing.T) {
	testConversationState(t, storetest.RedisURL(t)+"?prefix="+storetest.RedisPrefix(t))
}

// testConversationState: "订单" sets awaiting_order; the next message is
// taken as the order number and clears it; the same number again gets
// the default reply; a state left to expire (the server's clock moved on)
// no longer matches. A WeChat retry of the message that set the state is
// answered once.
func testConversationState(t *testing.T, st string) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(dialogRules), 0o644); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{}
	h := newHarness(t, harnessOptions{rules: path, store: st, config: func(c *server.Config) {
		c.Now = clock.Now
		c.MaxClockSkew = -1 // the callbacks' timestamps are the real clock's
	}})
	sent := 0
	say := func(openid, content string, msgID int64, want string) {
		t.Helper()
		if code, body := h.post(t, text(openid, content, msgID)); code != 200 || body != "success" {
			t.Fatalf("%q answered %d %q", content, code, body)
		}
		sent++
		got := h.waitDelivered(t, sent)[sent-1]
		if got.OpenID != openid || got.Custom == nil || got.Custom.Text == nil || got.Custom.Text.Content != want {
			var all []string
			for _, r := range h.delivered() {
				all = append(all, string(r.Body))
			}
			t.Fatalf("%s said %q: the reply is %s, want %q; sent: %s", openid, content, got.Body, want, strings.Join(all, "\n"))
		}
	}
	const u = "oSTATE_user_1"
	say(u, "订单", 976001, "请输入订单号")
	// WeChat's retry of it: answered as the first, nothing sent or set again.
	if code, body := h.post(t, text(u, "订单", 976001)); code != 200 || body != "success" {
		t.Fatalf("retry answered %d %q", code, body)
	}
	say(u, "123456", 976002, "订单 123456 已发货")
	say(u, "123456", 976003, "没听懂") // cleared
	h.idle(t)
	if n := len(h.delivered()); n != sent {
		t.Fatalf("%d replies sent, want %d: the retry was answered again", n, sent)
	}

	// Per user: another user has no state.
	say("oSTATE_user_2", "1234567", 976004, "没听懂")

	// Expiry by the server's clock.
	say(u, "订单", 976005, "请输入订单号")
	h.idle(t) // a send under way when the clock jumps would lose its lease
	clock.advance(2*time.Minute + time.Second)
	say(u, "123456", 976006, "没听懂")
	// And a state set again counts from then.
	say(u, "订单", 976007, "请输入订单号")
	h.idle(t)
	clock.advance(time.Minute)
	say(u, "654321", 976008, "订单 654321 已发货")
}
