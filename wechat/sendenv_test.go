package wechat_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// Helpers of the sending-side tests: a fake API per test, a client and a
// sender pointed at it, and a log that can be searched.

func fakeAPI(t testing.TB, opts ...wechattest.Option) *wechattest.Server {
	t.Helper()
	srv := wechattest.NewServer(opts...)
	t.Cleanup(srv.Close)
	return srv
}

func apiClient(srv *wechattest.Server, log *slog.Logger, mod func(*wechat.ClientOptions)) *wechat.Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := wechat.ClientOptions{BaseURL: srv.URL, AppID: srv.AppID, AppSecret: srv.AppSecret, Logger: log}
	if mod != nil {
		mod(&o)
	}
	return wechat.NewClient(o)
}

// logSink is a concurrency-safe JSON log that tests read back.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lines returns the decoded log lines whose msg is msg.
func (l *logSink) lines(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func newLog() (*logSink, *slog.Logger) {
	sink := &logSink{}
	return sink, slog.New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func textTo(openid, content string) *wechat.CustomMessage {
	return &wechat.CustomMessage{ToUser: openid, MsgType: wechat.MsgTypeText, Text: &wechat.Text{Content: content}}
}

// texts returns the contents of the accepted text messages to openid.
func texts(srv *wechattest.Server, openid string) []string {
	var out []string
	for _, r := range srv.Accepted(wechat.PathCustomSend) {
		if r.OpenID == openid && r.Custom.Text != nil {
			out = append(out, r.Custom.Text.Content)
		}
	}
	return out
}

func count(srv *wechattest.Server, api string) int {
	n := 0
	for _, r := range srv.Received() {
		if r.API == api {
			n++
		}
	}
	return n
}
