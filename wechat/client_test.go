package wechat_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

var tokenModes = []struct {
	name   string
	legacy bool
	api    string
}{
	{"stable_token", false, wechat.PathStableToken},
	{"legacy token", true, wechat.PathToken},
}

// 40 replies at a cold start share one token fetch, in both token modes.
func TestColdStartFetchesOneToken(t *testing.T) {
	for _, mode := range tokenModes {
		t.Run(mode.name, func(t *testing.T) {
			srv := fakeAPI(t)
			// A slow token answer keeps every caller waiting on the
			// same fetch.
			srv.SetLatency(mode.api, 50*time.Millisecond)
			c := apiClient(srv, nil, func(o *wechat.ClientOptions) { o.UseLegacyToken = mode.legacy })
			var wg sync.WaitGroup
			errs := make(chan error, 40)
			for i := range 40 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- c.SendCustom(context.Background(), textTo(fmt.Sprintf("user-%d", i), "hi"))
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("send: %v", err)
				}
			}
			if got := srv.TokenFetches(); got != 1 {
				t.Errorf("token fetches = %d, want 1", got)
			}
			if got := len(srv.Accepted(wechat.PathCustomSend)); got != 40 {
				t.Errorf("accepted = %d, want 40", got)
			}
		})
	}
}

// A token invalidated by another process, either while it sits in the
// cache or while calls carrying it are in flight: each of those calls
// fails once, one refetch serves them all, and every message is
// delivered exactly once.
func TestTokenInvalidatedMidFlight(t *testing.T) {
	const n = 20
	cases := []struct {
		name       string
		invalidate func(*testing.T, *wechattest.Server, func())
	}{
		{"while cached", func(_ *testing.T, srv *wechattest.Server, send func()) {
			srv.InvalidateTokens()
			send()
		}},
		{"while in flight", func(t *testing.T, srv *wechattest.Server, send func()) {
			release := srv.Hold(wechat.PathCustomSend)
			defer release()
			send()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.WaitPending(ctx, n); err != nil {
				t.Fatal(err)
			}
			srv.InvalidateTokens()
			release()
		}},
	}
	for _, mode := range tokenModes {
		for _, tc := range cases {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				srv := fakeAPI(t)
				c := apiClient(srv, nil, func(o *wechat.ClientOptions) { o.UseLegacyToken = mode.legacy })
				old, err := c.Token(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				var wg sync.WaitGroup
				wg.Add(n)
				send := func() {
					for i := range n {
						go func() {
							defer wg.Done()
							if err := c.SendCustom(context.Background(), textTo(fmt.Sprintf("u%d", i), "x")); err != nil {
								t.Errorf("send %d: %v", i, err)
							}
						}()
					}
				}
				tc.invalidate(t, srv, send)
				wg.Wait()
				if got := srv.TokenFetches(); got != 2 {
					t.Errorf("token fetches = %d, want 2 (one refetch)", got)
				}
				// In flight, every call carried the old token; from the
				// cache, calls starting after the refetch carry the new.
				got, minCalls := count(srv, wechat.PathCustomSend), n+1
				if tc.name == "while in flight" {
					minCalls = 2 * n
				}
				if got < minCalls || got > 2*n {
					t.Errorf("calls = %d, want %d..%d", got, minCalls, 2*n)
				}
				for i := range n {
					if got := texts(srv, fmt.Sprintf("u%d", i)); len(got) != 1 {
						t.Errorf("u%d got %d messages, want 1", i, len(got))
					}
				}
				if tok, _ := c.Token(context.Background()); tok == old {
					t.Error("the invalidated token is still cached")
				}
			})
		}
	}
}

// Each token errcode drops the token, refetches once and retries once.
func TestTokenErrorsRefetchOnce(t *testing.T) {
	for _, code := range []int{40001, 40014, 42001, 41001} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			srv := fakeAPI(t)
			c := apiClient(srv, nil, nil)
			if _, err := c.Token(context.Background()); err != nil {
				t.Fatal(err)
			}
			srv.FailNext(wechat.PathCustomSend, code, 1)
			if err := c.SendCustom(context.Background(), textTo("u", "x")); err != nil {
				t.Fatalf("send: %v", err)
			}
			if got := srv.TokenFetches(); got != 2 {
				t.Errorf("token fetches = %d, want 2", got)
			}
			if got, ok := count(srv, wechat.PathCustomSend), len(srv.Accepted(wechat.PathCustomSend)); got != 2 || ok != 1 {
				t.Errorf("calls = %d (accepted %d), want 2 (1)", got, ok)
			}
		})
	}
}

// A second token error in a row is returned, not retried forever.
func TestTokenErrorTwiceIsReturned(t *testing.T) {
	srv := fakeAPI(t)
	c := apiClient(srv, nil, nil)
	srv.FailNext(wechat.PathCustomSend, 40001, 5)
	err := c.SendCustom(context.Background(), textTo("u", "x"))
	var ae *wechat.APIError
	if !errors.As(err, &ae) || ae.Code != 40001 || ae.API != wechat.PathCustomSend {
		t.Fatalf("err = %v, want APIError 40001 from custom/send", err)
	}
	if got := count(srv, wechat.PathCustomSend); got != 2 {
		t.Errorf("calls = %d, want 2", got)
	}
}

