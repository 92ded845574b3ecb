package handlers_test

// Callbacks through the real parts behind the HTTP surface: the
// server.Responder deciding with a rules set and recording in a
// delivery.Engine on an in-memory store. This is an external test
// package because server imports handlers.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/handlers"
	"github.com/wxreply/wxreply/rules"
	"github.com/wxreply/wxreply/server"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// The test account of the captures (test/testdata/keys.txt).
const (
	token  = "wxreplytoken"
	appID  = "wxtest0000000001"
	aesKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
)

// testRules answer the text capture ("你好") with a passive reply and a
// customer-service message, and a follow with a customer-service message.
const testRules = `
rules:
  - name: greeting
    match:
      text:
        equals: [你好]
    passive: true
    reply:
      - text: "你好！"
      - text: "有什么可以帮您？"
  - name: welcome
    match:
      event: subscribe
    reply:
      - text: "欢迎关注！"
`

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// flakyOutbox is the real engine behind a switch: while failing, Accept
// fails as the engine does when its store cannot be written.
type flakyOutbox struct {
	*delivery.Engine
	failing atomic.Bool
}

func (o *flakyOutbox) Accept(ctx context.Context, r delivery.Request) (delivery.Accepted, error) {
	if o.failing.Load() {
		return delivery.Accepted{}, fmt.Errorf("%w: store memory: disk I/O error", delivery.ErrUnavailable)
	}
	return o.Engine.Accept(ctx, r)
}

// stack is the HTTP surface with the real Responder, rules and outbox.
// The engine is not started: what the callbacks recorded stays in the
// store to be counted.
type stack struct {
	srv    *httptest.Server
	engine *delivery.Engine
	store  store.Store
	outbox *flakyOutbox
	cipher *wechat.Cipher
}

