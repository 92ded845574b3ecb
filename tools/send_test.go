package tools

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/server"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

const sendKey = "send-test-key"

// pushStack is the real server (server.New, as serve wires it) with the
// push API on, sending through its outbox to the fake WeChat API.
type pushStack struct {
	URL  string
	fake *wechattest.Server
	srv  *server.Server
}

func newPushStack(t *testing.T, apiKey string, edits ...func(*server.Config)) *pushStack {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fake := wechattest.NewServer()
	t.Cleanup(fake.Close)
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte("rules:\n  - name: hi\n    match: {text: {equals: [hi]}}\n    reply: [{text: hello}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{
		Token: "wxreplytoken", AppID: fake.AppID, AppSecret: fake.AppSecret, APIBase: fake.URL,
		RulesPath: rules, APIKey: apiKey, Store: store.Memory, Logger: log,
		Delivery: func(o *delivery.Options) {
			o.BaseBackoff = time.Millisecond
			o.PollEvery = 5 * time.Millisecond
		},
	}
	for _, edit := range edits {
		edit(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server shutdown: %v", err)
		}
	})
	return &pushStack{URL: "http://" + ln.Addr().String(), fake: fake, srv: srv}
}

func TestSend(t *testing.T) {
	down := closedURL(t)
	news := `{"touser":"oNews","msgtype":"news","news":{"articles":[{"title":"指南","url":"https://example.com"}]}}`
	tests := []struct {
		name       string
		o          SendOptions
		outOfWin   string // openid the fake answers 45015 for
		wantErr    string // empty: success
		wantOut    []string
		wantSent   string // JSON fragment the fake must have received
		wantNotDel bool   // errors.Is(err, ErrNotDelivered)
	}{
		{name: "text, waiting", o: SendOptions{To: "oUser", Text: "包裹已发出", Wait: true},
			wantOut: []string{"delivered"}, wantSent: `"text":{"content":"包裹已发出"}`},
		{name: "text, not waiting", o: SendOptions{To: "oUser", Text: "hi"},
			wantSent: `"touser":"oUser"`},
		{name: "json file", o: SendOptions{JSON: []byte(news), Wait: true},
			wantOut: []string{"delivered"}, wantSent: `"articles":[{"title":"指南","url":"https://example.com"}]`},
		{name: "json file with -to", o: SendOptions{To: "oOther", JSON: []byte(news)},
			wantErr: "-to and -json do not go together"},
		{name: "out of window", o: SendOptions{To: "oGone", Text: "hi", Wait: true}, outOfWin: "oGone",
			wantErr: "out of window (errcode 45015; last error: wechat /cgi-bin/message/custom/send: errcode 45015: response out of time limit", wantOut: []string{"failed: out of window (errcode 45015; last error: wechat /cgi-bin/message/custom/send: errcode 45015: response out of time limit or subscription is canceled)"}, wantNotDel: true},
		{name: "unknown field", o: SendOptions{JSON: []byte(`{"touser":"o","msgtype":"text","text":{"content":"x"},"safe":1}`)},
			wantErr: `400 Bad Request: invalid JSON: unknown field "safe"`},
		{name: "invalid message", o: SendOptions{JSON: []byte(`{"touser":"o","msgtype":"news","news":{"articles":[]}}`)},
			wantErr: "422 Unprocessable Entity: invalid message: nothing was sent\n  news.articles: required"},
		{name: "wrong key", o: SendOptions{APIKey: "wrong", To: "o", Text: "x"},
			wantErr: "401 Unauthorized: invalid API key"},
		{name: "no key", o: SendOptions{APIKey: "-", To: "o", Text: "x"}, wantErr: "WXREPLY_API_KEY"},
		{name: "no recipient", o: SendOptions{Text: "x"}, wantErr: "-to OPENID is required"},
		{name: "nothing to send", o: SendOptions{To: "o"}, wantErr: "nothing to send"},
		{name: "text and json", o: SendOptions{To: "o", Text: "x", JSON: []byte(news)}, wantErr: "not both"},
		{name: "json not an object", o: SendOptions{JSON: []byte(`[1]`)}, wantErr: "400 Bad Request: invalid JSON"},
		{name: "bad server", o: SendOptions{Server: "127.0.0.1:8080", To: "o", Text: "x"}, wantErr: `-server "127.0.0.1:8080": want an http:// or https:// URL`},
		{name: "server down", o: SendOptions{Server: down, To: "o", Text: "x"},
			wantErr: "cannot reach " + down + "/api/v1/messages: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newPushStack(t, sendKey)
			if tt.outOfWin != "" {
				st.fake.SetOutOfWindow(tt.outOfWin)
			}
			var out bytes.Buffer
			o := tt.o
			o.Stdout, o.PollInterval = &out, 10*time.Millisecond
			if o.Server == "" {
				o.Server = st.URL
			}
			switch o.APIKey {
			case "":
				o.APIKey = sendKey
			case "-":
				o.APIKey = ""
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := Send(ctx, o)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Send: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
			}
			if errors.Is(err, ErrNotDelivered) != tt.wantNotDel {
				t.Errorf("errors.Is(err, ErrNotDelivered) = %v", !tt.wantNotDel)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			accepted := lines[0] != "" && !strings.ContainsAny(lines[0], " :")
			if accepted != (tt.wantErr == "" || tt.wantNotDel) {
				t.Errorf("first line %q: want the id exactly when the message was accepted", lines[0])
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output does not say %q:\n%s", w, &out)
				}
			}
			if tt.wantSent != "" {
				if err := st.fake.WaitReceived(ctx, 1); err != nil {
					t.Fatal(err)
				}
				got := st.fake.Received()
				if len(got) != 1 || !strings.Contains(string(got[0].Body), tt.wantSent) {
					t.Errorf("fake API received %d calls, want one with %s: %+v", len(got), tt.wantSent, got)
				}
			}
		})
	}
}

