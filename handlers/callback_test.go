package handlers

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

const (
	testToken  = "wxreplytoken"
	testAppID  = "wxtest0000000001"
	testAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
)

// recorder is a Responder that records what it was given and answers
// with a fixed passive reply (nil: success), or with an error. While hold
// is set, every call waits for it to be closed before answering, so that
// a test can have copies of a callback overlap without sleeping.
type recorder struct {
	mu      sync.Mutex
	got     []*wechat.Message
	called  chan struct{} // closed and replaced on each call
	passive *wechat.CustomMessage
	err     error
	hold    chan struct{}
	panics  bool
}

func (r *recorder) Respond(_ context.Context, m *wechat.Message) ([]byte, error) {
	if r.panics {
		panic("responder exploded")
	}
	r.mu.Lock()
	r.got = append(r.got, m)
	if r.called != nil {
		close(r.called)
	}
	r.called = make(chan struct{})
	hold := r.hold
	r.mu.Unlock()
	if hold != nil {
		<-hold
	}
	r.mu.Lock()
	passive, err := r.passive, r.err
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if passive == nil {
		return nil, nil
	}
	return wechat.EncodeReply(m.FromUserName, m.ToUserName, 1700000000, passive)
}

func (r *recorder) messages() []*wechat.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*wechat.Message(nil), r.got...)
}

// waitCalls waits until the Responder has been called n times.
func (r *recorder) waitCalls(t *testing.T, n int) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		got := len(r.got)
		if r.called == nil {
			r.called = make(chan struct{})
		}
		ch := r.called
		r.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("the Responder was called %d times in 10s, want %d", got, n)
		}
	}
}

// setErr changes the error the recorder answers (nil: its reply).
func (r *recorder) setErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

// holdCalls makes the calls from now on wait until the returned release
// is called; release is also called when the test ends, so that a failed
// test does not leave the server's requests hanging.
func (r *recorder) holdCalls(t *testing.T) (release func()) {
	t.Helper()
	gate := make(chan struct{})
	r.mu.Lock()
	r.hold = gate
	r.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			r.mu.Lock()
			r.hold = nil
			r.mu.Unlock()
			close(gate)
		})
	}
	t.Cleanup(release)
	return release
}

// retryWaiting is what the server logs when a copy of a callback arrives
// while an earlier copy is still being handled, just before it waits.
const retryWaiting = "WeChat retry of a callback still being handled"

