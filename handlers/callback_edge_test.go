package handlers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// textOfSize is a signed-ready text message of exactly n bytes.
func textOfSize(t *testing.T, n int) []byte {
	t.Helper()
	head := "<xml><ToUserName>gh_test0000001</ToUserName><FromUserName>oTEST_user_0001</FromUserName>" +
		"<CreateTime>1700000000</CreateTime><MsgType>text</MsgType><MsgId>" + strconv.Itoa(n) + "</MsgId><Content>"
	tail := "</Content></xml>"
	if pad := n - len(head) - len(tail); pad >= 0 {
		return []byte(head + strings.Repeat("a", pad) + tail)
	}
	t.Fatalf("%d bytes is too small for a message", n)
	return nil
}

// rawPost sends a chunked POST of body over a bare connection, the whole
// request including the last chunk, and returns the status line: a
// dropped connection shows as an error, not as a status.
func rawPost(t *testing.T, srvURL, target string, body []byte) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(srvURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		w := bufio.NewWriter(c)
		fmt.Fprintf(w, "POST %s HTTP/1.1\r\nHost: wx\r\nTransfer-Encoding: chunked\r\nContent-Type: text/xml\r\n\r\n", target)
		for len(body) > 0 {
			n := min(len(body), 8<<10)
			fmt.Fprintf(w, "%x\r\n%s\r\n", n, body[:n])
			body = body[n:]
		}
		fmt.Fprint(w, "0\r\n\r\n")
		w.Flush()
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func TestBodySizeLimit(t *testing.T) {
	srv := newTestServer(t, &recorder{}, nil)
	for _, tt := range []struct {
		name    string
		size    int
		chunked bool
		want    int
	}{
		{"exactly 64 KiB", MaxBodyBytes, false, 200},
		{"exactly 64 KiB, chunked", MaxBodyBytes, true, 200},
		{"one byte over", MaxBodyBytes + 1, false, 413},
		{"one byte over, chunked", MaxBodyBytes + 1, true, 413},
		{"10 MiB, chunked", 10 << 20, true, 413},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, _ := url.Parse(signedURL(srv.URL, ""))
			body := textOfSize(t, tt.size)
			if !tt.chunked {
				if code, out := post(t, u.String(), body); code != tt.want {
					t.Fatalf("status %d, want %d (%s)", code, tt.want, out)
				}
				return
			}
			line, err := rawPost(t, srv.URL, u.RequestURI(), body)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if want := "HTTP/1.1 " + strconv.Itoa(tt.want) + " "; !strings.HasPrefix(line, want) {
				t.Fatalf("answered %q, want %q", line, want)
			}
		})
	}
}

func TestQueryAndHeaderVariants(t *testing.T) {
	srv := newTestServer(t, &recorder{}, nil)
	ts, nonce := "1700000000", "n1"
	good := wechat.Signature(testToken, ts, nonce)
	body := capture(t, "plain", "event_click.xml")
	for _, tt := range []struct {
		name        string
		query       string
		contentType string
		want        int
	}{
		{"no Content-Type", "signature=" + good + "&timestamp=" + ts + "&nonce=" + nonce, "", 200},
		{"application/xml", "signature=" + good + "&timestamp=" + ts + "&nonce=" + nonce, "application/xml; charset=gbk", 200},
		{"form Content-Type is not parsed as a form", "signature=" + good + "&timestamp=" + ts + "&nonce=" + nonce, "application/x-www-form-urlencoded", 200},
		{"repeated signature, good first", "signature=" + good + "&signature=bad&timestamp=" + ts + "&nonce=" + nonce, "text/xml", 200},
		{"repeated signature, bad first", "signature=bad&signature=" + good + "&timestamp=" + ts + "&nonce=" + nonce, "text/xml", 403},
		{"timestamp missing", "signature=" + good + "&nonce=" + nonce, "text/xml", 401},
		{"timestamp empty", "signature=" + good + "&timestamp=&nonce=" + nonce, "text/xml", 401},
		{"signature upper case", "signature=" + strings.ToUpper(good) + "&timestamp=" + ts + "&nonce=" + nonce, "text/xml", 403},
		{"malformed query", "signature=%zz&timestamp=" + ts + "&nonce=" + nonce, "text/xml", 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/wechat?"+tt.query, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.want, out)
			}
		})
	}
}

func TestEchostrVerbatim(t *testing.T) {
	srv := newTestServer(t, &recorder{}, nil)
	for _, echostr := range []string{"", "<script>alert(1)</script>", "回声 ✓", "a&b=c%2F\"'", strings.Repeat("9", 4096)} {
		q := url.Values{"signature": {wechat.Signature(testToken, "1", "2")}, "timestamp": {"1"}, "nonce": {"2"}, "echostr": {echostr}}
		resp, err := http.Get(srv.URL + "/wechat?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(out) != echostr {
			t.Errorf("echostr %q answered %d %q", echostr, resp.StatusCode, out)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("echostr %q served without nosniff: a browser may render it as HTML", echostr)
		}
	}
}