// Errors come back typed for errors.As.
func TestErrorsAreTyped(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*wechattest.Server)
		mod   func(*wechat.ClientOptions)
		check func(error) bool
	}{
		{"errcode", func(s *wechattest.Server) { s.FailNext(wechat.PathCustomSend, 45047, 1) }, nil, func(err error) bool {
			var ae *wechat.APIError
			return errors.As(err, &ae) && ae.Code == 45047 && ae.API == wechat.PathCustomSend
		}},
		{"http status", func(s *wechattest.Server) { s.FailHTTP(wechat.PathCustomSend, 503, 1) }, nil, func(err error) bool {
			var he *wechat.HTTPError
			return errors.As(err, &he) && he.StatusCode == 503 && wechat.Retryable(err)
		}},
		{"bad credentials", func(*wechattest.Server) {}, func(o *wechat.ClientOptions) { o.AppSecret = "another secret" }, func(err error) bool {
			var ae *wechat.APIError
			return errors.As(err, &ae) && ae.Code == 40125 && ae.API == wechat.PathStableToken
		}},
		// A gateway's page, an empty body or a runaway answer with status
		// 200 did not come from WeChat: retried like a network error.
		{"html with status 200", func(s *wechattest.Server) { s.FailBody(wechat.PathCustomSend, "<html>502 Bad Gateway</html>", 1) }, nil, isBadAnswer},
		{"empty body", func(s *wechattest.Server) { s.FailBody(wechat.PathCustomSend, "", 1) }, nil, isBadAnswer},
		{"answer over 1 MiB", func(s *wechattest.Server) {
			s.FailBody(wechat.PathCustomSend, `{"errcode":0,"errmsg":"`+strings.Repeat("x", 1<<20)+`"}`, 1)
		}, nil, isBadAnswer},
		{"token answer without a token", func(s *wechattest.Server) { s.FailBody(wechat.PathStableToken, `{"expires_in":7200}`, 1) }, nil, isBadAnswer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeAPI(t)
			c := apiClient(srv, nil, tt.mod)
			tt.setup(srv)
			if err := c.SendCustom(context.Background(), textTo("u", "x")); !tt.check(err) {
				t.Errorf("err = %v (%T)", err, err)
			}
		})
	}
}

func isBadAnswer(err error) bool {
	var bad *wechat.BadAnswerError
	return errors.As(err, &bad) && wechat.Retryable(err)
}

// Neither the token nor the secret reaches an error string or a log
// line, even when net/http quotes the full URL.
func TestSecretsNeverInErrorsOrLogs(t *testing.T) {
	for _, mode := range tokenModes {
		t.Run(mode.name, func(t *testing.T) {
			sink, log := newLog()
			srv := fakeAPI(t)
			c := apiClient(srv, log, func(o *wechat.ClientOptions) { o.UseLegacyToken = mode.legacy })
			tok, err := c.Token(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			// A client of its own for the transport error: c's calls are
			// paused after WeChat refused its fresh token.
			c2 := apiClient(srv, log, func(o *wechat.ClientOptions) { o.UseLegacyToken = mode.legacy })
			tok2, err := c2.Token(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			srv.FailNext(wechat.PathCustomSend, 40001, 2)
			errToken := c.SendCustom(context.Background(), textTo("u", "x"))
			srv.Close() // from now on every call is a transport error
			c2.CloseIdleConnections()
			errNet := c2.SendCustom(context.Background(), textTo("u", "x"))
			_, errFetch := apiClient(srv, log, func(o *wechat.ClientOptions) { o.UseLegacyToken = mode.legacy }).Token(context.Background())
			// A token API whose errmsg quotes the secret.
			echo := fakeAPI(t)
			echo.FailBody(mode.api, `{"errcode":40125,"errmsg":"invalid appsecret `+echo.AppSecret+`"}`, 1)
			_, errEcho := apiClient(echo, log, func(o *wechat.ClientOptions) { o.UseLegacyToken = mode.legacy }).Token(context.Background())
			for _, err := range []error{errToken, errNet, errFetch, errEcho} {
				if err == nil {
					t.Fatal("expected an error")
				}
				msg := err.Error()
				var ue *url.Error
				if errors.As(err, &ue) {
					msg += " " + ue.URL + " " + ue.Error()
				}
				if strings.Contains(msg, tok) || strings.Contains(msg, tok2) || strings.Contains(msg, srv.AppSecret) {
					t.Errorf("secret in error: %s", msg)
				}
			}
			if !strings.Contains(errNet.Error(), "access_token=REDACTED") {
				t.Errorf("transport error does not show the scrubbed URL: %v", errNet)
			}
			if logs := sink.String(); strings.Contains(logs, tok) || strings.Contains(logs, srv.AppSecret) {
				t.Errorf("secret in logs:\n%s", logs)
			}
		})
	}
}

// Text is sent without HTML escaping, so links stay links.
func TestJSONIsNotHTMLEscaped(t *testing.T) {
	srv := fakeAPI(t)
	c := apiClient(srv, nil, nil)
	link := `<a href="https://example.com/?a=1&b=2" data-miniprogram-appid="wx1">订单</a>`
	if err := c.SendCustom(context.Background(), textTo("u", link)); err != nil {
		t.Fatal(err)
	}
	body := string(srv.Received()[0].Body)
	for _, want := range []string{`<a href=`, `?a=1&b=2`, `">订单</a>`} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %s verbatim: %s", want, body)
		}
	}
	if got := srv.Received()[0].Custom.Text.Content; got != link {
		t.Errorf("content decoded as %q", got)
	}
}

