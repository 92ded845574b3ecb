package wechattest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// The fake is tested over raw HTTP, independently of wechat.Client.

func start(t *testing.T, opts ...Option) *Server {
	t.Helper()
	s := NewServer(opts...)
	t.Cleanup(s.Close)
	return s
}

type reply struct {
	status int
	body   map[string]any
}

func (r reply) code() int {
	c, _ := r.body["errcode"].(float64)
	return int(c)
}

func do(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err) // not Fatal: do runs in goroutines too
		return reply{body: map[string]any{"errcode": -999.0}}
	}
	defer resp.Body.Close()
	r := reply{status: resp.StatusCode}
	_ = json.NewDecoder(resp.Body).Decode(&r.body)
	return r
}

func post(t *testing.T, s *Server, api, token, body string) reply {
	t.Helper()
	u := s.URL + api
	if token != "" {
		u += "?access_token=" + url.QueryEscape(token)
	}
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	return do(t, req)
}

func legacyToken(t *testing.T, s *Server, appID, secret string) reply {
	t.Helper()
	q := url.Values{"grant_type": {"client_credential"}, "appid": {appID}, "secret": {secret}}
	req, _ := http.NewRequest(http.MethodGet, s.URL+wechat.PathToken+"?"+q.Encode(), nil)
	return do(t, req)
}

func stableToken(t *testing.T, s *Server, force bool) string {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"grant_type": "client_credential", "appid": s.AppID, "secret": s.AppSecret, "force_refresh": force})
	r := post(t, s, wechat.PathStableToken, "", string(b))
	tok, _ := r.body["access_token"].(string)
	if tok == "" {
		t.Fatalf("no token: %v", r.body)
	}
	return tok
}

func text(openid string) string {
	return `{"touser":"` + openid + `","msgtype":"text","text":{"content":"hi"}}`
}

func TestTokenEndpoints(t *testing.T) {
	s := start(t)
	a := stableToken(t, s, false)
	if b := stableToken(t, s, false); b != a {
		t.Error("stable_token changed the token without force_refresh")
	}
	forced := stableToken(t, s, true)
	if forced == a {
		t.Error("force_refresh kept the token")
	}
	legacy := legacyToken(t, s, s.AppID, s.AppSecret).body["access_token"].(string)
	if legacy == forced {
		t.Error("/cgi-bin/token did not issue a new token")
	}
	if got := stableToken(t, s, false); got != forced {
		t.Error("a /cgi-bin/token fetch changed stable_token's token: the two are isolated")
	}
	// Superseded tokens live a grace period on; invalidation ends them all.
	for _, tok := range []string{a, forced, legacy} {
		if r := post(t, s, wechat.PathCustomSend, tok, text("u")); r.code() != 0 {
			t.Errorf("token within grace rejected: %v", r.body)
		}
	}
	s.InvalidateTokens()
	if r := post(t, s, wechat.PathCustomSend, legacy, text("u")); r.code() != 40001 {
		t.Errorf("invalidated token: %v", r.body)
	}
	if stableToken(t, s, false) == legacy {
		t.Error("stable_token answered an invalidated token")
	}
	if got := s.TokenFetches(); got != 6 {
		t.Errorf("TokenFetches = %d, want 6", got)
	}

	creds := []struct {
		name, appID, secret string
		legacy, stable      int // the errcodes of /cgi-bin/token and stable_token
	}{
		{"wrong appid", "wxother", s.AppSecret, 40013, 40013},
		{"wrong secret", s.AppID, "nope", 40001, 40125},
	}
	for _, c := range creds {
		if r := legacyToken(t, s, c.appID, c.secret); r.code() != c.legacy {
			t.Errorf("%s, /cgi-bin/token: %v, want %d", c.name, r.body, c.legacy)
		}
		b, _ := json.Marshal(map[string]any{"grant_type": "client_credential", "appid": c.appID, "secret": c.secret})
		if r := post(t, s, wechat.PathStableToken, "", string(b)); r.code() != c.stable {
			t.Errorf("%s, stable_token: %v, want %d", c.name, r.body, c.stable)
		}
	}
}

func TestTokenChecks(t *testing.T) {
	s := start(t, WithTokenTTL(50*time.Millisecond))
	expired := stableToken(t, s, false)
	time.Sleep(60 * time.Millisecond) // let the 50ms token expire
	tests := []struct {
		name, token string
		code        int
	}{
		{"missing", "", 41001},
		{"malformed", "garbage", 40014},
		{"unknown", tokenPrefix + "0000", 40001},
		{"expired", expired, 42001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := post(t, s, wechat.PathCustomSend, tt.token, text("u")); r.code() != tt.code {
				t.Errorf("answer %v, want %d", r.body, tt.code)
			}
		})
	}
}

