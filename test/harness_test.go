// Package test is wxreply's end-to-end suite: captured XML is signed (and
// encrypted) as WeChat would, posted to the real Echo server, matched
// against real rules and delivered through the real Sender to a fake
// WeChat API that checks what it receives.
package test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxreply/wxreply/handlers"
	"github.com/wxreply/wxreply/rules"
	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// The test account of the captures (test/testdata/keys.txt).
const (
	testToken     = "wxreplytoken"
	testAppID     = "wxtest0000000001"
	testAESKey    = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	testAppSecret = "e2e-app-secret-must-never-be-logged"
)

// harness is one running wxreply: the real handlers, rules and Sender,
// talking to a fake WeChat API.
type harness struct {
	api    *wechattest.Server
	srv    *httptest.Server
	sender *wechat.Sender
	window *wechat.Window
	cipher *wechat.Cipher
	seen   *seenMessages
	logs   *syncBuffer
}

type harnessOptions struct {
	rules   string // rules file; default testdata/rules.yaml
	sender  wechat.SenderOptions
	noStart bool
	quiet   bool // log warnings only, for load tests
}

func newHarness(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	if o.rules == "" {
		o.rules = filepath.Join("testdata", "rules.yaml")
	}
	h := &harness{logs: &syncBuffer{}, seen: &seenMessages{}}
	level := slog.LevelDebug
	if o.quiet {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: level}))
	h.api = wechattest.NewServer(wechattest.WithCredentials(testAppID, testAppSecret))
	t.Cleanup(h.api.Close)

	cipher, err := wechat.NewCipher(testAESKey, testAppID)
	if err != nil {
		t.Fatal(err)
	}
	h.cipher = cipher
	engine, err := rules.NewEngine(o.rules, rules.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	client := wechat.NewClient(wechat.ClientOptions{
		BaseURL: h.api.URL, AppID: testAppID, AppSecret: testAppSecret, Logger: log,
	})
	h.window = wechat.NewWindow(wechat.DefaultWindow)
	so := o.sender
	so.Client, so.Window, so.Logger = client, h.window, log
	if so.BaseBackoff == 0 {
		so.BaseBackoff = 5 * time.Millisecond
	}
	h.sender = wechat.NewSender(so)
	if !o.noStart {
		h.sender.Start()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.sender.Shutdown(ctx)
	})
	responder := &rules.Responder{Rules: engine, Sender: h.sender, Window: h.window, Logger: log}
	h.srv = httptest.NewServer(handlers.New(handlers.Config{
		Token:     testToken,
		Cipher:    cipher,
		Responder: h.seen.wrap(responder),
		Logger:    log,
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// capture reads a captured callback: mode is plain, safe or compat.
func capture(t testing.TB, mode, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", mode, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post signs body as WeChat would and posts it to /wechat. Bodies with an
// <Encrypt> element go with encrypt_type=aes and msg_signature.
func (h *harness) post(t testing.TB, body []byte) (int, string) {
	t.Helper()
	return postCallback(t, h.srv.URL, body)
}

// callbackNonce makes each signed request's nonce unique.
var callbackNonce atomic.Int64

// postCallback signs body as WeChat would and posts it to base's /wechat.
func postCallback(t testing.TB, base string, body []byte) (int, string) {
	t.Helper()
	m, err := wechat.ParseMessage(body)
	if err != nil {
		t.Fatalf("capture does not parse: %v", err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	nonce := strconv.FormatInt(callbackNonce.Add(1), 10)
	q := wechat.CallbackQuery(testToken, ts, nonce, m.FromUserName, m.Encrypt)
	resp, err := http.Post(base+"/wechat?"+q.Encode(), "text/xml", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// text builds a plaintext text message from openid with a fresh MsgId.
func text(openid, content string, msgID int64) []byte {
	return []byte("<xml><ToUserName><![CDATA[gh_test0000001]]></ToUserName><FromUserName><![CDATA[" + openid +
		"]]></FromUserName><CreateTime>" + strconv.FormatInt(time.Now().Unix(), 10) +
		"</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[" + content +
		"]]></Content><MsgId>" + strconv.FormatInt(msgID, 10) + "</MsgId></xml>")
}

// waitDelivered waits until the fake has accepted n customer-service or
// template messages, and returns them.
func (h *harness) waitDelivered(t testing.TB, n int) []wechattest.Received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		got := h.delivered()
		if len(got) >= n {
			return got
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d messages delivered, want %d; %d calls received, sender %+v",
				len(got), n, len(h.api.Received()), h.sender.Stats())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (h *harness) delivered() []wechattest.Received {
	var out []wechattest.Received
	for _, r := range h.api.Received() {
		if r.OK() && (r.API == wechat.PathCustomSend || r.API == wechat.PathTemplateSend) {
			out = append(out, r)
		}
	}
	return out
}

// seenMessages records what the handlers parsed, in front of the real
// Responder.
type seenMessages struct {
	mu   sync.Mutex
	msgs []*wechat.Message
}

type recordingResponder struct {
	seen *seenMessages
	next handlers.Responder
}

func (s *seenMessages) wrap(next handlers.Responder) handlers.Responder {
	return recordingResponder{seen: s, next: next}
}

func (r recordingResponder) Respond(ctx context.Context, m *wechat.Message) *wechat.CustomMessage {
	r.seen.mu.Lock()
	r.seen.msgs = append(r.seen.msgs, m)
	r.seen.mu.Unlock()
	return r.next.Respond(ctx, m)
}

func (s *seenMessages) last() *wechat.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.msgs) == 0 {
		return nil
	}
	return s.msgs[len(s.msgs)-1]
}

func (s *seenMessages) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// syncBuffer is a log sink that is safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the log lines that contain every one of subs.
func (b *syncBuffer) lines(subs ...string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		ok := l != ""
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}
