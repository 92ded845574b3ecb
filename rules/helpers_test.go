package rules

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

// mustParse parses src as testdata/NAME.yaml, so that file: paths resolve
// under testdata.
func mustParse(t testing.TB, src string, opts ...Option) *Set {
	t.Helper()
	s, err := Parse(filepath.Join("testdata", "inline.yaml"), []byte(src), opts...)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return s
}

// logBuffer returns a logger writing JSON lines into the returned buffer,
// which goroutines (a watcher's) may write while the test reads it.
func logBuffer() (*slog.Logger, *syncBuffer) {
	b := new(syncBuffer)
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

const testUser = "oUSER"

func textMsg(content string) *wechat.Message {
	return &wechat.Message{FromUserName: testUser, ToUserName: "gh_acct", MsgType: "text", Content: content, MsgId: "1001"}
}

func voiceMsg(recognition string) *wechat.Message {
	return &wechat.Message{FromUserName: testUser, ToUserName: "gh_acct", MsgType: "voice", Recognition: recognition, MsgId: "1002"}
}

func eventMsg(event, key string) *wechat.Message {
	return &wechat.Message{FromUserName: testUser, ToUserName: "gh_acct", MsgType: "event", Event: event, EventKey: key, CreateTime: 1700000000}
}