func TestOtherMethods(t *testing.T) {
	srv := newTestServer(t, &recorder{}, nil)
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{http.MethodHead, "/healthz", 200},
		{http.MethodHead, "/wechat", 405},
		{http.MethodPut, "/wechat", 405},
		{http.MethodDelete, "/wechat", 405},
		{http.MethodGet, "/wechat/", 404},
		{http.MethodPost, "/", 404},
	} {
		req, _ := http.NewRequest(tt.method, signedURL(srv.URL, "")+"&x=1", nil)
		req.URL.Path = tt.path
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
		}
	}
}

// TestRetryAnsweredInItsOwnMode: a retry that arrives while the first
// copy is being handled gets that copy's passive reply, encrypted and
// signed for the retry itself, not a copy of the bytes the first copy was
// sent. With a key every copy is encrypted (safe or compatible mode) and
// a plaintext copy is refused at once, without waiting on the first;
// without a key, compatible mode is answered in plaintext. (Retries
// recognised later, by the store, are tested with the real Responder in
// callback_store_test.go.)
func TestRetryAnsweredInItsOwnMode(t *testing.T) {
	cipher := testCipher(t)
	copyOf := func(mode string) func(string) <-chan string {
		body := capture(t, mode, "text.xml")
		env, err := wechat.ParseMessage(body)
		if err != nil {
			t.Fatal(err)
		}
		return func(base string) <-chan string { return postAsync(t, signedURL(base, env.Encrypt), body) }
	}
	plainCopy, safeCopy, compatCopy := copyOf("plain"), copyOf("safe"), copyOf("compat")
	for _, tt := range []struct {
		name                 string
		key                  bool
		first, retry         func(string) <-chan string
		firstEnc, wantRetEnc bool
		retryRefused         bool // 403 at once
	}{
		{"encrypted twice", true, safeCopy, safeCopy, true, true, false},
		{"encrypted, then compatible mode", true, safeCopy, compatCopy, true, true, false},
		{"compatible mode, then encrypted", true, compatCopy, safeCopy, true, true, false},
		{"encrypted, then plaintext under a key", true, safeCopy, plainCopy, true, false, true},
		{"plaintext, then compatible mode without a key", false, plainCopy, compatCopy, false, false, false},
		{"compatible mode without a key, then plaintext", false, compatCopy, plainCopy, false, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{passive: &wechat.CustomMessage{MsgType: "text", Text: &wechat.Text{Content: "once"}}}
			var srvCipher *wechat.Cipher
			if tt.key {
				srvCipher = cipher
			}
			srv, logs := newLoggedServer(t, rec, srvCipher)
			release := rec.holdCalls(t)
			first := tt.first(srv.URL)
			rec.waitCalls(t, 1)
			retry := tt.retry(srv.URL)
			if tt.retryRefused {
				// Answered while the first copy is still held.
				if code, body := answerOf(t, retry); code != http.StatusForbidden {
					t.Fatalf("retry: %d %q, want 403", code, body)
				}
				release()
				code, body := answerOf(t, first)
				if code != 200 {
					t.Fatalf("first copy: %d %q", code, body)
				}
				checkReplyMode(t, cipher, "first copy", body, tt.firstEnc, "once")
				if n := strings.Count(logs.String(), retryWaiting); n != 0 {
					t.Errorf("a refused copy waited on the first: %q logged %d times", retryWaiting, n)
				}
			} else {
				logs.waitFor(t, retryWaiting, 1)
				release()
				for _, c := range []struct {
					name      string
					ch        <-chan string
					encrypted bool
				}{{"first copy", first, tt.firstEnc}, {"retry", retry, tt.wantRetEnc}} {
					code, body := answerOf(t, c.ch)
					if code != 200 {
						t.Fatalf("%s: %d %q", c.name, code, body)
					}
					checkReplyMode(t, cipher, c.name, body, c.encrypted, "once")
				}
			}
			if n := len(rec.messages()); n != 1 {
				t.Fatalf("responder saw %d copies, want 1", n)
			}
		})
	}
	t.Run("plaintext first under a key", func(t *testing.T) {
		rec := &recorder{passive: &wechat.CustomMessage{MsgType: "text", Text: &wechat.Text{Content: "once"}}}
		srv := newTestServer(t, rec, cipher)
		if code, body := answerOf(t, plainCopy(srv.URL)); code != http.StatusForbidden {
			t.Fatalf("plaintext copy: %d %q, want 403", code, body)
		}
		if n := len(rec.messages()); n != 0 {
			t.Fatalf("responder saw %d copies of a refused plaintext body, want 0", n)
		}
		code, body := answerOf(t, safeCopy(srv.URL))
		if code != 200 {
			t.Fatalf("encrypted copy: %d %q", code, body)
		}
		checkReplyMode(t, cipher, "encrypted copy", body, true, "once")
		if n := len(rec.messages()); n != 1 {
			t.Fatalf("responder saw %d copies, want 1", n)
		}
	})
}

