package handlers

import (
	"context"
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
	"sync/atomic"
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
// with a fixed passive reply (nil: none).
type recorder struct {
	mu      sync.Mutex
	got     []*wechat.Message
	passive *wechat.CustomMessage
	delay   time.Duration
	panics  bool
}

func (r *recorder) Respond(_ context.Context, m *wechat.Message) *wechat.CustomMessage {
	if r.panics {
		panic("responder exploded")
	}
	time.Sleep(r.delay)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, m)
	return r.passive
}

func (r *recorder) messages() []*wechat.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*wechat.Message(nil), r.got...)
}

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
	srv := newTestServer(t, rec, testCipher(t))
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	plainQuery := wechat.CallbackQuery(testToken, ts, "n", "o", "")
	big := append([]byte("<xml><Content><![CDATA["), make([]byte, MaxBodyBytes)...)
	tests := []struct {
		name     string
		url      string
		body     string
		wantCode int
	}{
		{"no signature", srv.URL + "/wechat", "<xml/>", 401},
		{"wrong signature", srv.URL + "/wechat?signature=deadbeef&timestamp=1&nonce=2", "<xml/>", 403},
		{"malformed XML", srv.URL + "/wechat?" + plainQuery.Encode(), "<xml><MsgType>text</MsgType>", 400},
		{"not XML", srv.URL + "/wechat?" + plainQuery.Encode(), "hello", 400},
		{"empty body", srv.URL + "/wechat?" + plainQuery.Encode(), "", 400},
		{"empty message", srv.URL + "/wechat?" + plainQuery.Encode(), "<xml/>", 400},
		{"no FromUserName", srv.URL + "/wechat?" + plainQuery.Encode(), "<xml><MsgType>text</MsgType><MsgId>1</MsgId></xml>", 400},
		{"no MsgType", srv.URL + "/wechat?" + plainQuery.Encode(), "<xml><FromUserName>o</FromUserName><MsgId>2</MsgId></xml>", 400},
		{"DOCTYPE", srv.URL + "/wechat?" + plainQuery.Encode(), `<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x "y">]><xml><Content>&x;</Content></xml>`, 400},
		{"over 64 KiB", srv.URL + "/wechat?" + plainQuery.Encode(), string(big), 413},
		{"aes without Encrypt", srv.URL + "/wechat?" + wechat.CallbackQuery(testToken, ts, "n", "o", "x").Encode(), "<xml><ToUserName>a</ToUserName></xml>", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(t, tt.url, []byte(tt.body))
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d (%s)", code, tt.wantCode, body)
			}
		})
	}
	if n := len(rec.messages()); n != 0 {
		t.Errorf("responder saw %d messages from bad input, want 0", n)
	}
	// The server is still healthy afterwards.
	code, _ := post(t, signedURL(srv.URL, ""), capture(t, "plain", "text.xml"))
	if code != 200 {
		t.Fatalf("after bad input a good callback got %d", code)
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

func TestRetriesDropped(t *testing.T) {
	rec := &recorder{passive: &wechat.CustomMessage{MsgType: "text", Text: &wechat.Text{Content: "once"}}}
	srv := newTestServer(t, rec, nil)
	body := capture(t, "plain", "text.xml")
	var first string
	for i := 0; i < 4; i++ { // the first copy and WeChat's three retries
		code, reply := post(t, signedURL(srv.URL, ""), body)
		if code != 200 {
			t.Fatalf("copy %d: status %d", i, code)
		}
		if i == 0 {
			first = reply
		} else if reply != first {
			t.Errorf("retry %d answered %q, want the first answer %q", i, reply, first)
		}
	}
	if n := len(rec.messages()); n != 1 {
		t.Fatalf("responder saw %d copies, want 1", n)
	}
	// Events dedupe on FromUserName + CreateTime + Event.
	ev := capture(t, "plain", "event_subscribe.xml")
	post(t, signedURL(srv.URL, ""), ev)
	post(t, signedURL(srv.URL, ""), ev)
	if n := len(rec.messages()); n != 2 {
		t.Fatalf("responder saw %d messages after a repeated event, want 2", n)
	}
}

func TestRetryDuringFirstCopy(t *testing.T) {
	rec := &recorder{delay: 300 * time.Millisecond, passive: &wechat.CustomMessage{MsgType: "text", Text: &wechat.Text{Content: "slow"}}}
	srv := newTestServer(t, rec, nil)
	body := capture(t, "plain", "text.xml")
	var wg sync.WaitGroup
	var ok atomic.Int32
	replies := make([]string, 4)
	for i := range replies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, reply := post(t, signedURL(srv.URL, ""), body)
			if code == 200 {
				ok.Add(1)
			}
			replies[i] = reply
		}()
	}
	wg.Wait()
	if ok.Load() != 4 {
		t.Fatalf("%d of 4 copies answered 200", ok.Load())
	}
	if n := len(rec.messages()); n != 1 {
		t.Fatalf("responder handled %d concurrent copies, want 1", n)
	}
	for i, r := range replies {
		if !strings.Contains(r, "slow") {
			t.Errorf("copy %d answered %q, want the passive reply", i, r)
		}
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

func TestHealthz(t *testing.T) {
	var ready atomic.Bool
	e := New(Config{Token: testToken, Responder: &recorder{}, Ready: ready.Load,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(e)
	defer srv.Close()
	for _, want := range []int{503, 200} {
		resp, err := http.Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("healthz %d, want %d", resp.StatusCode, want)
		}
		ready.Store(true)
	}
}
