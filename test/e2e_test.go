package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

func TestGreetingDeliveredAsCustomerServiceMessage(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	code, body := h.post(t, text("oTEST_user_0001", " ＨＥＬＬＯ ", 900001))
	if code != 200 || body != "success" {
		t.Fatalf("callback answered %d %q, want 200 success", code, body)
	}
	got := h.waitDelivered(t, 1)
	var sent map[string]any
	if err := json.Unmarshal(got[0].Body, &sent); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"touser": "oTEST_user_0001", "msgtype": "text", "text": map[string]any{"content": "你好！"}}
	if fmt.Sprint(sent) != fmt.Sprint(want) {
		t.Errorf("sent %v, want %v", sent, want)
	}
	if l := h.logs.lines(`"openid":"oTEST_user_0001"`, `"rule":"greeting"`); len(l) == 0 {
		t.Errorf("no log line names the openid and rule:\n%s", h.logs.String())
	}
}

func TestRepliesArriveInRuleOrder(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	// Slow the API down so that out-of-order sending would show.
	h.api.SetLatency(wechat.PathCustomSend, 20*time.Millisecond)
	h.post(t, text("oTEST_user_0002", "three", 900002))
	got := h.waitDelivered(t, 3)
	var order []string
	for _, r := range got {
		switch {
		case r.Custom.Text != nil:
			order = append(order, r.Custom.Text.Content)
		case r.Custom.News != nil:
			order = append(order, r.Custom.News.Articles[0].Title)
		}
	}
	if strings.Join(order, ",") != "one,two,three" {
		t.Fatalf("delivered in order %v, want one,two,three", order)
	}
}

func TestLinksAreSentUnescaped(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.post(t, text("oTEST_user_0001", "link", 900003))
	got := h.waitDelivered(t, 1)
	if !strings.Contains(string(got[0].Body), `<a href=\"https://example.com/?a=1&b=2\">打开</a>`) {
		t.Fatalf("link escaped in the JSON sent: %s", got[0].Body)
	}
}

func TestRegexGroupsInTemplates(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.post(t, text("oTEST_user_0001", "订单 1234567", 900004))
	got := h.waitDelivered(t, 1)
	if c := got[0].Custom.Text.Content; c != "订单 1234567 正在处理" {
		t.Fatalf("sent %q", c)
	}
}

func TestWeChatRetriesGetOneReply(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	msg := text("oTEST_user_0003", "hi", 900005)
	for i := 0; i < 4; i++ { // the first copy and WeChat's three retries
		if code, body := h.post(t, msg); code != 200 || body != "success" {
			t.Fatalf("copy %d answered %d %q", i, code, body)
		}
	}
	h.waitDelivered(t, 1)
	h.idle(t)
	if n := len(h.delivered()); n != 1 {
		t.Fatalf("%d replies delivered for one message sent four times, want 1", n)
	}
}

func TestPassiveReplyInTheResponse(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	code, body := h.post(t, text("oTEST_user_0001", "请问营业时间", 900006))
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	reply, err := wechat.ParseMessage([]byte(body))
	if err != nil {
		t.Fatalf("passive reply does not parse: %v\n%s", err, body)
	}
	if reply.MsgType != "text" || reply.Content != "每天 9:00–21:00 营业" ||
		reply.ToUserName != "oTEST_user_0001" || reply.FromUserName != "gh_test0000001" {
		t.Errorf("passive reply %+v", reply)
	}
	h.idle(t)
	if n := len(h.delivered()); n != 0 {
		t.Errorf("passive rule also sent %d customer-service messages", n)
	}
}

func TestPassiveReplyEncryptedInSafeMode(t *testing.T) {
	h := newHarness(t, harnessOptions{safe: true})
	enc, err := h.cipher.Encrypt(text("oTEST_user_0001", "营业时间?", 900007))
	if err != nil {
		t.Fatal(err)
	}
	code, body := h.post(t, wechat.SafeModeBody("gh_test0000001", enc))
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	env, err := wechat.ParseMessage([]byte(body))
	if err != nil || env.Encrypt == "" {
		t.Fatalf("not an encrypted reply: %s", body)
	}
	plain, err := h.cipher.Decrypt(env.Encrypt)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(plain), "每天 9:00–21:00 营业") {
		t.Errorf("decrypted reply %s", plain)
	}
}

