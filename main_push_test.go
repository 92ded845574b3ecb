package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wxreply/wxreply/tools"
	"github.com/wxreply/wxreply/wechat"
)

// The push API end to end: the real server (server.New, Run) sending
// through the real outbox to the fake WeChat API, with the windows and
// template bookkeeping in its store, driven over HTTP as a client would.

const pushKey = "e2e-push-key"

// pushClient calls the push API of one running server.
type pushClient struct {
	t    *testing.T
	base string
}

type pushAnswer struct {
	Code int
	Body map[string]any
	Raw  string
}

func (a pushAnswer) str(k string) string { s, _ := a.Body[k].(string); return s }

func (p pushClient) do(method, path, body string, header map[string]string) pushAnswer {
	p.t.Helper()
	req, err := http.NewRequest(method, p.base+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+pushKey)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := pushAnswer{Code: resp.StatusCode, Raw: string(raw)}
	if err := json.Unmarshal(raw, &a.Body); err != nil {
		p.t.Fatalf("%s %s: answer is not JSON: %s", method, path, raw)
	}
	return a
}

// final polls a status until it is no longer queued (nor, with
// untilDone, sent) and returns it.
func (p pushClient) final(path string, untilDone bool) pushAnswer {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := p.do("GET", path, "", nil)
		st := a.str("status")
		if a.Code != 200 || (st != "queued" && (st != "sent" || !untilDone)) {
			return a
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s still %s", path, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPushAPIEndToEnd(t *testing.T) {
	base, fake := startApp(t, pushKey)
	p := pushClient{t, base}
	sent := func() int { return len(fake.Accepted(wechat.PathCustomSend)) }
	text := func(to, content string) string {
		return fmt.Sprintf(`{"touser":%q,"msgtype":"text","text":{"content":%q}}`, to, content)
	}

	// Auth and validation: refused, nothing reaches WeChat.
	for _, h := range []map[string]string{{"Authorization": ""}, {"Authorization": "Bearer wrong"}} {
		if a := p.do("POST", "/api/v1/messages", text("oA", "x"), h); a.Code != 401 {
			t.Errorf("Authorization %q: status %d, want 401", h["Authorization"], a.Code)
		}
	}
	if a := p.do("POST", "/api/v1/messages", `{"touser":"oA","msgtype":"news","news":{"articles":[{"title":"a"},{"title":"b"}]}}`, nil); a.Code != 422 || !strings.Contains(a.Raw, "news.articles") {
		t.Errorf("two articles: status %d: %s", a.Code, a.Raw)
	}

	// Delivered, with its status.
	a := p.do("POST", "/api/v1/messages", text("oA", "您的订单已发货"), nil)
	if a.Code != 202 || a.str("status") != "queued" {
		t.Fatalf("post: status %d: %s", a.Code, a.Raw)
	}
	if st := p.final("/api/v1/messages/"+a.str("id"), false); st.str("status") != "delivered" || st.Body["attempts"] != 1.0 {
		t.Errorf("status %s, want delivered after one attempt", st.Raw)
	}
	if n := sent(); n != 1 {
		t.Fatalf("the fake API got %d messages, want 1", n)
	}

	// Idempotency: the retry gets the same id and sends nothing.
	k := map[string]string{"Idempotency-Key": "order-42-shipped"}
	first := p.do("POST", "/api/v1/messages", text("oA", "once"), k)
	again := p.do("POST", "/api/v1/messages", text("oA", "once"), k)
	if first.Code != 202 || again.Code != 202 || first.str("id") != again.str("id") {
		t.Fatalf("keyed retry: %s / %s", first.Raw, again.Raw)
	}
	p.final("/api/v1/messages/"+first.str("id"), false)
	if n := sent(); n != 2 {
		t.Errorf("the fake API got %d messages, want 2", n)
	}

	// The window: WeChat's 45015 fails the message with its reason, and
	// the next push to that user is refused before it is sent.
	fake.SetOutOfWindow("oGone")
	a = p.do("POST", "/api/v1/messages", text("oGone", "x"), nil)
	st := p.final("/api/v1/messages/"+a.str("id"), false)
	if st.str("status") != "failed" || st.Body["errcode"] != 45015.0 || st.str("reason") == "" {
		t.Errorf("out of window: %s, want failed with errcode 45015 and a reason", st.Raw)
	}
	if a := p.do("POST", "/api/v1/messages", text("oGone", "y"), nil); a.Code != 409 {
		t.Errorf("push to a user known outside the window: status %d, want 409: %s", a.Code, a.Raw)
	}
	if n := len(fake.Received()); n != 3 {
		t.Errorf("the fake API got %d calls, want 3 (the 409 sent nothing)", n)
	}

	// A template message: sent once WeChat accepts it, then its
	// TEMPLATESENDJOBFINISH event completes the status.
	for _, report := range []struct{ status, want string }{{"success", "delivered"}, {"failed:user block", "failed"}} {
		a := p.do("POST", "/api/v1/templates", `{"touser":"oGone","template_id":"TPL","data":{"first":{"value":"hi"}}}`, nil)
		path := "/api/v1/templates/" + a.str("id")
		st := p.final(path, false)
		msgID, _ := st.Body["msgid"].(float64)
		if st.str("status") != "sent" || msgID == 0 {
			t.Fatalf("template: %s, want sent with a msgid", st.Raw)
		}
		event := fmt.Sprintf("<xml><ToUserName><![CDATA[gh_e2e]]></ToUserName><FromUserName><![CDATA[oGone]]></FromUserName>"+
			"<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>"+
			"<MsgID>%d</MsgID><Status><![CDATA[%s]]></Status></xml>", time.Now().Unix(), int64(msgID), report.status)
		cb := &tools.Callback{URL: base + "/wechat", Token: "tok"}
		if r, err := cb.Post(context.Background(), []byte(event)); err != nil || !r.OK() {
			t.Fatalf("TEMPLATESENDJOBFINISH: %v %+v", err, r)
		}
		st = p.final(path, true)
		if st.str("status") != report.want || st.str("template_status") != report.status {
			t.Errorf("after TEMPLATESENDJOBFINISH %q: %s, want %s", report.status, st.Raw, report.want)
		}
	}
}

// Without WECHAT_APPID and WECHAT_APPSECRET a push is accepted but
// cannot be sent, and its status says why.
func TestPushWithoutCredentials(t *testing.T) {
	base, fake := startApp(t, pushKey, func(c *config) { c.appID, c.appSecret = "", "" })
	p := pushClient{t, base}
	a := p.do("POST", "/api/v1/messages", `{"touser":"oA","msgtype":"text","text":{"content":"x"}}`, nil)
	if a.Code != 202 {
		t.Fatalf("status %d: %s", a.Code, a.Raw)
	}
	st := p.final("/api/v1/messages/"+a.str("id"), false)
	if st.str("status") != "failed" || !strings.Contains(st.str("reason"), "AppID and AppSecret are required") {
		t.Errorf("status %s, want failed saying AppID and AppSecret are required", st.Raw)
	}
	if n := len(fake.Received()); n != 0 {
		t.Errorf("the fake API got %d calls, want none", n)
	}
}

// The README's curl examples work against a running server: each curl
// command of the Push API section is run (in Go, with the same method,
// headers and body), a status URL with the id of the message posted
// before it, and must be answered 2xx.
func TestREADMEPushExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start := strings.Index(section, "\n## Push API")
	if start < 0 {
		t.Fatal("README has no Push API section")
	}
	section = section[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	base, _ := startApp(t, pushKey)
	env := map[string]string{"WXREPLY_API_KEY": pushKey}
	var lastID string
	n := 0
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1) {
		for _, cmd := range shellCommands(block[1], env) {
			if len(cmd) == 0 || cmd[0] != "curl" {
				continue
			}
			n++
			method, target, body := "GET", "", ""
			header := http.Header{}
			for i := 1; i < len(cmd); i++ {
				switch cmd[i] {
				case "-s":
				case "-X":
					i++
					method = cmd[i]
				case "-H":
					i++
					k, v, _ := strings.Cut(cmd[i], ":")
					header.Set(k, strings.TrimSpace(v))
				case "-d":
					i++
					method, body = "POST", cmd[i]
				default:
					if !strings.HasPrefix(cmd[i], "http://127.0.0.1:8080/") {
						t.Fatalf("curl argument %q not understood by this test", cmd[i])
					}
					target = strings.TrimPrefix(cmd[i], "http://127.0.0.1:8080")
				}
			}
			if method == "GET" && lastID != "" {
				target = target[:strings.LastIndex(target, "/")+1] + lastID
			}
			req, _ := http.NewRequest(method, base+target, strings.NewReader(body))
			req.Header = header
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Logf("curl %s %s: %d %s", method, target, resp.StatusCode, raw)
			if resp.StatusCode/100 != 2 {
				t.Errorf("README: curl %s %s: status %d: %s", method, target, resp.StatusCode, raw)
				continue
			}
			var a struct{ ID string }
			if json.Unmarshal(raw, &a) == nil && method == "POST" {
				lastID = a.ID
			}
		}
	}
	if n < 3 {
		t.Errorf("found %d curl examples in the README's Push API section, want at least 3", n)
	}
}