func TestCustomPayloadChecks(t *testing.T) {
	s := start(t, WithStrictMedia())
	tok := stableToken(t, s, false)
	s.SetOutOfWindow("gone")
	tests := []struct {
		name, body string
		code       int
	}{
		{"text", text("u"), 0},
		{"malformed json", `{"touser":`, 47001},
		{"no touser", `{"msgtype":"text","text":{"content":"x"}}`, 40003},
		{"unknown msgtype", `{"touser":"u","msgtype":"sticker"}`, 40008},
		{"text without payload", `{"touser":"u","msgtype":"text"}`, 47001},
		{"empty content", `{"touser":"u","msgtype":"text","text":{"content":""}}`, 44004},
		{"news, one article", `{"touser":"u","msgtype":"news","news":{"articles":[{"title":"a"}]}}`, 0},
		{"news, two articles", `{"touser":"u","msgtype":"news","news":{"articles":[{"title":"a"},{"title":"b"}]}}`, 45008},
		{"news, none", `{"touser":"u","msgtype":"news","news":{"articles":[]}}`, 44003},
		{"image, unknown media (strict)", `{"touser":"u","msgtype":"image","image":{"media_id":"M"}}`, 40007},
		{"music without urls", `{"touser":"u","msgtype":"music","music":{"thumb_media_id":"M"}}`, 47001},
		{"msgmenu without list", `{"touser":"u","msgtype":"msgmenu","msgmenu":{"head_content":"h"}}`, 47001},
		{"msgmenu", `{"touser":"u","msgtype":"msgmenu","msgmenu":{"list":[{"id":"1","content":"yes"}]}}`, 0},
		{"mpnewsarticle", `{"touser":"u","msgtype":"mpnewsarticle","mpnewsarticle":{"article_id":"A"}}`, 0},
		{"wxcard without card", `{"touser":"u","msgtype":"wxcard","wxcard":{}}`, 47001},
		{"miniprogrampage without path", `{"touser":"u","msgtype":"miniprogrampage","miniprogrampage":{"title":"t","appid":"a"}}`, 47001},
		{"out of window", text("gone"), 45015},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := post(t, s, wechat.PathCustomSend, tok, tt.body); r.code() != tt.code {
				t.Errorf("answer %v, want %d", r.body, tt.code)
			}
		})
	}
	rs := s.Received()
	if len(rs) != len(tests) {
		t.Fatalf("recorded %d calls, want %d", len(rs), len(tests))
	}
	for i, tt := range tests {
		if rs[i].ErrCode != tt.code || string(rs[i].Body) != tt.body || rs[i].OK() != (tt.code == 0) {
			t.Errorf("record %d = %+v", i, rs[i])
		}
	}
}

func TestTemplateAndTyping(t *testing.T) {
	s := start(t, WithTemplates("T1"))
	tok := stableToken(t, s, false)
	s.SetOutOfWindow("gone")
	tests := []struct {
		name, api, body string
		code            int
	}{
		{"template", wechat.PathTemplateSend, `{"touser":"u","template_id":"T1","data":{}}`, 0},
		{"template, unknown id", wechat.PathTemplateSend, `{"touser":"u","template_id":"T2"}`, 40037},
		{"template, no touser", wechat.PathTemplateSend, `{"template_id":"T1"}`, 40003},
		{"template ignores the window", wechat.PathTemplateSend, `{"touser":"gone","template_id":"T1"}`, 0},
		{"typing", wechat.PathTyping, `{"touser":"u","command":"Typing"}`, 0},
		{"typing, bad command", wechat.PathTyping, `{"touser":"u","command":"Dance"}`, 47001},
		{"typing out of window", wechat.PathTyping, `{"touser":"gone","command":"Typing"}`, 45015},
	}
	var msgids []float64
	for _, tt := range tests {
		r := post(t, s, tt.api, tok, tt.body)
		if r.code() != tt.code {
			t.Errorf("%s: %v, want %d", tt.name, r.body, tt.code)
		}
		if id, ok := r.body["msgid"].(float64); ok {
			msgids = append(msgids, id)
		}
	}
	if len(msgids) != 2 || msgids[0] == msgids[1] {
		t.Errorf("msgids = %v, want two distinct", msgids)
	}
}

