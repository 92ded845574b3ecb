package wechat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

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

// results collects OnResult calls.
type results struct {
	mu   sync.Mutex
	byID map[string][]wechat.Result
	n    int
	more chan struct{}
}

func newResults() *results {
	return &results{byID: make(map[string][]wechat.Result), more: make(chan struct{})}
}

func (r *results) add(res wechat.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID[res.Outgoing.ID] = append(r.byID[res.Outgoing.ID], res)
	r.n++
	close(r.more)
	r.more = make(chan struct{})
}

// wait blocks until n results arrived.
func (r *results) wait(t testing.TB, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		r.mu.Lock()
		got, ch := r.n, r.more
		r.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("waited for %d results, got %d", n, got)
		}
	}
}

func (r *results) get(id string) []wechat.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]wechat.Result(nil), r.byID[id]...)
}

// startSender starts a Sender with fast retries; it is shut down when the
// test ends.
func startSender(t testing.TB, o wechat.SenderOptions) (*wechat.Sender, *results) {
	t.Helper()
	res := newResults()
	o.OnResult = res.add
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.BaseBackoff == 0 {
		o.BaseBackoff = time.Millisecond
	}
	s := wechat.NewSender(o)
	s.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s, res
}

func textTo(openid, content string) *wechat.CustomMessage {
	return &wechat.CustomMessage{ToUser: openid, MsgType: wechat.MsgTypeText, Text: &wechat.Text{Content: content}}
}

func textOut(openid, content string) wechat.Outgoing {
	return wechat.Outgoing{Rule: "test-rule", InMsgID: "in-" + content, Custom: textTo(openid, content)}
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