// shellCommands splits a sh code block into commands and their words,
// the way sh would for the simple commands of a README: comments,
// backslash-newline, single and double quotes, and $VAR from env.
func shellCommands(src string, env map[string]string) [][]string {
	var cmds [][]string
	var words []string
	var w strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, w.String())
			w.Reset()
			inWord = false
		}
	}
	expand := func(s string, i int) (string, int) { // s[i] == '$'
		j := i + 1
		for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= '0' && s[j] <= '9') {
			j++
		}
		return env[s[i+1:j]], j
	}
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\\' && i+1 < len(src) && src[i+1] == '\n':
			i += 2
		case c == '#' && !inWord:
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '\n':
			flush()
			if len(words) > 0 {
				cmds = append(cmds, words)
				words = nil
			}
			i++
		case c == ' ' || c == '\t':
			flush()
			i++
		case c == '\'':
			end := strings.IndexByte(src[i+1:], '\'')
			w.WriteString(src[i+1 : i+1+end])
			inWord, i = true, i+end+2
		case c == '"':
			i++
			for i < len(src) && src[i] != '"' {
				if src[i] == '$' {
					v, j := expand(src, i)
					w.WriteString(v)
					i = j
					continue
				}
				w.WriteByte(src[i])
				i++
			}
			inWord, i = true, i+1
		case c == '$':
			v, j := expand(src, i)
			w.WriteString(v)
			inWord, i = true, j
		default:
			w.WriteByte(c)
			inWord, i = true, i+1
		}
	}
	flush()
	if len(words) > 0 {
		cmds = append(cmds, words)
	}
	return cmds
}