// Every msgtype of the contract goes out as the fake API accepts it,
// field for field.
func TestEveryMsgTypeIsAccepted(t *testing.T) {
	msgs := []*wechat.CustomMessage{
		{MsgType: "text", Text: &wechat.Text{Content: "hello"}},
		{MsgType: "image", Image: &wechat.Media{MediaID: "IMG"}},
		{MsgType: "voice", Voice: &wechat.Media{MediaID: "VOICE"}},
		{MsgType: "video", Video: &wechat.Video{MediaID: "VID", ThumbMediaID: "TH", Title: "t", Description: "d"}},
		{MsgType: "music", Music: &wechat.Music{Title: "t", MusicURL: "https://m/a.mp3", HQMusicURL: "https://m/a.flac", ThumbMediaID: "TH"}},
		{MsgType: "news", News: &wechat.News{Articles: []wechat.Article{{Title: "t", Description: "d", URL: "https://e/x", PicURL: "https://e/p.png"}}}},
		{MsgType: "mpnews", MPNews: &wechat.Media{MediaID: "NEWS"}},
		{MsgType: "mpnewsarticle", MPNewsArticle: &wechat.MPNewsArticle{ArticleID: "ART"}},
		{MsgType: "msgmenu", MsgMenu: &wechat.MsgMenu{HeadContent: "h", List: []wechat.MsgMenuItem{{ID: "101", Content: "yes"}}, TailContent: "t"}},
		{MsgType: "wxcard", WxCard: &wechat.WxCard{CardID: "CARD"}},
		{MsgType: "miniprogrampage", MiniProgramPage: &wechat.MiniProgramPage{Title: "t", AppID: "wxapp", PagePath: "pages/i", ThumbMediaID: "TH"}},
	}
	srv := fakeAPI(t)
	c := apiClient(srv, nil, nil)
	for _, m := range msgs {
		t.Run(m.MsgType, func(t *testing.T) {
			m.ToUser = "user-" + m.MsgType
			m.CustomService = &wechat.CustomService{KfAccount: "kf1@acct"}
			if err := c.SendCustom(context.Background(), m); err != nil {
				t.Fatalf("send: %v", err)
			}
			rs := srv.Received()
			got := rs[len(rs)-1]
			if !got.OK() || !reflect.DeepEqual(got.Custom, m) {
				t.Errorf("received %+v (errcode %d), want %+v", got.Custom, got.ErrCode, m)
			}
		})
	}
}

func TestSendTemplateReturnsMsgID(t *testing.T) {
	srv := fakeAPI(t, wechattest.WithTemplates("TPL_OK"))
	c := apiClient(srv, nil, nil)
	tm := &wechat.TemplateMessage{ToUser: "u", TemplateID: "TPL_OK", URL: "https://e/x?a=1&b=2",
		Data: map[string]wechat.TemplateValue{"first": {Value: "<b>", Color: "#173177"}}}
	id, err := c.SendTemplate(context.Background(), tm)
	if err != nil {
		t.Fatal(err)
	}
	got := srv.Received()[0]
	if id == 0 || id != got.MsgID || !reflect.DeepEqual(got.Template, tm) {
		t.Errorf("msgid %d, received %+v (msgid %d)", id, got.Template, got.MsgID)
	}
	_, err = c.SendTemplate(context.Background(), &wechat.TemplateMessage{ToUser: "u", TemplateID: "TPL_OTHER"})
	var ae *wechat.APIError
	if !errors.As(err, &ae) || ae.Code != wechat.ErrCodeInvalidTemplateID {
		t.Errorf("unknown template: err = %v, want 40037", err)
	}
}

func TestTyping(t *testing.T) {
	srv := fakeAPI(t)
	c := apiClient(srv, nil, nil)
	for _, on := range []bool{true, false} {
		if err := c.Typing(context.Background(), "u", on); err != nil {
			t.Fatal(err)
		}
	}
	var cmds []string
	for _, r := range srv.Accepted(wechat.PathTyping) {
		cmds = append(cmds, r.Command)
	}
	if want := []string{wechat.TypingOn, wechat.TypingOff}; !reflect.DeepEqual(cmds, want) {
		t.Errorf("commands = %v, want %v", cmds, want)
	}
	if err := c.Typing(context.Background(), "", true); !errors.Is(err, wechat.ErrInvalidMessage) {
		t.Errorf("empty openid: err = %v", err)
	}
}