func TestSendIdempotencyKey(t *testing.T) {
	st := newPushStack(t, sendKey)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ids []string
	for range 3 {
		var out bytes.Buffer
		err := Send(ctx, SendOptions{Server: st.URL, APIKey: sendKey, To: "oUser", Text: "once", IdempotencyKey: "order-42", Wait: true, PollInterval: 10 * time.Millisecond, Stdout: &out})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, strings.SplitN(out.String(), "\n", 2)[0])
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("ids %q: want the same id for each retry", ids)
	}
	if n := len(st.fake.Accepted(wechat.PathCustomSend)); n != 1 {
		t.Errorf("fake API got %d messages, want 1", n)
	}
	// Same key, other text: refused, nothing sent.
	err := Send(ctx, SendOptions{Server: st.URL, APIKey: sendKey, To: "oUser", Text: "other", IdempotencyKey: "order-42"})
	if err == nil || !strings.Contains(err.Error(), "422") {
		t.Errorf("reused key with another body: %v, want a 422", err)
	}
}

func TestSendAPIOff(t *testing.T) {
	st := newPushStack(t, "")
	err := Send(context.Background(), SendOptions{Server: st.URL, APIKey: "k", To: "o", Text: "x"})
	if err == nil || !strings.Contains(err.Error(), "is the push API on") {
		t.Errorf("error %v, want a hint that the push API is off", err)
	}
}