func upload(t *testing.T, s *Server, tok, mediaType, field string) reply {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	fw, _ := mw.CreateFormFile(field, "pic.jpg")
	_, _ = fw.Write([]byte("jpeg bytes"))
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, s.URL+wechat.PathMediaUpload+"?type="+mediaType+"&access_token="+tok, &b)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return do(t, req)
}

func TestMediaUpload(t *testing.T) {
	s := start(t, WithStrictMedia())
	tok := stableToken(t, s, false)
	img := upload(t, s, tok, "image", "media")
	id, _ := img.body["media_id"].(string)
	if img.code() != 0 || id == "" {
		t.Fatalf("upload: %v", img.body)
	}
	if th := upload(t, s, tok, "thumb", "media"); th.body["thumb_media_id"] == nil || th.body["media_id"] != nil {
		t.Errorf("thumb upload answered %v, want thumb_media_id", th.body)
	}
	if r := upload(t, s, tok, "sticker", "media"); r.code() != 40004 {
		t.Errorf("bad type: %v", r.body)
	}
	if r := upload(t, s, tok, "image", "file"); r.code() != 41005 {
		t.Errorf("wrong field: %v", r.body)
	}
	msg := `{"touser":"u","msgtype":"image","image":{"media_id":"` + id + `"}}`
	if r := post(t, s, wechat.PathCustomSend, tok, msg); r.code() != 0 {
		t.Errorf("issued media refused: %v", r.body)
	}
	s.ExpireMedia(id)
	if r := post(t, s, wechat.PathCustomSend, tok, msg); r.code() != 40007 {
		t.Errorf("expired media: %v", r.body)
	}
}

func TestFailureControls(t *testing.T) {
	s := start(t)
	tok := stableToken(t, s, false)
	s.FailNext(wechat.PathCustomSend, -1, 2)
	s.FailHTTP(wechat.PathCustomSend, 502, 1)
	want := []struct{ status, code int }{{502, 0}, {200, -1}, {200, -1}, {200, 0}}
	for i, w := range want {
		r := post(t, s, wechat.PathCustomSend, tok, text("u"))
		if r.status != w.status || r.code() != w.code {
			t.Errorf("call %d: status %d errcode %d, want %d %d", i, r.status, r.code(), w.status, w.code)
		}
	}

	s.FailBody(wechat.PathCustomSend, "<html>gateway</html>", 1)
	resp, err := http.Post(s.URL+wechat.PathCustomSend+"?access_token="+tok, "application/json", strings.NewReader(text("u")))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(raw) != "<html>gateway</html>" {
		t.Errorf("FailBody answered %d %q", resp.StatusCode, raw)
	}
	if last := s.Received()[len(s.Received())-1]; !last.Garbled || last.OK() {
		t.Errorf("garbled call recorded as %+v", last)
	}

	n := len(s.Received())
	s.DelayNext(wechat.PathCustomSend, time.Second, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+wechat.PathCustomSend+"?access_token="+tok, strings.NewReader(text("u")))
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Error("a delayed call answered within the client's timeout")
	}
	if err := s.WaitReceived(context.Background(), n+1); err != nil {
		t.Fatal(err)
	}
	if last := s.Received()[n]; !last.Abandoned || last.OK() {
		t.Errorf("timed-out call recorded as %+v", last)
	}
}

func TestOnReceiveAndWait(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	s := start(t, WithOnReceive(func(r Received) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.OpenID)
	}))
	tok := stableToken(t, s, false)
	done := make(chan error, 1)
	go func() { done <- s.WaitReceived(context.Background(), 3) }()
	for _, u := range []string{"a", "b", "c"} {
		post(t, s, wechat.PathCustomSend, tok, text(u))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, ",") != "a,b,c" {
		t.Errorf("OnReceive saw %v", seen)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s.WaitReceived(ctx, 4); err == nil {
		t.Error("WaitReceived returned without the calls")
	}
}

func TestHoldAndWaitPending(t *testing.T) {
	s := start(t)
	tok := stableToken(t, s, false)
	release := s.Hold(wechat.PathCustomSend)
	answers := make(chan int, 2)
	for _, u := range []string{"a", "b"} {
		go func() { answers <- post(t, s, wechat.PathCustomSend, tok, text(u)).code() }()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitPending(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Received()); n != 0 {
		t.Fatalf("%d calls answered while held", n)
	}
	s.InvalidateTokens() // a change the held calls must see
	release()
	for range 2 {
		if code := <-answers; code != 40001 {
			t.Errorf("held call answered %d, want 40001", code)
		}
	}
	if r := post(t, s, wechat.PathCustomSend, stableToken(t, s, false), text("c")); r.code() != 0 {
		t.Errorf("call after release: %v", r.body)
	}
}