func newTestServer(t *testing.T, r Responder, cipher *wechat.Cipher) *httptest.Server {
	t.Helper()
	e := New(Config{
		Token:     testToken,
		Cipher:    cipher,
		Responder: r,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

// newLoggedServer is newTestServer with its JSON log kept, for tests that
// wait on what the server logs.
func newLoggedServer(t *testing.T, r Responder, cipher *wechat.Cipher) (*httptest.Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	srv := httptest.NewServer(New(Config{
		Token:     testToken,
		Cipher:    cipher,
		Responder: r,
		Logger:    slog.New(slog.NewJSONHandler(logs, nil)),
	}))
	t.Cleanup(srv.Close)
	return srv, logs
}

// postAsync posts body in the background; the answer comes on the
// channel as "<status> <body>".
func postAsync(t *testing.T, rawURL string, body []byte) <-chan string {
	t.Helper()
	out := make(chan string, 1)
	go func() {
		resp, err := http.Post(rawURL, "text/xml", bytes.NewReader(body))
		if err != nil {
			out <- "error " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out <- strconv.Itoa(resp.StatusCode) + " " + string(b)
	}()
	return out
}

// answerOf waits for an answer of postAsync.
func answerOf(t *testing.T, ch <-chan string) (code int, body string) {
	t.Helper()
	select {
	case a := <-ch:
		c, b, _ := strings.Cut(a, " ")
		code, err := strconv.Atoi(c)
		if err != nil {
			t.Fatalf("no answer: %s", a)
		}
		return code, b
	case <-time.After(15 * time.Second):
		t.Fatal("no answer within 15s")
	}
	return 0, ""
}

func testCipher(t *testing.T) *wechat.Cipher {
	t.Helper()
	c, err := wechat.NewCipher(testAESKey, testAppID)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func capture(t *testing.T, mode, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "test", "testdata", mode, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signedURL is the callback URL as WeChat would sign it now.
func signedURL(base, encrypt string) string {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	return base + "/wechat?" + wechat.CallbackQuery(testToken, ts, "nonce123", "oTEST_user_0001", encrypt).Encode()
}

func post(t *testing.T, rawURL string, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(rawURL, "text/xml", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestVerifyURL(t *testing.T) {
	srv := newTestServer(t, &recorder{}, nil)
	ts, nonce := "1700000000", "abc"
	good := wechat.Signature(testToken, ts, nonce)
	tests := []struct {
		name     string
		query    url.Values
		wantCode int
		wantBody string
	}{
		{"valid", url.Values{"signature": {good}, "timestamp": {ts}, "nonce": {nonce}, "echostr": {"8410154286491392"}}, 200, "8410154286491392"},
		{"echostr verbatim", url.Values{"signature": {good}, "timestamp": {ts}, "nonce": {nonce}, "echostr": {"a b+c/="}}, 200, "a b+c/="},
		{"wrong signature", url.Values{"signature": {strings.Repeat("0", 40)}, "timestamp": {ts}, "nonce": {nonce}, "echostr": {"x"}}, 403, ""},
		{"signed with another token", url.Values{"signature": {wechat.Signature("other", ts, nonce)}, "timestamp": {ts}, "nonce": {nonce}, "echostr": {"x"}}, 403, ""},
		{"missing signature", url.Values{"timestamp": {ts}, "nonce": {nonce}, "echostr": {"x"}}, 401, ""},
		{"missing nonce", url.Values{"signature": {good}, "timestamp": {ts}, "echostr": {"x"}}, 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + "/wechat?" + tt.query.Encode())
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.wantCode, body)
			}
			if tt.wantCode == 200 {
				if string(body) != tt.wantBody {
					t.Errorf("body %q, want %q", body, tt.wantBody)
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
					t.Errorf("Content-Type %q, want text/plain", ct)
				}
			}
		})
	}
}

func TestReceivePlaintext(t *testing.T) {
	rec := &recorder{}
	srv := newTestServer(t, rec, nil)
	code, body := post(t, signedURL(srv.URL, ""), capture(t, "plain", "text.xml"))
	if code != 200 || body != "success" {
		t.Fatalf("got %d %q, want 200 success", code, body)
	}
	got := rec.messages()
	if len(got) != 1 || got[0].MsgType != "text" || got[0].Content == "" {
		t.Fatalf("responder got %+v, want the parsed text message", got)
	}
}

func TestBadInput(t *testing.T) {
	rec := &recorder{}
	// The plaintext cases go to a plaintext-mode account: with a key, a
	// plaintext body is refused before it is looked at (the last cases).
	plain := newTestServer(t, rec, nil)
	keyed := newTestServer(t, rec, testCipher(t))
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	plainQuery := wechat.CallbackQuery(testToken, ts, "n", "o", "")
	big := append([]byte("<xml><Content><![CDATA["), make([]byte, MaxBodyBytes)...)
	tests := []struct {
		name     string
		srv      *httptest.Server
		url      string // after the server's URL
		body     string
		wantCode int
	}{
		{"no signature", plain, "/wechat", "<xml/>", 401},
		{"wrong signature", plain, "/wechat?signature=deadbeef&timestamp=1&nonce=2", "<xml/>", 403},
		{"malformed XML", plain, "/wechat?" + plainQuery.Encode(), "<xml><MsgType>text</MsgType>", 400},
		{"not XML", plain, "/wechat?" + plainQuery.Encode(), "hello", 400},
		{"empty body", plain, "/wechat?" + plainQuery.Encode(), "", 400},
		{"empty message", plain, "/wechat?" + plainQuery.Encode(), "<xml/>", 400},
		{"no FromUserName", plain, "/wechat?" + plainQuery.Encode(), "<xml><MsgType>text</MsgType><MsgId>1</MsgId></xml>", 400},
		{"no MsgType", plain, "/wechat?" + plainQuery.Encode(), "<xml><FromUserName>o</FromUserName><MsgId>2</MsgId></xml>", 400},
		{"DOCTYPE", plain, "/wechat?" + plainQuery.Encode(), `<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x "y">]><xml><Content>&x;</Content></xml>`, 400},
		{"over 64 KiB", plain, "/wechat?" + plainQuery.Encode(), string(big), 413},
		{"no signature, with a key", keyed, "/wechat", "<xml/>", 401},
		{"wrong signature, with a key", keyed, "/wechat?signature=deadbeef&timestamp=1&nonce=2", "<xml/>", 403},
		{"over 64 KiB, with a key", keyed, "/wechat?" + plainQuery.Encode(), string(big), 413},
		{"aes without Encrypt", keyed, "/wechat?" + wechat.CallbackQuery(testToken, ts, "n", "o", "x").Encode(), "<xml><ToUserName>a</ToUserName></xml>", 400},
		{"plaintext with a key", keyed, "/wechat?" + plainQuery.Encode(), string(capture(t, "plain", "text.xml")), 403},
		{"plaintext without FromUserName, with a key", keyed, "/wechat?" + plainQuery.Encode(), "<xml><MsgType>text</MsgType><MsgId>1</MsgId></xml>", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(t, tt.srv.URL+tt.url, []byte(tt.body))
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d (%s)", code, tt.wantCode, body)
			}
		})
	}
	if n := len(rec.messages()); n != 0 {
		t.Errorf("responder saw %d messages from bad input, want 0", n)
	}
	// Both servers are still healthy afterwards.
	if code, body := post(t, signedURL(plain.URL, ""), capture(t, "plain", "text.xml")); code != 200 {
		t.Fatalf("after bad input a good plaintext callback got %d %q", code, body)
	}
	safe := capture(t, "safe", "text.xml")
	env, err := wechat.ParseMessage(safe)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := post(t, signedURL(keyed.URL, env.Encrypt), safe); code != 200 {
		t.Fatalf("after bad input a good encrypted callback got %d %q", code, body)
	}
}

func TestEncryptedModes(t *testing.T) {
	cipher := testCipher(t)
	passive := &wechat.CustomMessage{MsgType: "text", Text: &wechat.Text{Content: "你好！"}}
	for _, mode := range []string{"safe", "compat"} {
		t.Run(mode, func(t *testing.T) {
			rec := &recorder{passive: passive}
			srv := newTestServer(t, rec, cipher)
			envelope, err := wechat.ParseMessage(capture(t, mode, "text.xml"))
			if err != nil {
				t.Fatal(err)
			}
			code, body := post(t, signedURL(srv.URL, envelope.Encrypt), capture(t, mode, "text.xml"))
			if code != 200 {
				t.Fatalf("status %d: %s", code, body)
			}
			got := rec.messages()
			if len(got) != 1 || got[0].MsgType != "text" || got[0].FromUserName == "" {
				t.Fatalf("responder got %+v", got)
			}
			// The passive reply is encrypted and signed.
			reply, err := wechat.ParseMessage([]byte(body))
			if err != nil || reply.Encrypt == "" {
				t.Fatalf("reply is not an encrypted envelope: %q (%v)", body, err)
			}
			if strings.Contains(body, "你好") {
				t.Fatal("reply leaks the plaintext")
			}
			plain, err := cipher.Decrypt(reply.Encrypt)
			if err != nil {
				t.Fatal(err)
			}
			inner, err := wechat.ParseMessage(plain)
			if err != nil {
				t.Fatal(err)
			}
			if inner.Content != "你好！" || inner.ToUserName != got[0].FromUserName {
				t.Errorf("decrypted reply %+v", inner)
			}
			var sig, ts, nonce string
			for _, u := range reply.Unknown {
				switch u.XMLName.Local {
				case "MsgSignature":
					sig = u.Value
				case "TimeStamp":
					ts = u.Value
				case "Nonce":
					nonce = u.Value
				}
			}
			if !wechat.VerifyMsgSignature(testToken, sig, ts, nonce, reply.Encrypt) {
				t.Errorf("reply MsgSignature %q does not verify", sig)
			}
		})
	}
}

func TestEncryptedRefused(t *testing.T) {
	body := capture(t, "safe", "text.xml")
	envelope, err := wechat.ParseMessage(body)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("no key configured", func(t *testing.T) {
		rec := &recorder{}
		srv := newTestServer(t, rec, nil)
		if code, _ := post(t, signedURL(srv.URL, envelope.Encrypt), body); code != 400 {
			t.Fatalf("status %d, want 400", code)
		}
	})
	t.Run("compat without key uses the plaintext", func(t *testing.T) {
		rec := &recorder{}
		srv := newTestServer(t, rec, nil)
		compat := capture(t, "compat", "text.xml")
		env, _ := wechat.ParseMessage(compat)
		code, reply := post(t, signedURL(srv.URL, env.Encrypt), compat)
		if code != 200 || reply != "success" || len(rec.messages()) != 1 {
			t.Fatalf("got %d %q, %d messages", code, reply, len(rec.messages()))
		}
	})
	t.Run("wrong msg_signature", func(t *testing.T) {
		srv := newTestServer(t, &recorder{}, testCipher(t))
		u := signedURL(srv.URL, envelope.Encrypt)
		u = strings.Replace(u, "msg_signature=", "msg_signature=00", 1)
		if code, _ := post(t, u, body); code != 403 {
			t.Fatalf("status %d, want 403", code)
		}
	})
	t.Run("another AppID", func(t *testing.T) {
		other, err := wechat.NewCipher(testAESKey, "wxsomeoneelse0001")
		if err != nil {
			t.Fatal(err)
		}
		srv := newTestServer(t, &recorder{}, other)
		if code, _ := post(t, signedURL(srv.URL, envelope.Encrypt), body); code != 403 {
			t.Fatalf("status %d, want 403", code)
		}
	})
	t.Run("garbage ciphertext", func(t *testing.T) {
		srv := newTestServer(t, &recorder{}, testCipher(t))
		bad := wechat.SafeModeBody("gh_test0000001", "bm90IGEgY2lwaGVydGV4dA==")
		if code, _ := post(t, signedURL(srv.URL, "bm90IGEgY2lwaGVydGV4dA=="), bad); code != 400 {
			t.Fatalf("status %d, want 400", code)
		}
	})
}

// TestCopiesAfterTheAnswerReachTheResponder: once a callback is
// answered, handlers remember nothing of it: a later copy (a WeChat retry
// after a timeout, or the same message again) is the Responder's to
// recognise, from the mark it recorded in the store, on any instance and
// after a restart. The dedupe across sequential retries is tested with
// the real Responder and store in callback_store_test.go.
func TestCopiesAfterTheAnswerReachTheResponder(t *testing.T) {
	rec := &recorder{passive: &wechat.CustomMessage{MsgType: "text", Text: &wechat.Text{Content: "again"}}}
	srv := newTestServer(t, rec, nil)
	body := capture(t, "plain", "text.xml")
	for i := range 3 {
		code, reply := post(t, signedURL(srv.URL, ""), body)
		if code != 200 || !strings.Contains(reply, "again") {
			t.Fatalf("copy %d: %d %q", i, code, reply)
		}
	}
	if n := len(rec.messages()); n != 3 {
		t.Fatalf("responder saw %d of 3 sequential copies, want all of them", n)
	}
}

// TestRetryDuringFirstCopy: copies arriving while the first is still
// being handled are not handed to the Responder again: they wait and get
// the first copy's answer.
func TestRetryDuringFirstCopy(t *testing.T) {
	rec := &recorder{passive: &wechat.CustomMessage{MsgType: "text", Text: &wechat.Text{Content: "slow"}}}
	srv, logs := newLoggedServer(t, rec, nil)
	release := rec.holdCalls(t)
	body := capture(t, "plain", "text.xml")
	var answers []<-chan string
	for range 4 { // the first copy and WeChat's three retries, at once
		answers = append(answers, postAsync(t, signedURL(srv.URL, ""), body))
	}
	logs.waitFor(t, retryWaiting, 3)
	release()
	for i, a := range answers {
		code, reply := answerOf(t, a)
		if code != 200 || !strings.Contains(reply, "slow") {
			t.Errorf("copy %d answered %d %q, want 200 and the passive reply", i, code, reply)
		}
	}
	if n := len(rec.messages()); n != 1 {
		t.Fatalf("responder handled %d concurrent copies, want 1", n)
	}
}

// TestResponderErrorAnswered503: a Responder that could not record the
// callback makes the server answer 503, never 200 or "success", so that
// WeChat tries again; and the next copy is handed to the Responder again.
// A plaintext account and one with a key fail the same way; a plaintext
// body under a key is refused (403) before the Responder is asked.
func TestResponderErrorAnswered503(t *testing.T) {
	cipher := testCipher(t)
	rec := &recorder{err: errors.New("store unavailable"),
		passive: &wechat.CustomMessage{MsgType: "text", Text: &wechat.Text{Content: "recorded"}}}
	plain := newTestServer(t, rec, nil)
	keyed := newTestServer(t, rec, cipher)
	sealed := func(name string) (string, []byte) {
		body := capture(t, "safe", name)
		env, err := wechat.ParseMessage(body)
		if err != nil {
			t.Fatal(err)
		}
		return signedURL(keyed.URL, env.Encrypt), body
	}
	safeURL, safe := sealed("text.xml")
	safeEventURL, safeEvent := sealed("event_subscribe.xml")
	for _, tc := range []struct {
		name string
		url  string
		body []byte
	}{
		{"plaintext", signedURL(plain.URL, ""), capture(t, "plain", "text.xml")},
		{"event", signedURL(plain.URL, ""), capture(t, "plain", "event_subscribe.xml")},
		{"encrypted", safeURL, safe},
		{"encrypted event", safeEventURL, safeEvent},
	} {
		code, body := post(t, tc.url, tc.body)
		if code != http.StatusServiceUnavailable || strings.Contains(body, "success") {
			t.Errorf("%s: answered %d %q, want 503 and not success", tc.name, code, body)
		}
	}
	if n := len(rec.messages()); n != 4 {
		t.Fatalf("responder saw %d messages, want 4", n)
	}
	if code, body := post(t, signedURL(keyed.URL, ""), capture(t, "plain", "text.xml")); code != http.StatusForbidden {
		t.Errorf("plaintext with a key: answered %d %q, want 403", code, body)
	}
	if n := len(rec.messages()); n != 4 {
		t.Fatalf("responder saw %d messages, want 4: a plaintext body under a key is not handled", n)
	}
	// Nothing of the failure is remembered: WeChat's retry is handled.
	rec.setErr(nil)
	code, body := post(t, signedURL(plain.URL, ""), capture(t, "plain", "text.xml"))
	if code != 200 || !strings.Contains(body, "recorded") {
		t.Fatalf("retry after the failure: %d %q, want 200 and the passive reply", code, body)
	}
	code, body = post(t, safeURL, safe)
	if code != 200 {
		t.Fatalf("encrypted retry after the failure: %d %q, want 200", code, body)
	}
	checkReplyMode(t, cipher, "encrypted retry after the failure", body, true, "recorded")
	if n := len(rec.messages()); n != 6 {
		t.Fatalf("responder saw %d messages, want 6: the retries after a failure must be handled", n)
	}
}

// TestRetryWaitingOnAFailedFirstCopy: a retry waiting on a first copy
// whose Responder fails gets the same 503, at once, and is not handed to
// the Responder itself.
func TestRetryWaitingOnAFailedFirstCopy(t *testing.T) {
	rec := &recorder{err: errors.New("store unavailable")}
	srv, logs := newLoggedServer(t, rec, nil)
	release := rec.holdCalls(t)
	body := capture(t, "plain", "text.xml")
	first := postAsync(t, signedURL(srv.URL, ""), body)
	rec.waitCalls(t, 1)
	retry := postAsync(t, signedURL(srv.URL, ""), body)
	logs.waitFor(t, retryWaiting, 1)
	released := time.Now()
	release()
	for name, ch := range map[string]<-chan string{"first copy": first, "retry": retry} {
		code, reply := answerOf(t, ch)
		if code != http.StatusServiceUnavailable || strings.Contains(reply, "success") {
			t.Errorf("%s answered %d %q, want 503", name, code, reply)
		}
	}
	if waited := time.Since(released); waited > retryWait/2 {
		t.Errorf("the retry was answered %v after the first copy failed: it waited for its timeout", waited)
	}
	if n := len(rec.messages()); n != 1 {
		t.Fatalf("responder saw %d copies, want 1", n)
	}
}

// TestRetryWaitRunsOut: a retry does not wait past retryWait for a first
// copy that is still being handled: it is answered 503 (WeChat tries
// again) inside WeChat's five seconds, while the first copy, once done,
// is answered normally.
func TestRetryWaitRunsOut(t *testing.T) {
	t.Parallel()
	rec := &recorder{passive: &wechat.CustomMessage{MsgType: "text", Text: &wechat.Text{Content: "late"}}}
	srv, logs := newLoggedServer(t, rec, nil)
	release := rec.holdCalls(t)
	body := capture(t, "plain", "text.xml")
	first := postAsync(t, signedURL(srv.URL, ""), body)
	rec.waitCalls(t, 1)
	asked := time.Now()
	retry := postAsync(t, signedURL(srv.URL, ""), body)
	code, reply := answerOf(t, retry)
	waited := time.Since(asked)
	if code != http.StatusServiceUnavailable {
		t.Errorf("retry answered %d %q after %v, want 503", code, reply, waited)
	}
	if waited < retryWait || waited > retryWait+time.Second {
		t.Errorf("retry answered after %v, want about %v", waited, retryWait)
	}
	if !strings.Contains(logs.String(), retryWaiting) {
		t.Error("the retry did not wait on the first copy")
	}
	release()
	if code, reply := answerOf(t, first); code != 200 || !strings.Contains(reply, "late") {
		t.Errorf("first copy answered %d %q, want 200 and its passive reply", code, reply)
	}
	if n := len(rec.messages()); n != 1 {
		t.Fatalf("responder saw %d copies, want 1", n)
	}
}

func TestPanicRecovered(t *testing.T) {
	srv := newTestServer(t, &recorder{panics: true}, nil)
	code, _ := post(t, signedURL(srv.URL, ""), capture(t, "plain", "text.xml"))
	if code != 500 {
		t.Fatalf("status %d, want 500 from the recovered panic", code)
	}
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz %d after a panic", resp.StatusCode)
	}
}

// TestHealthz: /healthz answers 200 "ok" while Health reports nothing
// wrong, and 503 with the reason while it reports a problem; HEAD, which
// load balancers probe with, gets the same statuses.
func TestHealthz(t *testing.T) {
	var mu sync.Mutex
	var problem error
	health := func() error {
		mu.Lock()
		defer mu.Unlock()
		return problem
	}
	e := New(Config{Token: testToken, Responder: &recorder{}, Health: health,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(e)
	defer srv.Close()
	probe := func(method string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		problem  error
		wantCode int
		wantBody string
	}{
		{errors.New("rules not loaded"), 503, "unavailable: rules not loaded\n"},
		{errors.New("store memory: disk I/O error"), 503, "unavailable: store memory: disk I/O error\n"},
		{nil, 200, "ok\n"},
	} {
		mu.Lock()
		problem = tc.problem
		mu.Unlock()
		if code, body := probe(http.MethodGet); code != tc.wantCode || body != tc.wantBody {
			t.Errorf("Health %v: GET /healthz %d %q, want %d %q", tc.problem, code, body, tc.wantCode, tc.wantBody)
		}
		if code, body := probe(http.MethodHead); code != tc.wantCode || body != "" {
			t.Errorf("Health %v: HEAD /healthz %d %q, want %d and no body", tc.problem, code, body, tc.wantCode)
		}
	}

	// Without a Health func the server is always healthy.
	srv2 := newTestServer(t, &recorder{}, nil)
	resp, err := http.Get(srv2.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz without Health: %d, want 200", resp.StatusCode)
	}
}