// newStack is an account with the test EncodingAESKey when keyed (safe
// or compatible mode: plaintext bodies are refused), in plaintext mode
// otherwise. The stack's cipher decrypts replies either way.
func newStack(t *testing.T, keyed bool) *stack {
	t.Helper()
	set, err := rules.Parse("rules.yaml", []byte(testRules))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Memory, store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	api := wechattest.NewServer()
	t.Cleanup(api.Close)
	client := wechat.NewClient(wechat.ClientOptions{BaseURL: api.URL, AppID: wechattest.DefaultAppID,
		AppSecret: wechattest.DefaultAppSecret, Logger: quiet})
	t.Cleanup(client.Close)
	engine := delivery.New(delivery.Options{Store: st, Client: client, Logger: quiet})
	cipher, err := wechat.NewCipher(aesKey, appID)
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{engine: engine, store: st, outbox: &flakyOutbox{Engine: engine}, cipher: cipher}
	var srvCipher *wechat.Cipher
	if keyed {
		srvCipher = cipher
	}
	s.srv = httptest.NewServer(handlers.New(handlers.Config{
		Token:     token,
		Cipher:    srvCipher,
		Responder: &server.Responder{Rules: set, Outbox: s.outbox, Logger: quiet, Now: time.Now},
		Logger:    quiet,
		Health:    st.Healthy,
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// pending counts the replies recorded and not yet sent.
func (s *stack) pending(t *testing.T) int {
	t.Helper()
	n, err := s.engine.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func captured(t *testing.T, mode, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "test", "testdata", mode, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nonces makes each postCallback's signed query its own, as WeChat's
// are: one signed query serves one body.
var nonces atomic.Int64

// postCallback signs body as WeChat would, now, with a nonce of its own,
// and posts it to base: with encrypt_type=aes and msg_signature when it
// has an <Encrypt>.
func postCallback(t *testing.T, base string, body []byte) (int, string) {
	t.Helper()
	env, err := wechat.ParseMessage(body)
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	q := wechat.CallbackQuery(token, ts, "nonce"+strconv.FormatInt(nonces.Add(1), 10), "oTEST_user_0001", env.Encrypt)
	resp, err := http.Post(base+"/wechat?"+q.Encode(), "text/xml", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// replyText is the Content of a passive reply, decrypted when encrypted
// says so; it fails the test when the reply is not in that mode.
func replyText(t *testing.T, cipher *wechat.Cipher, body string, encrypted bool) string {
	t.Helper()
	m, err := wechat.ParseMessage([]byte(body))
	if err != nil {
		t.Fatalf("reply %q: %v", body, err)
	}
	if (m.Encrypt != "") != encrypted {
		t.Fatalf("reply %s: want encrypted %v", body, encrypted)
	}
	if !encrypted {
		return m.Content
	}
	if m.Content != "" {
		t.Fatalf("an encrypted reply carries the plaintext: %s", body)
	}
	plain, err := cipher.Decrypt(m.Encrypt)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := wechat.ParseMessage(plain)
	if err != nil {
		t.Fatal(err)
	}
	return inner.Content
}

// TestRetriesRecognisedByTheStore: WeChat's retries of a callback that
// was answered (its first copy and three retries, one after the other)
// get the first copy's answer and record nothing more: the mark the
// first copy left in the store recognises them. Events are recognised
// on FromUserName + CreateTime + Event. So in plaintext mode and, with a
// key, in safe mode.
func TestRetriesRecognisedByTheStore(t *testing.T) {
	for _, tt := range []struct {
		mode  string
		keyed bool
	}{{"plain", false}, {"safe", true}} {
		t.Run(tt.mode, func(t *testing.T) {
			s := newStack(t, tt.keyed)
			body := captured(t, tt.mode, "text.xml")
			var first string
			for i := range 4 {
				code, reply := postCallback(t, s.srv.URL, body)
				if code != 200 {
					t.Fatalf("copy %d: status %d %q", i, code, reply)
				}
				if got := replyText(t, s.cipher, reply, tt.keyed); got != "你好！" {
					t.Fatalf("copy %d answered %q, want the passive reply", i, reply)
				}
				if i == 0 {
					first = reply
				} else if !tt.keyed && reply != first {
					// Encrypted answers differ copy to copy: each is
					// sealed for its own copy.
					t.Errorf("retry %d answered %q, want the first answer %q", i, reply, first)
				}
			}
			if n := s.pending(t); n != 1 {
				t.Fatalf("%d replies recorded for 4 copies, want 1", n)
			}
			ev := captured(t, tt.mode, "event_subscribe.xml")
			for i := range 2 {
				if code, reply := postCallback(t, s.srv.URL, ev); code != 200 || reply != "success" {
					t.Fatalf("event copy %d: %d %q", i, code, reply)
				}
			}
			if n := s.pending(t); n != 2 {
				t.Fatalf("%d replies recorded after a repeated event, want 2", n)
			}
		})
	}
}

// TestRetriesAnsweredInTheirOwnMode: a retry recognised by the store gets
// the first copy's passive reply encrypted (or not) for itself. With a
// key every copy is encrypted, in safe or compatible mode, and a
// plaintext copy is refused (403) and records nothing; without a key,
// compatible mode is answered in plaintext.
func TestRetriesAnsweredInTheirOwnMode(t *testing.T) {
	for _, tt := range []struct {
		name                     string
		keyed                    bool
		first, retry             string // capture modes
		firstEncrypted, retryEnc bool
		retryCode                int
	}{
		{"encrypted twice", true, "safe", "safe", true, true, 200},
		{"encrypted, then compatible mode", true, "safe", "compat", true, true, 200},
		{"compatible mode, then encrypted", true, "compat", "safe", true, true, 200},
		{"encrypted, then plaintext under a key", true, "safe", "plain", true, false, http.StatusForbidden},
		{"compatible mode, then plaintext under a key", true, "compat", "plain", true, false, http.StatusForbidden},
		{"plaintext, then compatible mode without a key", false, "plain", "compat", false, false, 200},
		{"compatible mode without a key, then plaintext", false, "compat", "plain", false, false, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, tt.keyed)
			code, body := postCallback(t, s.srv.URL, captured(t, tt.first, "text.xml"))
			if code != 200 || replyText(t, s.cipher, body, tt.firstEncrypted) != "你好！" {
				t.Fatalf("first copy: %d %q", code, body)
			}
			code, body = postCallback(t, s.srv.URL, captured(t, tt.retry, "text.xml"))
			if code != tt.retryCode {
				t.Fatalf("retry: %d %q, want %d", code, body, tt.retryCode)
			}
			if code == 200 && replyText(t, s.cipher, body, tt.retryEnc) != "你好！" {
				t.Fatalf("retry: %d %q", code, body)
			}
			if n := s.pending(t); n != 1 {
				t.Fatalf("%d replies recorded, want 1", n)
			}
		})
	}
	t.Run("plaintext under a key records nothing", func(t *testing.T) {
		s := newStack(t, true)
		for _, name := range []string{"text.xml", "event_subscribe.xml"} {
			if code, body := postCallback(t, s.srv.URL, captured(t, "plain", name)); code != http.StatusForbidden {
				t.Fatalf("plaintext %s: %d %q, want 403", name, code, body)
			}
		}
		if n := s.pending(t); n != 0 {
			t.Fatalf("%d replies recorded for refused plaintext callbacks, want 0", n)
		}
		// Nor did they leave a mark: the encrypted message is handled.
		code, body := postCallback(t, s.srv.URL, captured(t, "safe", "text.xml"))
		if code != 200 || replyText(t, s.cipher, body, true) != "你好！" {
			t.Fatalf("encrypted copy: %d %q", code, body)
		}
		if n := s.pending(t); n != 1 {
			t.Fatalf("%d replies recorded, want 1", n)
		}
	})
}

// TestStoreFailureAnswered503: a callback the store cannot record is
// answered 503, never success, and leaves nothing behind: WeChat's retry,
// once the store is back, is handled and recorded once. So in plaintext
// mode and, with a key, in safe mode.
func TestStoreFailureAnswered503(t *testing.T) {
	for _, tt := range []struct {
		mode  string
		keyed bool
	}{{"plain", false}, {"safe", true}} {
		t.Run(tt.mode, func(t *testing.T) {
			s := newStack(t, tt.keyed)
			body := captured(t, tt.mode, "text.xml")
			s.outbox.failing.Store(true)
			for i := range 2 {
				if code, reply := postCallback(t, s.srv.URL, body); code != http.StatusServiceUnavailable || strings.Contains(reply, "success") {
					t.Fatalf("copy %d with the store failing: %d %q, want 503", i, code, reply)
				}
			}
			if n := s.pending(t); n != 0 {
				t.Fatalf("%d replies recorded while the store failed", n)
			}
			s.outbox.failing.Store(false)
			for i := range 2 {
				code, reply := postCallback(t, s.srv.URL, body)
				if code != 200 || replyText(t, s.cipher, reply, tt.keyed) != "你好！" {
					t.Fatalf("retry %d once the store is back: %d %q", i, code, reply)
				}
			}
			if n := s.pending(t); n != 1 {
				t.Fatalf("%d replies recorded, want 1", n)
			}

			// A closed store fails the same way.
			if err := s.store.Close(); err != nil {
				t.Fatal(err)
			}
			if code, reply := postCallback(t, s.srv.URL, captured(t, tt.mode, "event_subscribe.xml")); code != http.StatusServiceUnavailable {
				t.Errorf("%s event with the store closed: %d %q, want 503", tt.mode, code, reply)
			}
		})
	}
}

// TestServerWiring: the server package's wiring of this HTTP surface:
// /healthz reports the rules and store, and /metrics carries the outbox's
// figures next to the HTTP ones.
func TestServerWiring(t *testing.T) {
	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesPath, []byte(testRules), 0o600); err != nil {
		t.Fatal(err)
	}
	api := wechattest.NewServer(wechattest.WithCredentials(appID, "secret"))
	t.Cleanup(api.Close)
	srvr, err := server.New(server.Config{
		Token: token, AppID: appID, AppSecret: "secret", AESKey: aesKey,
		APIBase: api.URL, RulesPath: rulesPath, Store: store.Memory, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvr.Close() })
	srv := httptest.NewServer(srvr.Handler())
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok\n" {
		t.Fatalf("healthz %d %q, want 200 ok", resp.StatusCode, b)
	}

	for _, mode := range []string{"safe", "compat", "safe"} {
		if code, reply := postCallback(t, srv.URL, captured(t, mode, "text.xml")); code != 200 {
			t.Fatalf("%s callback: %d %q", mode, code, reply)
		}
	}
	// With a key, plaintext is refused, and counted.
	if code, reply := postCallback(t, srv.URL, captured(t, "plain", "text.xml")); code != http.StatusForbidden {
		t.Fatalf("plain callback with a key: %d %q, want 403", code, reply)
	}
	resp, err = http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`wxreply_http_requests_total{code="200",method="POST",route="/wechat"} 3`,
		`wxreply_http_requests_total{code="403",method="POST",route="/wechat"} 1`,
		`wxreply_callbacks_refused_total{reason="plaintext"} 1`,
		"wxreply_replies_enqueued_total 1",
		"wxreply_outbox_pending 1",
		"wxreply_store_writable 1",
		"wxreply_replies_delivered_total 0",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