// A -json file holding a template message goes to /api/v1/templates, and
// -wait waits past "sent" for WeChat's delivery report.
func TestSendTemplate(t *testing.T) {
	tpl := []byte(`{"touser":"oUser","template_id":"TPL","data":{"first":{"value":"已发货"}}}`)
	for _, report := range []struct {
		status  string
		wantErr bool
		wantOut string
	}{
		{"success", false, "delivered\n"},
		{"failed:user block", true, "failed: failed:user block\n"},
	} {
		t.Run(report.status, func(t *testing.T) {
			st := newPushStack(t, sendKey)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out := &syncBuffer{}
			done := make(chan error, 1)
			go func() {
				done <- Send(ctx, SendOptions{Server: st.URL, APIKey: sendKey, JSON: tpl, Wait: true, PollInterval: 5 * time.Millisecond, Stdout: out})
			}()
			if err := st.fake.WaitReceived(ctx, 1); err != nil {
				t.Fatal(err)
			}
			got := st.fake.Received()[0]
			if got.API != wechat.PathTemplateSend || got.Template == nil || got.Template.TemplateID != "TPL" {
				t.Fatalf("the fake API got %+v, want a template message", got)
			}
			for !strings.Contains(out.String(), "sent: waiting for WeChat's delivery report") {
				if ctx.Err() != nil {
					t.Fatalf("never reported sent:\n%s", out)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if err := st.srv.Outbox().TemplateFinished(ctx, strconv.FormatInt(got.MsgID, 10), report.status); err != nil {
				t.Fatal(err)
			}
			err := <-done
			if (err != nil) != report.wantErr || (err != nil && !errors.Is(err, ErrNotDelivered)) {
				t.Errorf("Send: %v", err)
			}
			if !strings.HasSuffix(out.String(), report.wantOut) {
				t.Errorf("output:\n%s\nwant it to end with %q", out, report.wantOut)
			}
		})
	}
}

// -wait says why a message failed as fully as the server does: the
// "connection refused" behind a network error, WeChat's errcode and
// errmsg; and, when it gives up waiting, what held the message up.
func TestSendWaitCause(t *testing.T) {
	t.Run("WeChat unreachable", func(t *testing.T) {
		st := newPushStack(t, sendKey, func(c *server.Config) {
			c.APIBase = closedURL(t)
			c.MaxRetryAge = 50 * time.Millisecond
			c.Delivery = func(o *delivery.Options) {
				o.BaseBackoff = time.Second // past MaxRetryAge: one attempt
				o.PollEvery = 5 * time.Millisecond
			}
		})
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := Send(ctx, SendOptions{Server: st.URL, APIKey: sendKey, To: "oUser", Text: "x", Wait: true, PollInterval: 10 * time.Millisecond, Stdout: &out})
		if !errors.Is(err, ErrNotDelivered) || !strings.Contains(err.Error(), "network error: connection refused") {
			t.Errorf("Send: %v, want it not delivered for a connection refused", err)
		}
		if !strings.Contains(out.String(), "\nfailed: network error: connection refused") {
			t.Errorf("output:\n%s", &out)
		}
	})
	for _, tt := range []struct {
		name, status, want string
	}{
		{"last error", `{"id":"m1","status":"failed","reason":"network error","attempts":3,"last_error":"Post \"https://api.weixin.qq.com/cgi-bin/stable_token\": proxyconnect tcp: dial tcp 10.0.0.1:3128: i/o timeout"}`,
			`failed: network error (last error: Post "https://api.weixin.qq.com/cgi-bin/stable_token": proxyconnect tcp: dial tcp 10.0.0.1:3128: i/o timeout)`},
		{"errcode and errmsg", `{"id":"m1","status":"failed","reason":"out of window","errcode":45015,"errmsg":"response out of time limit or subscription is canceled"}`,
			`failed: out of window (errcode 45015; errmsg "response out of time limit or subscription is canceled")`},
		{"errcode and last error", `{"id":"m1","status":"failed","reason":"invalid openid","errcode":40003,"last_error":"wechat /cgi-bin/message/custom/send: errcode 40003: invalid openid"}`,
			`failed: invalid openid (errcode 40003; last error: wechat /cgi-bin/message/custom/send: errcode 40003: invalid openid)`},
		{"reason alone", `{"id":"m1","status":"failed","reason":"timeout"}`, "failed: timeout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			api := statusServer(t, tt.status)
			var out bytes.Buffer
			err := Send(context.Background(), SendOptions{Server: api, APIKey: "k", To: "o", Text: "x", Wait: true, PollInterval: time.Millisecond, Stdout: &out})
			if !errors.Is(err, ErrNotDelivered) || !strings.Contains(err.Error(), strings.TrimPrefix(tt.want, "failed: ")) {
				t.Errorf("Send: %v", err)
			}
			if out.String() != "m1\n"+tt.want+"\n" {
				t.Errorf("output %q, want %q", out.String(), "m1\n"+tt.want+"\n")
			}
		})
	}
	t.Run("still queued", func(t *testing.T) {
		api := statusServer(t, `{"id":"m1","status":"queued","attempts":3,"last_error":"wechat /cgi-bin/message/custom/send: errcode -1: system error"}`)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := Send(ctx, SendOptions{Server: api, APIKey: "k", To: "o", Text: "x", Wait: true, PollInterval: 5 * time.Millisecond})
		want := "still queued (3 attempts; last error: wechat /cgi-bin/message/custom/send: errcode -1: system error): context deadline exceeded"
		if err == nil || err.Error() != want {
			t.Errorf("Send: %v, want %q", err, want)
		}
	})
}

// statusServer is a push API that accepts every message as m1 and
// answers status for it.
func statusServer(t *testing.T, status string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"id":"m1","status":"queued"}`)
			return
		}
		io.WriteString(w, status)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// syncBuffer is a bytes.Buffer safe to read while Send writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