// checkReplyMode checks that body is a passive reply saying want, in
// plaintext or encrypted (and signed) as encrypted says.
func checkReplyMode(t *testing.T, cipher *wechat.Cipher, name, body string, encrypted bool, want string) {
	t.Helper()
	reply, err := wechat.ParseMessage([]byte(body))
	if err != nil {
		t.Fatalf("%s: reply %q: %v", name, body, err)
	}
	if !encrypted {
		if reply.Encrypt != "" || reply.Content != want {
			t.Fatalf("%s: a plaintext copy was answered %s", name, body)
		}
		return
	}
	if reply.Content != "" || reply.MsgType != "" {
		t.Fatalf("%s: an encrypted copy's answer carries the plaintext: %s", name, body)
	}
	plain, err := cipher.Decrypt(reply.Encrypt)
	if err != nil || !strings.Contains(string(plain), want) {
		t.Fatalf("%s: an encrypted copy was answered %s (%v)", name, body, err)
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
		t.Errorf("%s: reply MsgSignature %q does not verify", name, sig)
	}
}

// blockingPanicker panics once released, after saying it has started.
type blockingPanicker struct {
	started, release chan struct{}
}

func (b *blockingPanicker) Respond(context.Context, *wechat.Message) ([]byte, error) {
	close(b.started)
	<-b.release
	panic("responder exploded")
}

// TestRetryWhileFirstCopyPanics: a retry waiting on a first copy that
// panics is answered as soon as the panic is over, not after the wait
// runs out, and with 503, so that WeChat tries once more; the panic is
// logged with the request id.
func TestRetryWhileFirstCopyPanics(t *testing.T) {
	var logs syncBuffer
	r := &blockingPanicker{started: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(New(Config{Token: testToken, Responder: r, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}))
	defer srv.Close()
	var once sync.Once
	releasePanic := func() { once.Do(func() { close(r.release) }) }
	defer releasePanic() // before srv.Close, should the test fail early
	body := capture(t, "plain", "text.xml")

	var wg sync.WaitGroup
	var firstCode int
	var firstID string
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := http.Post(signedURL(srv.URL, ""), "text/xml", bytes.NewReader(body))
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
		firstCode, firstID = resp.StatusCode, resp.Header.Get("X-Request-Id")
	}()
	select {
	case <-r.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the first copy never reached the Responder")
	}
	retried := postAsync(t, signedURL(srv.URL, ""), body)
	// Let the retry reach its wait before the first copy panics.
	logs.waitFor(t, retryWaiting, 1)
	released := time.Now()
	releasePanic()
	code, out := answerOf(t, retried)
	if waited := time.Since(released); waited > retryWait/2 {
		t.Errorf("the retry waited %v after the first copy ended", waited)
	}
	wg.Wait()
	if firstCode != 500 || code != http.StatusServiceUnavailable || strings.Contains(out, "success") {
		t.Fatalf("first copy %d, retry %d %q; want 500 and 503", firstCode, code, out)
	}
	var panicLine, requestLine bool
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if e["request_id"] != firstID {
			continue
		}
		panicLine = panicLine || e["msg"] == "panic in handler" && strings.Contains(fmt.Sprint(e["stack"]), "Respond")
		requestLine = requestLine || e["msg"] == "callback" && e["status"] == 500.0
	}
	if !panicLine || !requestLine {
		t.Fatalf("want a panic line with its stack and a callback line with status 500, both with request_id %q:\n%s", firstID, logs.String())
	}
}

// syncBuffer is a log sink safe for concurrent writes, that a test can
// wait on.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on each write
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed != nil {
		close(b.changed)
	}
	b.changed = make(chan struct{})
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until s has been written n times, failing the test if
// that takes over 10 seconds.
func (b *syncBuffer) waitFor(t *testing.T, s string, n int) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		got := strings.Count(b.buf.String(), s)
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		ch := b.changed
		b.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("%q logged %d times in 10s, want %d:\n%s", s, got, n, b.String())
		}
	}
}

// TestRefusedBeforeTheBodyArrives: a request refused for its signature is
// answered at once, even while its client has not sent the body.
func TestRefusedBeforeTheBodyArrives(t *testing.T) {
	srv := newTestServer(t, &recorder{}, nil)
	for _, target := range []string{"/wechat?signature=bad&timestamp=1&nonce=2", "/wechat", "/nosuch"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: wx\r\nContent-Length: 1000\r\n\r\n<xml>", target)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 4") {
			t.Errorf("%s: answered %q (%v), want a 4xx before the body is complete", target, line, err)
		}
	}
}