func TestMsgMenuClickAndSubscribe(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.post(t, capture(t, "plain", "text_msgmenu.xml"))
	h.post(t, capture(t, "plain", "event_subscribe.xml"))
	got := h.waitDelivered(t, 2)
	contents := map[string]bool{}
	for _, r := range got {
		contents[r.Custom.Text.Content] = true
	}
	if !contents["感谢您的好评！"] || !contents["欢迎关注！"] {
		t.Fatalf("delivered %v", contents)
	}
}

func TestOutOfWindowNotSent(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	view := capture(t, "plain", "event_view.xml")
	m, _ := wechat.ParseMessage(view)
	// The user's last window-opening interaction was 49 hours ago, as
	// the store remembers it; a VIEW does not open the window.
	h.touch(t, m.FromUserName, time.Now().Add(-49*time.Hour))
	h.post(t, view)
	h.idle(t)
	for _, r := range h.api.Received() {
		if r.API == wechat.PathCustomSend {
			t.Fatalf("sent to a user outside the window: %+v", r)
		}
	}
	if l := h.logs.lines(`"rule":"view-followup"`, "out of window"); len(l) == 0 {
		t.Fatalf("no failed-with-reason log line:\n%s", h.logs.String())
	}
}

func TestWeChatSaysOutOfWindow(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.api.SetOutOfWindow("oTEST_user_0004")
	h.post(t, text("oTEST_user_0004", "hi", 900008))
	h.idle(t)
	attempts := 0
	for _, r := range h.api.Received() {
		if r.API == wechat.PathCustomSend {
			attempts++
			if r.ErrCode != wechat.ErrCodeOutOfWindow {
				t.Errorf("fake answered %d", r.ErrCode)
			}
		}
	}
	if attempts != 1 {
		t.Fatalf("%d attempts for a 45015, want 1 (it is final)", attempts)
	}
	if l := h.logs.lines(`"openid":"oTEST_user_0004"`, `"errcode":45015`); len(l) == 0 {
		t.Fatalf("45015 not recorded:\n%s", h.logs.String())
	}
}

func TestTemplateMessageAndItsDeliveryReport(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.post(t, text("oTEST_user_0005", "发货通知 SF123", 900009))
	got := h.waitDelivered(t, 1)
	if got[0].API != wechat.PathTemplateSend || got[0].Template.TemplateID != "TPL_SHIPPED" ||
		got[0].Template.Data["remark"].Value != "发货通知 SF123" || got[0].Template.ToUser != "oTEST_user_0005" {
		t.Fatalf("template sent %+v", got[0])
	}
	h.idle(t)
	report := fmt.Sprintf("<xml><ToUserName><![CDATA[gh_test0000001]]></ToUserName><FromUserName><![CDATA[oTEST_user_0005]]></FromUserName>"+
		"<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>"+
		"<MsgID>%d</MsgID><Status><![CDATA[failed:user block]]></Status></xml>", time.Now().Unix(), got[0].MsgID)
	if code, body := h.post(t, []byte(report)); code != 200 || body != "success" {
		t.Fatalf("report answered %d %q", code, body)
	}
	// The line ties the report to the message it reports on: its user,
	// its rule and the template msgid WeChat gave it. (It no longer names
	// the template_id: the store does not keep it.)
	lines := h.logs.lines("template job finished", `"openid":"oTEST_user_0005"`, `"rule":"ship-notice"`,
		fmt.Sprintf(`"template_msgid":%d`, got[0].MsgID), "failed:user block")
	if len(lines) != 1 {
		t.Fatalf("want one log line tying the report to its template and rule:\n%s", h.logs.String())
	}
}

func TestTokenInvalidatedMidFlight(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.post(t, text("oTEST_user_0001", "hi", 900010))
	h.waitDelivered(t, 1)
	fetches := h.api.TokenFetches()
	h.api.InvalidateTokens()
	h.post(t, text("oTEST_user_0001", "hello", 900011))
	h.waitDelivered(t, 2)
	h.idle(t)
	if n := len(h.delivered()); n != 2 {
		t.Fatalf("%d delivered, want 2", n)
	}
	if d := h.api.TokenFetches() - fetches; d != 1 {
		t.Fatalf("%d token fetches after invalidation, want 1", d)
	}
}

func TestSystemBusyRetried(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.api.FailNext(wechat.PathCustomSend, wechat.ErrCodeSystemBusy, 2)
	h.post(t, text("oTEST_user_0001", "hi", 900012))
	h.waitDelivered(t, 1)
	h.idle(t)
	calls := 0
	for _, r := range h.api.Received() {
		if r.API == wechat.PathCustomSend {
			calls++
		}
	}
	if calls != 3 || len(h.delivered()) != 1 {
		t.Fatalf("%d calls, %d delivered; want 3 calls, 1 delivered", calls, len(h.delivered()))
	}
}

// TestSustainedLoadLosesNothing sends many messages from many users, with
// the API failing now and then, and checks every reply arrives exactly
// once, in order per user.
func TestSustainedLoadLosesNothing(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	const users, perUser = 40, 10
	// A few failures, each recovered by a retry parked in the store; and
	// a token invalidation in the middle of the run.
	h.api.FailNext(wechat.PathCustomSend, wechat.ErrCodeSystemBusy, 3)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if h.api.WaitReceived(ctx, users*perUser/4) == nil {
			h.api.InvalidateTokens()
		}
	}()
	for u := 0; u < users; u++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			openid := fmt.Sprintf("oLOAD_user_%04d", u)
			for i := 0; i < perUser; i++ {
				n := 1_000_000 + u*perUser + i
				code, _ := h.post(t, text(openid, fmt.Sprintf("订单 %d", n), int64(n)))
				if code != 200 {
					t.Errorf("callback %d/%d answered %d", u, i, code)
				}
			}
		}()
	}
	wg.Wait()
	h.waitDelivered(t, users*perUser)
	h.idle(t)
	got := h.delivered()
	if n := len(got); n != users*perUser {
		t.Fatalf("%d delivered, want %d", n, users*perUser)
	}
	perOpenID := map[string]int{}
	for _, r := range got {
		perOpenID[r.OpenID]++
	}
	if len(perOpenID) != users {
		t.Fatalf("replies reached %d users, want %d", len(perOpenID), users)
	}
	st := h.outbox().Stats()
	if st.Failed != 0 || st.Delivered != users*perUser || st.Accepted != users*perUser {
		t.Fatalf("outbox: %s", statsString(st))
	}
	// Exactly once and in order per user: each user's replies are one
	// lane of the outbox.
	perUserGot := map[string][]string{}
	for _, r := range got {
		perUserGot[r.OpenID] = append(perUserGot[r.OpenID], r.Custom.Text.Content)
	}
	for u := 0; u < users; u++ {
		var want []string
		for i := 0; i < perUser; i++ {
			want = append(want, fmt.Sprintf("订单 %d 正在处理", 1_000_000+u*perUser+i))
		}
		openid := fmt.Sprintf("oLOAD_user_%04d", u)
		if g := perUserGot[openid]; strings.Join(g, "|") != strings.Join(want, "|") {
			t.Errorf("%s got %q, want %q", openid, g, want)
		}
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	h := newHarness(t, harnessOptions{safe: true})
	h.post(t, text("oTEST_user_0001", "hi", 900013))
	h.api.FailNext(wechat.PathCustomSend, wechat.ErrCodeInvalidCredential, 1)
	h.post(t, text("oTEST_user_0001", "hello", 900014))
	h.api.FailHTTP(wechat.PathCustomSend, 502, 1)
	h.post(t, text("oTEST_user_0001", "three", 900015))
	// The push API, with the key and with a wrong one.
	if code, body := h.do(t, "POST", "/api/v1/messages", `{"touser":"oTEST_user_0001","msgtype":"text","text":{"content":"pushed"}}`); code != 202 {
		t.Fatalf("push answered %d %s", code, body)
	}
	req, _ := http.NewRequest("POST", h.url+"/api/v1/messages", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+testAPIKey+"-wrong")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	h.waitDelivered(t, 6)
	h.idle(t)
	client := wechat.NewClient(wechat.ClientOptions{BaseURL: h.api.URL, AppID: testAppID, AppSecret: testAppSecret,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	token, err := client.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	logs := h.logs.String()
	for name, secret := range map[string]string{"AppSecret": testAppSecret, "EncodingAESKey": testAESKey, "access_token": token, "Token": testToken, "API key": testAPIKey} {
		if strings.Contains(logs, secret) {
			t.Errorf("the %s appears in the logs", name)
		}
	}
	if len(logs) == 0 {
		t.Fatal("no logs at all: the check above proves nothing")
	}
}
